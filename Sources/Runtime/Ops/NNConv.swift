import ModelIR
import Passes
import TensorCore

extension StandardOps {
    /// Conv and ConvTranspose. Their semantics have not changed since opset 1 (opset 11 only
    /// clarified the pads of auto_pad, opset 22 added bfloat16), so one entry each.
    static func registerConv(_ r: OpRegistry) {
        r.register("Conv", since: 1, kernel: ConvOp.kernel, infer: ConvOp.infer)
        r.register("ConvTranspose", since: 1, kernel: ConvTransposeOp.kernel, infer: ConvTransposeOp.infer)
    }
}

/// ONNX Conv: `Y[n, m] = B[m] + Σ_c W[m, c] ⋆ X[n, g(m)·C/group + c]`, X `[N, C, D1…Dn]`,
/// W `[M, C/group, k1…kn]`, optional B `[M]`; strides, dilations, pads / auto_pad, group.
enum ConvOp {
    /// Checks the operand shapes and computes the convolution's shape.
    static func plan(x: [Int], w: [Int], bias: [Int]?, _ ctx: KernelContext) throws -> ConvShape {
        guard x.count >= 3 else { throw ctx.error("input X has shape \(NNSupport.shapeText(x)); expected [N, C, D1, …] (rank ≥ 3)") }
        guard w.count == x.count else {
            throw ctx.error("weight W has shape \(NNSupport.shapeText(w)); expected rank \(x.count) like X \(NNSupport.shapeText(x))")
        }
        let rank = x.count - 2
        guard rank <= Convolution.maxSpatialRank else { throw ctx.error("\(rank) spatial dims are not supported (at most \(Convolution.maxSpatialRank))") }
        let group = NNSupport.int(ctx, "group", 1)
        let c = x[1], m = w[0]
        guard group >= 1, c % group == 0, m % group == 0 else {
            throw ctx.error("group \(group) does not divide the \(c) input and \(m) output channels")
        }
        guard w[1] == c / group else {
            throw ctx.error("weight W \(NNSupport.shapeText(w)) expects \(w[1] * group) input channels (group \(group)), X has \(c)")
        }
        let kernel = Array(w[2...])
        let attr = NNSupport.ints(ctx, "kernel_shape")
        guard attr.isEmpty || attr == kernel else {
            throw ctx.error("kernel_shape \(attr) does not match the weight's spatial dims \(kernel)")
        }
        if let b = bias, b != [m] {
            throw ctx.error("bias B has shape \(NNSupport.shapeText(b)); expected [\(m)]")
        }
        let window = try NNSupport.window(ctx, spatial: Array(x[2...]), kernel: kernel)
        return ConvShape(batch: x[0], inChannels: c, outChannels: m, groups: group, window: window)
    }

    static func infer(_ inputs: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        var inputs = inputs
        var residual: TensorInfo?
        if inputs.count == 5, ctx.node.hasFusedResidual {
            residual = try ctx.required(inputs, 4)
            inputs.removeLast()
        }
        let out = try inferConv(inputs, ctx)
        guard let r = residual else { return out }
        // Add(conv, r) broadcasts (ResidualAddIntoConv).
        guard let shape = Broadcast.shape(out[0].shape, r.shape) else {
            throw ctx.error("the residual \(NNSupport.shapeText(r.shape)) does not broadcast with the output \(NNSupport.shapeText(out[0].shape))")
        }
        return [TensorInfo(out[0].dtype, shape)]
    }

    static func inferConv(_ inputs: [TensorInfo?], _ ctx: KernelContext) throws -> [TensorInfo] {
        var inputs = inputs
        if inputs.count == 4, ctx.node.hasFusedInputScale, let a = inputs[0], let b = inputs[3] {
            // The input is the product of inputs 0 and 3 (ChannelScaleIntoConv).
            guard let shape = Broadcast.shape(a.shape, b.shape) else {
                throw ctx.error("the channel scale's operands \(NNSupport.shapeText(a.shape)) and \(NNSupport.shapeText(b.shape)) do not broadcast")
            }
            inputs = [TensorInfo(a.dtype, shape), inputs[1], inputs[2]]
        }
        return try ConvFamily.infer(inputs, ctx, plan: { try plan(x: $0, w: $1, bias: $2, $3) })
    }

    static func kernel(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        if inputs.count == 5, ctx.node.hasFusedResidual {
            let r = try ctx.required(inputs, 4)
            var y = try kernel(Array(inputs[0..<4]), ctx)[0]
            guard y.dtype == .float32, r.dtype == .float32, y.shape == r.shape else {
                return [try BinaryMap.arithmetic(y, r, AddFunction(), ctx)]
            }
            addResidual(&y, r)
            return [y]
        }
        if inputs.count == 4, ctx.node.hasFusedInputScale {
            let (inputs, scale) = try scaledInput(inputs, ctx)
            if let scale {
                return try scale.withUnsafeBufferPointer(as: Float.self) { sp in
                    try ConvFamily.run(inputs, ctx, plan: { try plan(x: $0, w: $1, bias: $2, $3) }, packWeights: ctx.packWeights,
                                       compute: { Convolution.forward(x: $0, w: $1, bias: $2, y: $3, shape: $4, epilogue: $5, packedWeights: $6,
                                                                      inputScale: sp.baseAddress!) })
                }
            }
            return try kernel(inputs, ctx)
        }
        return try ConvFamily.run(inputs, ctx, plan: { try plan(x: $0, w: $1, bias: $2, $3) }, packWeights: ctx.packWeights,
                                  compute: { Convolution.forward(x: $0, w: $1, bias: $2, y: $3, shape: $4, epilogue: $5, packedWeights: $6) })
    }

    /// `y += r` for float32 tensors of one shape (ResidualAddIntoConv): the sums the Add
    /// computes, written over the Conv's fresh output while it is still in cache. Other shapes
    /// and types go through Add's broadcasting instead.
    static func addResidual(_ y: inout Tensor, _ r: Tensor) {
        let n = y.count
        r.withUnsafeBufferPointer(as: Float.self) { rp in
            y.withUnsafeMutableBufferPointer(as: Float.self) { yp in
                let rb = rp.baseAddress!, yb = yp.baseAddress!
                Parallel.forRanges(count: (n + 4095) / 4096, minimumWork: 1 << 15, workPerItem: 4096) { blocks in
                    let lo = blocks.lowerBound * 4096, hi = min(n, blocks.upperBound * 4096)
                    for i in lo..<hi { yb[i] += rb[i] }
                }
            }
        }
    }

    /// A Conv given a channel scale by `ChannelScaleIntoConv` reads `Mul(inputs[0], inputs[3])`.
    /// Where one operand is float32 `[N, C, spatial…]` and the other `[N, C, 1…]`, returns the
    /// first as the input and the second as the kernel's `inputScale`; otherwise the product
    /// made as the Mul makes it, and no scale.
    static func scaledInput(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> (inputs: [Tensor?], scale: Tensor?) {
        let a = try ctx.required(inputs, 0), b = try ctx.required(inputs, 3)
        let rest = Array(inputs[1..<3])
        for (x, s) in [(a, b), (b, a)] where x.dtype == .float32 && s.dtype == .float32 && x.rank >= 3 && s.rank == x.rank
            && s.shape[0] == x.shape[0] && s.shape[1] == x.shape[1] && s.shape[2...].allSatisfy({ $0 == 1 }) && x.shape != s.shape {
            return ([x] + rest, s)
        }
        return ([try BinaryMap.multiply(a, b, ctx)] + rest, nil)
    }
}

/// ONNX ConvTranspose: X `[N, C, D1…Dn]`, W `[C, M/group, k1…kn]`, optional B `[M]`; strides,
/// dilations, pads / auto_pad, output_padding, output_shape, group.
enum ConvTransposeOp {
    static func plan(x: [Int], w: [Int], bias: [Int]?, _ ctx: KernelContext) throws -> ConvShape {
        guard x.count >= 3 else { throw ctx.error("input X has shape \(NNSupport.shapeText(x)); expected [N, C, D1, …] (rank ≥ 3)") }
        guard w.count == x.count else {
            throw ctx.error("weight W has shape \(NNSupport.shapeText(w)); expected rank \(x.count) like X \(NNSupport.shapeText(x))")
        }
        let rank = x.count - 2
        guard rank <= Convolution.maxSpatialRank else { throw ctx.error("\(rank) spatial dims are not supported (at most \(Convolution.maxSpatialRank))") }
        let group = NNSupport.int(ctx, "group", 1)
        let c = x[1]
        guard group >= 1, c % group == 0 else { throw ctx.error("group \(group) does not divide the \(c) input channels") }
        guard w[0] == c else { throw ctx.error("weight W \(NNSupport.shapeText(w)) expects \(w[0]) input channels, X has \(c)") }
        let m = w[1] * group
        let kernel = Array(w[2...])
        let attr = NNSupport.ints(ctx, "kernel_shape")
        guard attr.isEmpty || attr == kernel else {
            throw ctx.error("kernel_shape \(attr) does not match the weight's spatial dims \(kernel)")
        }
        if let b = bias, b != [m] { throw ctx.error("bias B has shape \(NNSupport.shapeText(b)); expected [\(m)]") }
        var outputShape: [Int]? = ctx.node.ints("output_shape").map { $0.map { Int($0) } }
        // Some exporters write the full [N, C, …] shape; the spec asks for the spatial dims only.
        if let o = outputShape, o.count == x.count { outputShape = Array(o[2...]) }
        let window: WindowGeometry
        do {
            window = try WindowGeometry.transposed(input: Array(x[2...]), kernel: kernel, strides: NNSupport.ints(ctx, "strides"),
                                                   dilations: NNSupport.ints(ctx, "dilations"), pads: NNSupport.ints(ctx, "pads"),
                                                   outputPadding: NNSupport.ints(ctx, "output_padding"), outputShape: outputShape,
                                                   autoPad: try NNSupport.autoPad(ctx))
        } catch let f as WindowGeometry.Failure {
            throw ctx.error(f.description)
        }
        return ConvShape(batch: x[0], inChannels: c, outChannels: m, groups: group, window: window)
    }

    static func infer(_ inputs: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        try ConvFamily.infer(inputs, ctx, plan: { try plan(x: $0, w: $1, bias: $2, $3) })
    }

    static func kernel(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        try ConvFamily.run(inputs, ctx, plan: { try plan(x: $0, w: $1, bias: $2, $3) }, packWeights: false,
                           compute: { x, w, b, y, s, e, _ in Convolution.transposed(x: x, w: w, bias: b, y: y, shape: s, epilogue: e) })
    }
}

/// What Conv and ConvTranspose share around their kernels: input checks, the output tensor, the
/// fused activation epilogue; `plan` gives the geometry and `compute` the arithmetic.
enum ConvFamily {
    typealias Plan = (_ x: [Int], _ w: [Int], _ bias: [Int]?, _ ctx: KernelContext) throws -> ConvShape
    typealias Compute = (_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
                         _ y: UnsafeMutablePointer<Float>, _ shape: ConvShape, _ epilogue: ConvEpilogue,
                         _ packedWeights: UnsafePointer<Float>?) -> Void

    static func infer(_ inputs: [TensorInfo?], _ ctx: KernelContext, plan: Plan) throws -> [TensorInfo] {
        let x = try ctx.required(inputs, 0), w = try ctx.required(inputs, 1)
        try NNSupport.checkFloat(x, "input X", ctx)
        let b = inputs.count > 2 ? inputs[2] : nil
        let s = try plan(x.shape, w.shape, b?.shape, ctx)
        return [TensorInfo(x.dtype, [s.batch, s.outChannels] + s.window.output)]
    }

    /// - Parameter packWeights: hand `compute` the weights in the direct product's packed layout,
    ///   packed on first use and kept while the weight tensor lives (`PackedWeights`), for
    ///   convolutions that multiply through `DirectGemm` (not depthwise).
    static func run(_ inputs: [Tensor?], _ ctx: KernelContext, plan: Plan, packWeights: Bool, compute: Compute) throws -> [Tensor] {
        try NNSupport.asFloat32(inputs, ctx) { inputs in
            let x = try ctx.required(inputs, 0), w = try ctx.required(inputs, 1)
            let b = inputs.count > 2 ? inputs[2] : nil
            guard w.dtype == .float32, b == nil || b!.dtype == .float32 else {
                throw ctx.error("W and B must have X's float type (W is \(w.dtype))")
            }
            // The geometry depends only on the attributes and these shapes: worked out once per step.
            let s: ConvShape
            if let memo = ctx.memo {
                s = try memo.value(for: x.shape + [-1] + w.shape + [-1] + (b?.shape ?? [-2])) { try plan(x.shape, w.shape, b?.shape, ctx) }
            } else {
                s = try plan(x.shape, w.shape, b?.shape, ctx)
            }
            var y = Tensor(uninitialized: .float32, shape: [s.batch, s.outChannels] + s.window.output)
            if y.count == 0 { return [y] }
            guard x.count > 0, w.count > 0 else { throw ctx.error("X \(NNSupport.shapeText(x.shape)) or W \(NNSupport.shapeText(w.shape)) is empty") }
            let epilogue = NNSupport.convEpilogue(ctx.fusedActivation)
            x.withUnsafeBufferPointer(as: Float.self) { xp in
                w.withUnsafeBufferPointer(as: Float.self) { wp in
                    let packed = packWeights && !s.isDepthwise && !Convolution.convolutionsThroughBLAS
                        ? PackedWeights.packed(storage: w.storage, base: wp.baseAddress!, groups: s.groups, rows: s.outChannels / s.groups,
                                               k: w.count / s.outChannels)
                        : nil
                    y.withUnsafeMutableBufferPointer(as: Float.self) { yp in
                        if let b {
                            b.withUnsafeBufferPointer(as: Float.self) { bp in
                                compute(xp.baseAddress!, wp.baseAddress!, bp.baseAddress!, yp.baseAddress!, s, epilogue, packed)
                            }
                        } else {
                            compute(xp.baseAddress!, wp.baseAddress!, nil, yp.baseAddress!, s, epilogue, packed)
                        }
                    }
                }
            }
            return [y]
        }
    }
}
