import ModelIR
import TensorCore

extension StandardOps {
    /// Neural-network operators: Conv, ConvTranspose, Gemm, MatMul, pooling and normalization.
    /// Kernels live in TensorCore/Kernels; the files here read attributes, check shapes and
    /// pick the kernel. Each op is registered at the opset versions where its semantics changed
    /// (ONNX Operators.md / Changelog.md).
    static func registerNN(_ r: OpRegistry) {
        registerConv(r)          // NNConv.swift: Conv, ConvTranspose
        registerMatrixOps(r)     // NNMatMul.swift: Gemm, MatMul
        registerPooling(r)       // NNPool.swift: MaxPool, AveragePool, GlobalMaxPool, GlobalAveragePool
        registerNormalization(r) // NNNorm.swift: BatchNormalization, InstanceNormalization, LayerNormalization, LRN
        registerGroupNorms(r)    // NNNormGroup.swift: GroupNormalization, RMSNormalization
    }
}

/// Attribute reading and dtype handling shared by the NN ops.
enum NNSupport {
    /// Float element types the NN kernels accept. float32 runs natively; float16, bfloat16 and
    /// float64 are converted to float32, computed, and converted back (rounding to nearest even),
    /// which the interop tests check against ONNX Runtime at rtol 1e-3.
    static let floatTypes: Set<DType> = [.float32, .float16, .bfloat16, .float64]

    /// Checks that `t` has a float type the kernels accept, naming the input otherwise.
    static func checkFloat(_ t: TensorInfo, _ what: String, _ ctx: KernelContext) throws {
        guard floatTypes.contains(t.dtype) else {
            throw ctx.error("\(what) is \(t.dtype); \(ctx.node.opType) supports float32 (and float16/bfloat16/float64 through float32)")
        }
    }

    /// Runs `body` on float32 versions of `inputs` (float tensors converted, others kept), then
    /// converts each float32 output back to the dtype of input 0, except the outputs in
    /// `keepFloat32` (LayerNormalization's float32 statistics). A float32 model pays nothing.
    static func asFloat32(_ inputs: [Tensor?], _ ctx: KernelContext, keepFloat32: Set<Int> = [],
                          _ body: ([Tensor?]) throws -> [Tensor]) throws -> [Tensor] {
        let x = try ctx.required(inputs, 0)
        try checkFloat(TensorInfo(x), "input 0", ctx)
        if x.dtype == .float32 && inputs.allSatisfy({ $0 == nil || $0!.dtype != .float16 && $0!.dtype != .float64 && $0!.dtype != .bfloat16 }) {
            return try body(inputs)
        }
        let converted = inputs.map { t -> Tensor? in
            guard let t else { return nil }
            return t.dtype == .float16 || t.dtype == .float64 || t.dtype == .bfloat16 ? t.converted(to: .float32) : t
        }
        let outs = try body(converted)
        return outs.enumerated().map { k, t in
            t.dtype == .float32 && x.dtype != .float32 && !keepFloat32.contains(k) ? t.converted(to: x.dtype) : t
        }
    }

    /// An integer-list attribute as `[Int]`, empty when absent.
    static func ints(_ ctx: KernelContext, _ name: String) -> [Int] { ctx.node.ints(name)?.map { Int($0) } ?? [] }

    static func int(_ ctx: KernelContext, _ name: String, _ dflt: Int) -> Int { ctx.node.int(name).map { Int($0) } ?? dflt }

    static func autoPad(_ ctx: KernelContext) throws -> AutoPad {
        let s = ctx.node.string("auto_pad") ?? "NOTSET"
        guard let p = AutoPad(rawValue: s) else {
            throw ctx.error("auto_pad '\(s)' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
        }
        return p
    }

    /// The forward window of a Conv or pooling node over `spatial` input dims.
    static func window(_ ctx: KernelContext, spatial: [Int], kernel: [Int], ceilMode: Bool = false, dilations: Bool = true) throws -> WindowGeometry {
        do {
            return try WindowGeometry.forward(input: spatial, kernel: kernel, strides: ints(ctx, "strides"),
                                              dilations: dilations ? ints(ctx, "dilations") : [], pads: ints(ctx, "pads"),
                                              autoPad: try autoPad(ctx), ceilMode: ceilMode)
        } catch let f as WindowGeometry.Failure {
            throw ctx.error(f.description)
        }
    }

    /// The row epilogue (bias add + activation) for a fused activation.
    static func epilogue(_ act: FusedActivation?) -> RowEpilogue? {
        guard let act else { return nil }
        switch act {
        case .relu:
            // NaN passes through, as in the standalone Relu (FusedActivation.apply).
            return { p, n, b in for i in 0..<n { let v = p[i] + b; p[i] = v < 0 ? 0 : v } }
        case .clip(let lo, let hi):
            return { p, n, b in for i in 0..<n { p[i] = min(max(p[i] + b, lo), hi) } }
        case .leakyRelu(let a):
            return { p, n, b in for i in 0..<n { let v = p[i] + b; p[i] = v >= 0 ? v : a * v } }
        default:
            return { p, n, b in
                if b != 0 { for i in 0..<n { p[i] += b } }
                act.apply(p, count: n)
            }
        }
    }

    /// The convolution epilogue for a fused activation: the kernels apply all but the Swift-only
    /// ones in their store (vectorized); others run per row.
    static func convEpilogue(_ act: FusedActivation?) -> ConvEpilogue {
        switch act {
        case nil: return .bias
        case .relu: return .activation(.relu)
        case .clip(let lo, let hi): return .activation(.clip(min: lo, max: hi))
        case .leakyRelu(let a): return .activation(.leakyRelu(alpha: a))
        case .sigmoid: return .activation(.sigmoid)
        case .silu: return .activation(.silu)
        case .hardSwish: return .activation(.hardSwish)
        case .hardSigmoid(let a, let b): return .activation(.hardSigmoid(alpha: a, beta: b))
        case .tanh: return .activation(.tanh)
        }
    }

    /// Shape of a rank-`r` tensor as text for messages.
    static func shapeText(_ s: [Int]) -> String { "[" + s.map(String.init).joined(separator: ", ") + "]" }
}
