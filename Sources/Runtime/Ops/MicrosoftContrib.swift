import Foundation
import ModelIR
import TensorCore

extension StandardOps {
    /// ONNX Runtime's contrib operators (domain com.microsoft, opset 1) that exports and ORT's own
    /// offline optimizer write: FusedConv, Gelu, FastGelu, BiasGelu, QuickGelu and
    /// SkipLayerNormalization. Semantics follow ORT's schemas (core/graph/contrib_ops) and CPU
    /// kernels (contrib_ops/cpu); the interop test test_ms_contrib_ops.py compares each with ORT.
    static func registerMicrosoftContrib(_ r: OpRegistry) {
        let ms = MicrosoftContrib.domain
        r.register("FusedConv", domain: ms, since: 1, kernel: FusedConvOp.kernel, infer: FusedConvOp.infer)
        r.register("Gelu", domain: ms, since: 1, kernel: { try GeluFamily.kernel($0, $1, .gelu) },
                   infer: { try GeluFamily.infer($0, $2, .gelu) })
        r.register("FastGelu", domain: ms, since: 1, kernel: { try GeluFamily.kernel($0, $1, .fastGelu) },
                   infer: { try GeluFamily.infer($0, $2, .fastGelu) })
        r.register("BiasGelu", domain: ms, since: 1, kernel: { try GeluFamily.kernel($0, $1, .biasGelu) },
                   infer: { try GeluFamily.infer($0, $2, .biasGelu) })
        r.register("QuickGelu", domain: ms, since: 1, kernel: { try GeluFamily.kernel($0, $1, .quickGelu) },
                   infer: { try GeluFamily.infer($0, $2, .quickGelu) })
        r.register("SkipLayerNormalization", domain: ms, since: 1, kernel: SkipLayerNormOp.kernel, infer: SkipLayerNormOp.infer)
    }
}

enum MicrosoftContrib {
    static let domain = "com.microsoft"
}

/// com.microsoft FusedConv: ONNX Conv (same attributes, run by `ConvOp`) whose output, plus the
/// optional input Z of exactly the output's shape, goes through the activation named by the
/// string attribute `activation`: Relu, Tanh, Sigmoid, or LeakyRelu (activation_params [alpha]),
/// Clip ([min, max]), HardSigmoid ([alpha, beta]); no attribute means none.
/// `Y = act(Conv(X, W, B) + Z)` (ORT: MlasConv with Beta = 1 over a copy of Z, activation last).
/// The parameter count must match exactly, and an unknown name is refused, as ORT's
/// GetFusedActivationAttr does (ORT 1.32's CPU kernel has no "Silu").
enum FusedConvOp {
    static func activation(_ ctx: KernelContext) throws -> FusedActivation? {
        guard let name = ctx.node.string("activation") else { return nil }
        let params = ctx.node.floats("activation_params") ?? []
        func take(_ n: Int) throws -> [Float] {
            guard params.count == n else {
                throw ctx.error("activation \(name) takes \(n) activation_params, the node has \(params.count)")
            }
            return params
        }
        switch name {
        case "Relu": return .relu
        case "Tanh": return .tanh
        case "Sigmoid": return .sigmoid
        case "LeakyRelu": return .leakyRelu(alpha: try take(1)[0])
        case "Clip": let p = try take(2); return .clip(min: p[0], max: p[1])
        case "HardSigmoid": let p = try take(2); return .hardSigmoid(alpha: p[0], beta: p[1])
        default:
            throw ctx.error("activation '\(name)' is not one of Relu, Tanh, Sigmoid, LeakyRelu, Clip, HardSigmoid")
        }
    }

    static func infer(_ inputs: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        _ = try activation(ctx)
        let y = try ConvOp.infer(Array(inputs.prefix(3)), Array(values.prefix(3)), ctx)
        if inputs.count > 3, let z = inputs[3], z.shape != y[0].shape {
            throw ctx.error("Z has shape \(NNSupport.shapeText(z.shape)); it must equal the output's \(NNSupport.shapeText(y[0].shape))")
        }
        return y
    }

    static func kernel(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        let act = try activation(ctx)
        var conv = ctx
        guard inputs.count > 3, inputs[3] != nil else {
            // No Z: the activation runs in the convolution's store, as a fused Conv + activation.
            conv.fusedActivation = act
            return try ConvOp.kernel(Array(inputs.prefix(3)), conv)
        }
        conv.fusedActivation = nil
        // Z is added before the activation, so both run after the convolution, in float32
        // (one rounding back to X's type at the end).
        return try NNSupport.asFloat32(inputs, ctx) { inputs in
            var y = try ConvOp.kernel(Array(inputs.prefix(3)), conv)[0]
            let z = inputs[3]!
            guard z.shape == y.shape else {
                throw ctx.error("Z has shape \(NNSupport.shapeText(z.shape)); it must equal the output's \(NNSupport.shapeText(y.shape))")
            }
            guard z.dtype == .float32 else { throw ctx.error("Z must have X's float type (Z is \(z.dtype))") }
            if y.count == 0 { return [y] }
            z.withUnsafeBufferPointer(as: Float.self) { zp in
                y.withUnsafeMutableBufferPointer(as: Float.self) { yp in
                    for i in 0..<yp.count { yp[i] += zp[i] }
                    act?.apply(yp.baseAddress!, count: yp.count)
                }
            }
            return [y]
        }
    }
}

/// The Gelu variants, elementwise over X with an optional bias B of X's last dimension added
/// first (`v = X + B`, B 1-D of length X.shape[-1], as ORT's bias_gelu_helper checks):
/// - Gelu: `½·v·(1 + erf(v/√2))`;
/// - FastGelu (optional bias): `½·v·(1 + tanh(v·(0.035677408·v² + 0.797884561)))`, the tanh
///   approximation with ORT's constants (√(2/π) and 0.044715·√(2/π));
/// - BiasGelu (bias required): Gelu(A + B);
/// - QuickGelu (attribute alpha, default 1.702): `v·σ(α·v)`.
/// float32; float16/bfloat16/float64 are computed in float32 and rounded once, as ORT's float16
/// QuickGelu does.
enum GeluFamily {
    enum Kind {
        case gelu, fastGelu, biasGelu, quickGelu

        /// Index of the bias input, and whether it is required.
        var bias: (index: Int, required: Bool)? {
            switch self {
            case .gelu, .quickGelu: return nil
            case .fastGelu: return (1, false)
            case .biasGelu: return (1, true)
            }
        }
    }

    static func checkBias(_ x: [Int], _ b: [Int]?, _ kind: Kind, _ ctx: KernelContext) throws {
        if kind == .fastGelu || kind == .biasGelu {
            guard !x.isEmpty else { throw ctx.error("input 0 is a scalar; expected 1 or more dimensions") }
        }
        guard let b else {
            if kind.bias?.required == true { throw ctx.error("input 1 (bias) is required") }
            return
        }
        guard b.count == 1, b[0] == x.last else {
            throw ctx.error("bias has shape \(NNSupport.shapeText(b)); expected [\(x.last.map(String.init) ?? "?")], the last dimension of input 0 \(NNSupport.shapeText(x))")
        }
    }

    static func infer(_ inputs: [TensorInfo?], _ ctx: KernelContext, _ kind: Kind) throws -> [TensorInfo] {
        let x = try ctx.required(inputs, 0)
        try NNSupport.checkFloat(x, "input 0", ctx)
        let b = kind.bias.flatMap { $0.index < inputs.count ? inputs[$0.index] : nil }
        try checkBias(x.shape, b?.shape, kind, ctx)
        return [x]
    }

    // ORT's FastGelu constants (contrib_ops/cpu/bert/bias_gelu.cc).
    static let fastB: Float = 0.7978845608028654     // √(2/π)
    static let fastC: Float = 0.035677408136300125   // 0.044715·√(2/π)

    static func kernel(_ inputs: [Tensor?], _ ctx: KernelContext, _ kind: Kind) throws -> [Tensor] {
        let alpha = ctx.node.float("alpha") ?? 1.702
        return try NNSupport.asFloat32(inputs, ctx) { inputs in
            let x = try ctx.required(inputs, 0)
            let b = kind.bias.flatMap { $0.index < inputs.count ? inputs[$0.index] : nil }
            try checkBias(x.shape, b?.shape, kind, ctx)
            if let b, b.dtype != .float32 { throw ctx.error("bias must have input 0's float type (bias is \(b.dtype))") }
            var y = Tensor(uninitialized: .float32, shape: x.shape)
            if x.count == 0 { return [y] }
            let bias = b?.floatValues()
            let width = bias?.count ?? 1
            let f: (Float) -> Float
            switch kind {
            case .gelu, .biasGelu: f = { v in 0.5 * v * (1 + erff(v * 0.70710678118654752)) }
            case .fastGelu: f = { v in 0.5 * v * (1 + tanhf(v * (fastC * v * v + fastB))) }
            case .quickGelu: f = { v in v * SigmoidFunction()(alpha * v) }
            }
            x.withUnsafeBufferPointer(as: Float.self) { xp in
                y.withUnsafeMutableBufferPointer(as: Float.self) { yp in
                    let n = xp.count
                    Parallel.forRanges(count: n / width, minimumWork: 1 << 15, workPerItem: width) { rows in
                        for r in rows {
                            let o = r * width
                            if let bias {
                                for i in 0..<width { yp[o + i] = f(xp[o + i] + bias[i]) }
                            } else {
                                for i in 0..<width { yp[o + i] = f(xp[o + i]) }
                            }
                        }
                    }
                }
            }
            return [y]
        }
    }
}

/// com.microsoft SkipLayerNormalization: `S = input + skip (+ bias)`, then LayerNormalization of
/// S over the last dimension H with gamma (and beta), epsilon default 1e-12. input is [B, S, H]
/// or [S, H]; skip has input's shape, or [1, S, H] / [S, H] repeated over input's batch (ORT's
/// skip_layer_norm_helper); gamma, beta, bias are [H]. Optional outputs: mean and inv_std_var
/// (float32, input's shape with the last dimension 1) and input_skip_bias_sum S.
/// Statistics use `Normalization.layerNorm` (Double accumulators, two passes) where ORT
/// accumulates E[x] and E[x²] in the element type: the results agree to float32 rounding for
/// data whose mean is not far larger than its spread.
enum SkipLayerNormOp {
    static func check(_ x: [Int], _ skip: [Int], _ gamma: [Int], _ beta: [Int]?, _ bias: [Int]?, _ ctx: KernelContext) throws {
        guard x.count == 2 || x.count == 3 else {
            throw ctx.error("input has shape \(NNSupport.shapeText(x)); expected [batch, sequence, hidden] or [sequence, hidden]")
        }
        guard skip.count == 2 || skip.count == 3, Array(skip.suffix(2)) == Array(x.suffix(2)) else {
            throw ctx.error("skip has shape \(NNSupport.shapeText(skip)); expected input's \(NNSupport.shapeText(x)) or its last two dimensions")
        }
        if skip != x {
            guard x.count == 3, skip.count == 2 || skip[0] == 1 else {
                throw ctx.error("skip \(NNSupport.shapeText(skip)) must equal input \(NNSupport.shapeText(x)), or be [1, S, H] / [S, H] for a 3-d input")
            }
        }
        let h = x[x.count - 1]
        for (name, p) in [("gamma", gamma), ("beta", beta), ("bias", bias)] {
            if let p, p != [h] { throw ctx.error("\(name) has shape \(NNSupport.shapeText(p)); expected [\(h)]") }
        }
    }

    static func statShape(_ x: [Int]) -> [Int] { Array(x.dropLast()) + [1] }

    static func infer(_ inputs: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        let x = try ctx.required(inputs, 0)
        try NNSupport.checkFloat(x, "input", ctx)
        func opt(_ i: Int) -> [Int]? { i < inputs.count ? inputs[i]?.shape : nil }
        try check(x.shape, try ctx.required(inputs, 1).shape, try ctx.required(inputs, 2).shape, opt(3), opt(4), ctx)
        let stats = TensorInfo(.float32, statShape(x.shape))
        return [x, stats, stats, x]
    }

    static func kernel(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        let eps = ctx.node.float("epsilon") ?? 1e-12
        guard eps >= 0 else { throw ctx.error("epsilon \(eps) is negative") }
        return try NNSupport.asFloat32(inputs, ctx, keepFloat32: [1, 2]) { inputs in
            let x = try ctx.required(inputs, 0), skip = try ctx.required(inputs, 1), gamma = try ctx.required(inputs, 2)
            let beta = inputs.count > 3 ? inputs[3] : nil, bias = inputs.count > 4 ? inputs[4] : nil
            try check(x.shape, skip.shape, gamma.shape, beta?.shape, bias?.shape, ctx)
            guard ([skip, gamma] + [beta, bias].compactMap { $0 }).allSatisfy({ $0.dtype == .float32 }) else {
                throw ctx.error("skip, gamma, beta and bias must have input's float type")
            }
            let h = x.shape[x.rank - 1], rows = x.count / max(h, 1)
            var sum = Tensor(uninitialized: .float32, shape: x.shape)
            var y = Tensor(uninitialized: .float32, shape: x.shape)
            var mean = Tensor(uninitialized: .float32, shape: statShape(x.shape))
            var inv = Tensor(uninitialized: .float32, shape: statShape(x.shape))
            if x.count == 0 { return [y, mean, inv, sum] }
            let biasValues = bias?.floatValues()
            x.withUnsafeBufferPointer(as: Float.self) { xp in
                skip.withUnsafeBufferPointer(as: Float.self) { sp in
                    sum.withUnsafeMutableBufferPointer(as: Float.self) { op in
                        let skipCount = sp.count
                        for i in 0..<xp.count { op[i] = xp[i] + sp[i % skipCount] }
                        if let biasValues {
                            for r in 0..<rows { for c in 0..<h { op[r * h + c] += biasValues[c] } }
                        }
                    }
                }
            }
            sum.withUnsafeBufferPointer(as: Float.self) { sp in
                gamma.withUnsafeBufferPointer(as: Float.self) { gp in
                    y.withUnsafeMutableBufferPointer(as: Float.self) { yp in
                        mean.withUnsafeMutableBufferPointer(as: Float.self) { mp in
                            inv.withUnsafeMutableBufferPointer(as: Float.self) { ip in
                                func run(_ bp: UnsafePointer<Float>?) {
                                    Normalization.layerNorm(x: sp.baseAddress!, y: yp.baseAddress!, rows: rows, cols: h, scale: gp.baseAddress!,
                                                            bias: bp, epsilon: eps, mean: mp.baseAddress, invStdDev: ip.baseAddress)
                                }
                                if let beta { beta.withUnsafeBufferPointer(as: Float.self) { run($0.baseAddress!) } } else { run(nil) }
                            }
                        }
                    }
                }
            }
            return [y, mean, inv, sum]
        }
    }
}
