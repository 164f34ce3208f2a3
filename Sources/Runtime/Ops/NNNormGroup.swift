import ModelIR
import TensorCore

extension StandardOps {
    /// GroupNormalization (opset 18: scale and bias per group; opset 21: per channel, with
    /// stash_type) and RMSNormalization (opset 23). Both reuse the LayerNormalization kernels:
    /// a group is a row of `C/G · D1⋯Dn` values.
    static func registerGroupNorms(_ r: OpRegistry) {
        r.register("GroupNormalization", since: 18, kernel: { try GroupNormOp.kernel($0, $1, perChannel: false) },
                   infer: { try GroupNormOp.infer($0, $2, perChannel: false) })
        r.register("GroupNormalization", since: 21, kernel: { try GroupNormOp.kernel($0, $1, perChannel: true) },
                   infer: { try GroupNormOp.infer($0, $2, perChannel: true) })
        r.register("RMSNormalization", since: 23, kernel: RMSNormOp.kernel, infer: RMSNormOp.infer)
    }
}

/// The stash_type attribute of the opset-21+ norms: the precision of the statistics. Every
/// accepted value runs the float32 kernels, whose sums are accumulated in Double.
enum StashType {
    static func check(_ ctx: KernelContext) throws {
        let s = NNSupport.int(ctx, "stash_type", 1)
        // FLOAT, FLOAT16, DOUBLE, BFLOAT16
        guard [1, 10, 11, 16].contains(s) else { throw ctx.error("stash_type \(s) is not a float type (1, 10, 11 or 16)") }
    }
}

/// ONNX GroupNormalization: X `[N, C, D1…Dn]` split into `num_groups` groups of C/G channels;
/// each (n, group) is normalized by its mean and population variance,
/// `Y = scale · (X − μ) / sqrt(σ² + ε) + bias`. Opset 18 has one scale/bias per group, opset 21
/// one per channel (opset 18's form was deprecated for that reason).
enum GroupNormOp {
    static func plan(_ x: [Int], _ scale: [Int], _ bias: [Int], perChannel: Bool, _ ctx: KernelContext) throws -> Int {
        guard x.count >= 2 else { throw ctx.error("input X has shape \(NNSupport.shapeText(x)); expected [N, C, D1, …]") }
        guard let g = ctx.node.int("num_groups").map({ Int($0) }) else { throw ctx.error("attribute num_groups is required") }
        let c = x[1]
        guard g >= 1, c % g == 0 else { throw ctx.error("num_groups \(g) does not divide the \(c) channels of X \(NNSupport.shapeText(x))") }
        let want = perChannel ? c : g
        guard scale == [want], bias == [want] else {
            throw ctx.error("scale \(NNSupport.shapeText(scale)) and bias \(NNSupport.shapeText(bias)) must be [\(want)] (one per \(perChannel ? "channel" : "group"))")
        }
        if perChannel { try StashType.check(ctx) }
        return g
    }

    static func infer(_ inputs: [TensorInfo?], _ ctx: KernelContext, perChannel: Bool) throws -> [TensorInfo] {
        let x = try ctx.required(inputs, 0)
        try NNSupport.checkFloat(x, "input X", ctx)
        _ = try plan(x.shape, try ctx.required(inputs, 1).shape, try ctx.required(inputs, 2).shape, perChannel: perChannel, ctx)
        return [x]
    }

    static func kernel(_ inputs: [Tensor?], _ ctx: KernelContext, perChannel: Bool) throws -> [Tensor] {
        try NNSupport.asFloat32(inputs, ctx) { inputs in
            let x = try ctx.required(inputs, 0), s = try ctx.required(inputs, 1), b = try ctx.required(inputs, 2)
            let g = try plan(x.shape, s.shape, b.shape, perChannel: perChannel, ctx)
            guard s.dtype == .float32, b.dtype == .float32 else { throw ctx.error("scale and bias must be float tensors") }
            var y = Tensor(uninitialized: .float32, shape: x.shape)
            if x.count == 0 { return [y] }
            let n = x.shape[0], c = x.shape[1], spatial = x.shape[2...].reduce(1, *)
            let cols = c / g * spatial
            let eps = ctx.node.float("epsilon") ?? 1e-5
            // Per-channel affine after the normalization (opset 18's per-group values repeated).
            var a = s.floatValues(), bv = b.floatValues()
            if !perChannel {
                a = (0..<c).map { a[$0 / (c / g)] }
                bv = (0..<c).map { bv[$0 / (c / g)] }
            }
            let ones = [Float](repeating: 1, count: cols)
            x.withUnsafeBufferPointer(as: Float.self) { xp in
                y.withUnsafeMutableBufferPointer(as: Float.self) { yp in
                    let out = yp.baseAddress!
                    Normalization.layerNorm(x: xp.baseAddress!, y: out, rows: n * g, cols: cols, scale: ones, bias: nil,
                                            epsilon: eps, mean: nil, invStdDev: nil)
                    Normalization.channelAffine(x: UnsafePointer(out), y: out, batch: n, channels: c, spatial: spatial, a: a, b: bv)
                }
            }
            return [y]
        }
    }
}

/// ONNX RMSNormalization (opset 23): over the axes `[axis, rank)`,
/// `Y = X / sqrt(mean(X²) + ε) · scale`, scale broadcast to the normalized shape as in
/// LayerNormalization (whose axis and parameter rules it shares).
enum RMSNormOp {
    static func infer(_ inputs: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        let x = try ctx.required(inputs, 0)
        try NNSupport.checkFloat(x, "input X", ctx)
        guard !x.shape.isEmpty else { throw ctx.error("input X is a scalar") }
        let a = try LayerNormOp.axis(x.shape, ctx)
        try LayerNormOp.checkParam(try ctx.required(inputs, 1).shape, "scale", x.shape, a, ctx)
        try StashType.check(ctx)
        return [x]
    }

    static func kernel(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        try NNSupport.asFloat32(inputs, ctx) { inputs in
            let x = try ctx.required(inputs, 0), s = try ctx.required(inputs, 1)
            guard !x.shape.isEmpty else { throw ctx.error("input X is a scalar") }
            let a = try LayerNormOp.axis(x.shape, ctx)
            try LayerNormOp.checkParam(s.shape, "scale", x.shape, a, ctx)
            try StashType.check(ctx)
            guard s.dtype == .float32 else { throw ctx.error("scale must be a float tensor") }
            let normalized = Array(x.shape[a...])
            let rows = x.shape[..<a].reduce(1, *), cols = normalized.reduce(1, *)
            let scale = LayerNormOp.expanded(s, to: normalized)
            let eps = ctx.node.float("epsilon") ?? 1e-5
            var y = Tensor(uninitialized: .float32, shape: x.shape)
            if x.count == 0 { return [y] }
            x.withUnsafeBufferPointer(as: Float.self) { xp in
                y.withUnsafeMutableBufferPointer(as: Float.self) { yp in
                    Normalization.rmsNorm(x: xp.baseAddress!, y: yp.baseAddress!, rows: rows, cols: cols, scale: scale, epsilon: eps)
                }
            }
            return [y]
        }
    }
}
