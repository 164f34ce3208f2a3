import ModelIR
import TensorCore

extension StandardOps {
    /// Pooling. Attributes added over the opsets (MaxPool: storage_order and Indices at 8,
    /// ceil_mode and dilations at 10; AveragePool: count_include_pad at 7, ceil_mode at 10,
    /// dilations at 19) default to the behaviour of the versions without them, so one entry
    /// each reads whichever attributes the node has.
    static func registerPooling(_ r: OpRegistry) {
        r.register("MaxPool", since: 1, kernel: PoolOp.maxKernel, infer: PoolOp.maxInfer)
        r.register("AveragePool", since: 1, kernel: PoolOp.averageKernel, infer: PoolOp.averageInfer)
        r.register("GlobalMaxPool", since: 1, kernel: { try PoolOp.globalKernel($0, $1, max: true) }, infer: PoolOp.globalInfer)
        r.register("GlobalAveragePool", since: 1, kernel: { try PoolOp.globalKernel($0, $1, max: false) }, infer: PoolOp.globalInfer)
    }
}

/// ONNX MaxPool, AveragePool, GlobalMaxPool, GlobalAveragePool over X `[N, C, D1…Dn]`.
enum PoolOp {
    static func window(_ x: [Int], _ ctx: KernelContext) throws -> WindowGeometry {
        guard x.count >= 3 else { throw ctx.error("input X has shape \(NNSupport.shapeText(x)); expected [N, C, D1, …] (rank ≥ 3)") }
        guard x.count - 2 <= Convolution.maxSpatialRank else {
            throw ctx.error("\(x.count - 2) spatial dims are not supported (at most \(Convolution.maxSpatialRank))")
        }
        let kernel = NNSupport.ints(ctx, "kernel_shape")
        guard !kernel.isEmpty else { throw ctx.error("attribute kernel_shape is required") }
        return try NNSupport.window(ctx, spatial: Array(x[2...]), kernel: kernel, ceilMode: NNSupport.int(ctx, "ceil_mode", 0) != 0)
    }

    static let maxTypes: Set<DType> = NNSupport.floatTypes.union([.uint8, .int8])

    static func maxInfer(_ inputs: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        let x = try ctx.required(inputs, 0)
        guard maxTypes.contains(x.dtype) else { throw ctx.error("input X is \(x.dtype); MaxPool supports float types, int8 and uint8") }
        let g = try window(x.shape, ctx)
        let shape = Array(x.shape[0..<2]) + g.output
        return [TensorInfo(x.dtype, shape), TensorInfo(.int64, shape)]
    }

    static func maxKernel(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        let x0 = try ctx.required(inputs, 0)
        guard maxTypes.contains(x0.dtype) else { throw ctx.error("input X is \(x0.dtype); MaxPool supports float types, int8 and uint8") }
        let wantIndices = ctx.node.outputs.count > 1 && !ctx.node.outputs[1].isEmpty
        let columnMajor = NNSupport.int(ctx, "storage_order", 0) == 1
        func run(_ x: Tensor) throws -> [Tensor] {
            let g = try window(x.shape, ctx)
            let shape = Array(x.shape[0..<2]) + g.output
            let planes = x.shape[0] * x.shape[1]
            var y = Tensor(uninitialized: x.dtype, shape: shape)
            var idx = Tensor(uninitialized: .int64, shape: wantIndices ? shape : [0])
            if y.count == 0 { return wantIndices ? [y, idx] : [y] }
            guard x.count > 0 else { throw ctx.error("input X \(NNSupport.shapeText(x.shape)) is empty") }
            idx.withUnsafeMutableBufferPointer(as: Int64.self) { ip in
                let indices = wantIndices ? ip.baseAddress : nil
                switch x.dtype {
                case .uint8:
                    x.withUnsafeBufferPointer(as: UInt8.self) { xp in
                        y.withUnsafeMutableBufferPointer(as: UInt8.self) { yp in
                            Pooling.maxPool(x: xp.baseAddress!, y: yp.baseAddress!, planes: planes, window: g, indices: indices, columnMajor: columnMajor)
                        }
                    }
                case .int8:
                    x.withUnsafeBufferPointer(as: Int8.self) { xp in
                        y.withUnsafeMutableBufferPointer(as: Int8.self) { yp in
                            Pooling.maxPool(x: xp.baseAddress!, y: yp.baseAddress!, planes: planes, window: g, indices: indices, columnMajor: columnMajor)
                        }
                    }
                default:
                    x.withUnsafeBufferPointer(as: Float.self) { xp in
                        y.withUnsafeMutableBufferPointer(as: Float.self) { yp in
                            Pooling.maxPool(x: xp.baseAddress!, y: yp.baseAddress!, planes: planes, window: g, indices: indices, columnMajor: columnMajor)
                        }
                    }
                }
            }
            return wantIndices ? [y, idx] : [y]
        }
        if x0.dtype == .uint8 || x0.dtype == .int8 { return try run(x0) }
        return try NNSupport.asFloat32(inputs, ctx) { try run(ctx.required($0, 0)) }
    }

    static func averageInfer(_ inputs: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        let x = try ctx.required(inputs, 0)
        try NNSupport.checkFloat(x, "input X", ctx)
        let g = try window(x.shape, ctx)
        return [TensorInfo(x.dtype, Array(x.shape[0..<2]) + g.output)]
    }

    static func averageKernel(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        try NNSupport.asFloat32(inputs, ctx) { inputs in
            let x = try ctx.required(inputs, 0)
            let g = try window(x.shape, ctx)
            var y = Tensor(uninitialized: .float32, shape: Array(x.shape[0..<2]) + g.output)
            if y.count == 0 { return [y] }
            guard x.count > 0 else { throw ctx.error("input X \(NNSupport.shapeText(x.shape)) is empty") }
            let includePad = NNSupport.int(ctx, "count_include_pad", 0) != 0
            x.withUnsafeBufferPointer(as: Float.self) { xp in
                y.withUnsafeMutableBufferPointer(as: Float.self) { yp in
                    Pooling.averagePool(x: xp.baseAddress!, y: yp.baseAddress!, planes: x.shape[0] * x.shape[1], window: g, countIncludePad: includePad)
                }
            }
            return [y]
        }
    }

    static func globalShape(_ x: [Int], _ ctx: KernelContext) throws -> [Int] {
        guard x.count >= 3 else { throw ctx.error("input X has shape \(NNSupport.shapeText(x)); expected [N, C, D1, …] (rank ≥ 3)") }
        return Array(x[0..<2]) + Array(repeating: 1, count: x.count - 2)
    }

    static func globalInfer(_ inputs: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        let x = try ctx.required(inputs, 0)
        try NNSupport.checkFloat(x, "input X", ctx)
        return [TensorInfo(x.dtype, try globalShape(x.shape, ctx))]
    }

    static func globalKernel(_ inputs: [Tensor?], _ ctx: KernelContext, max: Bool) throws -> [Tensor] {
        try NNSupport.asFloat32(inputs, ctx) { inputs in
            let x = try ctx.required(inputs, 0)
            var y = Tensor(uninitialized: .float32, shape: try globalShape(x.shape, ctx))
            if y.count == 0 { return [y] }
            let size = x.shape[2...].reduce(1, *)
            guard size > 0 else { throw ctx.error("input X \(NNSupport.shapeText(x.shape)) has an empty spatial extent") }
            let planes = y.count
            x.withUnsafeBufferPointer(as: Float.self) { xp in
                y.withUnsafeMutableBufferPointer(as: Float.self) { yp in
                    if max {
                        Pooling.globalMax(x: xp.baseAddress!, y: yp.baseAddress!, planes: planes, size: size)
                    } else {
                        Pooling.globalAverage(x: xp.baseAddress!, y: yp.baseAddress!, planes: planes, size: size)
                    }
                }
            }
            return [y]
        }
    }
}
