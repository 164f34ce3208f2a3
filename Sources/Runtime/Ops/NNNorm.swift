import ModelIR
import TensorCore

extension StandardOps {
    /// Normalization ops. BatchNormalization: opsets 1–8 have the `spatial` attribute (0 = one
    /// statistic per (c, d1…dn) element) and training outputs we do not compute; opset 9 drops
    /// `spatial`; opset 14 adds `training_mode` with outputs running_mean/running_var (opset 15
    /// only widens the parameter types, which the float32 conversion covers).
    static func registerNormalization(_ r: OpRegistry) {
        r.register("BatchNormalization", since: 1, kernel: { try BatchNormOp.kernel($0, $1, form: .spatialAttribute) }, infer: BatchNormOp.infer)
        r.register("BatchNormalization", since: 9, kernel: { try BatchNormOp.kernel($0, $1, form: .inference) }, infer: BatchNormOp.infer)
        r.register("BatchNormalization", since: 14, kernel: { try BatchNormOp.kernel($0, $1, form: .trainingMode) }, infer: BatchNormOp.infer)
        r.register("InstanceNormalization", since: 1, kernel: InstanceNormOp.kernel, infer: InstanceNormOp.infer)
        r.register("LayerNormalization", since: 17, kernel: LayerNormOp.kernel, infer: LayerNormOp.infer)
        r.register("LRN", since: 1, kernel: LRNOp.kernel, infer: LRNOp.infer)
    }
}

/// ONNX BatchNormalization: `Y = (X − mean) / sqrt(var + ε) · scale + B` per channel of
/// X `[N, C, D1…Dn]` (inference), or with the batch's own mean and population variance in
/// training mode (opset ≥ 14), which also outputs
/// `running_mean = input_mean·momentum + batch_mean·(1 − momentum)` (likewise the variance).
enum BatchNormOp {
    enum Form { case spatialAttribute, inference, trainingMode }

    static func infer(_ inputs: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        let x = try ctx.required(inputs, 0)
        try NNSupport.checkFloat(x, "input X", ctx)
        guard x.shape.count >= 2 else { throw ctx.error("input X has shape \(NNSupport.shapeText(x.shape)); expected [N, C, …]") }
        for i in 1...4 { _ = try ctx.required(inputs, i) }
        let mean = inputs[3]!, variance = inputs[4]!
        return [x, mean, variance]
    }

    /// Number of statistics per sample: C, or C·D1⋯Dn when the parameters are per element.
    static func paramCount(_ x: [Int], _ params: [Tensor], _ ctx: KernelContext, perElementAllowed: Bool) throws -> Int {
        let c = x[1], all = x[1...].reduce(1, *)
        let counts = Set(params.map(\.count))
        if counts == [c] { return c }
        if perElementAllowed && counts == [all] { return all }
        let names = ["scale", "B", "mean", "var"]
        let desc = zip(names, params).map { "\($0) \(NNSupport.shapeText($1.shape))" }.joined(separator: ", ")
        throw ctx.error("parameters \(desc) must each hold \(c) values (one per channel of X \(NNSupport.shapeText(x)))")
    }

    static func kernel(_ inputs: [Tensor?], _ ctx: KernelContext, form: Form) throws -> [Tensor] {
        let extraOutputs = ctx.node.outputs.dropFirst().contains { !$0.isEmpty }
        let training = form == .trainingMode && NNSupport.int(ctx, "training_mode", 0) != 0
        if extraOutputs && !training {
            throw ctx.error(form == .trainingMode
                ? "outputs running_mean/running_var need training_mode=1"
                : "training outputs (mean, var, saved_mean, saved_var) are not supported before opset 14; use training_mode=1 at opset ≥ 14 or drop the extra outputs")
        }
        let meanType = inputs.count > 3 ? inputs[3]?.dtype : nil
        var outs = try NNSupport.asFloat32(inputs, ctx) { inputs in
            let x = try ctx.required(inputs, 0)
            guard x.shape.count >= 2 else { throw ctx.error("input X has shape \(NNSupport.shapeText(x.shape)); expected [N, C, …]") }
            let params = try (1...4).map { try ctx.required(inputs, $0) }
            guard params.allSatisfy({ $0.dtype == .float32 }) else { throw ctx.error("scale, B, mean and var must be float tensors") }
            let eps = ctx.node.float("epsilon") ?? 1e-5
            let n = x.shape[0], channels = x.shape[1]
            let spatial = x.shape[2...].reduce(1, *)
            var y = Tensor(uninitialized: .float32, shape: x.shape)
            if training {
                _ = try paramCount(x.shape, params, ctx, perElementAllowed: false)
                let momentum = ctx.node.float("momentum") ?? 0.9
                var bm = Tensor(uninitialized: .float32, shape: [channels]), bv = Tensor(uninitialized: .float32, shape: [channels])
                if x.count == 0 { return [y] }
                x.withUnsafeBufferPointer(as: Float.self) { xp in
                    bm.withUnsafeMutableBufferPointer(as: Float.self) { mp in
                        bv.withUnsafeMutableBufferPointer(as: Float.self) { vp in
                            Normalization.channelMoments(x: xp.baseAddress!, batch: n, channels: channels, spatial: spatial, mean: mp.baseAddress!, variance: vp.baseAddress!)
                        }
                    }
                }
                y = try normalize(x, scale: params[0], bias: params[1], mean: bm, variance: bv, channels: channels, eps: eps)
                let running = [(params[2], bm), (params[3], bv)].map { old, cur -> Tensor in
                    let o = old.floatValues(), c = cur.floatValues()
                    return Tensor(shape: old.shape, scalars: (0..<o.count).map { o[$0] * momentum + c[$0] * (1 - momentum) })
                }
                return [y] + running
            }
            let perChannel = try paramCount(x.shape, params, ctx, perElementAllowed: form == .spatialAttribute)
            if x.count == 0 { return [y] }
            y = try normalize(x, scale: params[0], bias: params[1], mean: params[2], variance: params[3], channels: perChannel, eps: eps)
            return [y]
        }
        // Opset 15: running statistics keep the type of input_mean (T2), which may differ from X's.
        if outs.count == 3, let t = meanType {
            outs[1] = outs[1].converted(to: t)
            outs[2] = outs[2].converted(to: t)
        }
        return outs
    }

    /// `(X − mean)/sqrt(var + ε)·scale + B` with `channels` statistics per sample (C, or C·D1⋯Dn
    /// for the legacy per-element form).
    static func normalize(_ x: Tensor, scale: Tensor, bias: Tensor, mean: Tensor, variance: Tensor, channels: Int, eps: Float) throws -> Tensor {
        var y = Tensor(uninitialized: .float32, shape: x.shape)
        let n = x.shape[0], spatial = x.count / max(n * channels, 1)
        x.withUnsafeBufferPointer(as: Float.self) { xp in
            scale.withUnsafeBufferPointer(as: Float.self) { sp in
                bias.withUnsafeBufferPointer(as: Float.self) { bp in
                    mean.withUnsafeBufferPointer(as: Float.self) { mp in
                        variance.withUnsafeBufferPointer(as: Float.self) { vp in
                            y.withUnsafeMutableBufferPointer(as: Float.self) { yp in
                                Normalization.batchNorm(x: xp.baseAddress!, y: yp.baseAddress!, batch: n, channels: channels, spatial: spatial,
                                                        scale: sp.baseAddress!, bias: bp.baseAddress!, mean: mp.baseAddress!,
                                                        variance: vp.baseAddress!, epsilon: eps)
                            }
                        }
                    }
                }
            }
        }
        return y
    }
}

/// ONNX InstanceNormalization: `Y = scale[c]·(X − μ)/sqrt(σ² + ε) + B[c]`, μ and σ² the mean and
/// population variance of each (n, c) plane of X `[N, C, D1…Dn]`.
enum InstanceNormOp {
    static func check(_ x: [Int], _ scale: [Int], _ b: [Int], _ ctx: KernelContext) throws {
        guard x.count >= 3 else { throw ctx.error("input X has shape \(NNSupport.shapeText(x)); expected [N, C, D1, …]") }
        guard scale == [x[1]], b == [x[1]] else {
            throw ctx.error("scale \(NNSupport.shapeText(scale)) and B \(NNSupport.shapeText(b)) must be [\(x[1])] for X \(NNSupport.shapeText(x))")
        }
    }

    static func infer(_ inputs: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        let x = try ctx.required(inputs, 0)
        try NNSupport.checkFloat(x, "input X", ctx)
        try check(x.shape, try ctx.required(inputs, 1).shape, try ctx.required(inputs, 2).shape, ctx)
        return [x]
    }

    static func kernel(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        try NNSupport.asFloat32(inputs, ctx) { inputs in
            let x = try ctx.required(inputs, 0), s = try ctx.required(inputs, 1), b = try ctx.required(inputs, 2)
            try check(x.shape, s.shape, b.shape, ctx)
            guard s.dtype == .float32, b.dtype == .float32 else { throw ctx.error("scale and B must be float tensors") }
            var y = Tensor(uninitialized: .float32, shape: x.shape)
            if x.count == 0 { return [y] }
            let eps = ctx.node.float("epsilon") ?? 1e-5
            x.withUnsafeBufferPointer(as: Float.self) { xp in
                s.withUnsafeBufferPointer(as: Float.self) { sp in
                    b.withUnsafeBufferPointer(as: Float.self) { bp in
                        y.withUnsafeMutableBufferPointer(as: Float.self) { yp in
                            Normalization.instanceNorm(x: xp.baseAddress!, y: yp.baseAddress!, batch: x.shape[0], channels: x.shape[1],
                                                       spatial: x.shape[2...].reduce(1, *), scale: sp.baseAddress!, bias: bp.baseAddress!, epsilon: eps)
                        }
                    }
                }
            }
            return [y]
        }
    }
}

/// ONNX LayerNormalization (opset 17): over the axes `[axis, rank)`,
/// `Y = (X − Mean)·InvStdDev·Scale + B` with `InvStdDev = 1/sqrt(Var + ε)`, Scale and B
/// unidirectionally broadcast to the normalized shape; optional outputs Mean and InvStdDev of
/// shape `[d0, …, d(axis−1), 1, …, 1]`, computed in float32 (stash_type 1).
enum LayerNormOp {
    static func axis(_ x: [Int], _ ctx: KernelContext) throws -> Int {
        let a = NNSupport.int(ctx, "axis", -1)
        let r = x.count
        guard a >= -r && a < r else { throw ctx.error("axis \(a) is out of range for X of rank \(r)") }
        return a < 0 ? a + r : a
    }

    static func statShape(_ x: [Int], _ axis: Int) -> [Int] { Array(x[..<axis]) + Array(repeating: 1, count: x.count - axis) }

    static func checkParam(_ p: [Int], _ name: String, _ x: [Int], _ axis: Int, _ ctx: KernelContext) throws {
        let normalized = Array(x[axis...])
        // Unidirectional broadcast to X whose dims before `axis` are 1 (one scale per normalized element).
        let lead = max(0, p.count - normalized.count)
        guard Broadcast.isUnidirectional(p, to: x), p.prefix(lead).allSatisfy({ $0 == 1 }) else {
            throw ctx.error("\(name) \(NNSupport.shapeText(p)) does not broadcast to the normalized shape \(NNSupport.shapeText(normalized))")
        }
    }

    static func infer(_ inputs: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        let x = try ctx.required(inputs, 0)
        try NNSupport.checkFloat(x, "input X", ctx)
        guard !x.shape.isEmpty else { throw ctx.error("input X is a scalar") }
        let a = try axis(x.shape, ctx)
        try checkParam(try ctx.required(inputs, 1).shape, "Scale", x.shape, a, ctx)
        if inputs.count > 2, let b = inputs[2] { try checkParam(b.shape, "B", x.shape, a, ctx) }
        let stats = TensorInfo(.float32, statShape(x.shape, a))
        return [x, stats, stats]
    }

    /// `p` laid out as the `cols` values of the normalized shape (broadcast expanded).
    static func expanded(_ p: Tensor, to normalized: [Int]) -> [Float] {
        let v = p.floatValues()
        let cols = normalized.reduce(1, *)
        if v.count == cols { return v }
        let shape = Array(p.shape.suffix(normalized.count))
        let st = Broadcast.strides(of: shape, in: normalized)
        var out = [Float](repeating: 0, count: cols)
        var idx = [Int](repeating: 0, count: normalized.count)
        for i in 0..<cols {
            var o = 0
            for d in 0..<normalized.count { o += idx[d] * st[d] }
            out[i] = v[o]
            var d = normalized.count - 1
            while d >= 0 { idx[d] += 1; if idx[d] < normalized[d] { break }; idx[d] = 0; d -= 1 }
        }
        return out
    }

    static func kernel(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        // Mean and InvStdDev stay float32 (stash_type 1) whatever X's type.
        try NNSupport.asFloat32(inputs, ctx, keepFloat32: [1, 2]) { inputs in
            let x = try ctx.required(inputs, 0), s = try ctx.required(inputs, 1)
            let b = inputs.count > 2 ? inputs[2] : nil
            guard !x.shape.isEmpty else { throw ctx.error("input X is a scalar") }
            let a = try axis(x.shape, ctx)
            try checkParam(s.shape, "Scale", x.shape, a, ctx)
            if let b { try checkParam(b.shape, "B", x.shape, a, ctx) }
            let normalized = Array(x.shape[a...])
            let rows = x.shape[..<a].reduce(1, *), cols = normalized.reduce(1, *)
            let scale = expanded(s, to: normalized)
            let bias = b.map { expanded($0, to: normalized) }
            let eps = ctx.node.float("epsilon") ?? 1e-5
            var y = Tensor(uninitialized: .float32, shape: x.shape)
            var mean = Tensor(uninitialized: .float32, shape: statShape(x.shape, a))
            var inv = Tensor(uninitialized: .float32, shape: statShape(x.shape, a))
            if x.count == 0 { return [y, mean, inv] }
            x.withUnsafeBufferPointer(as: Float.self) { xp in
                y.withUnsafeMutableBufferPointer(as: Float.self) { yp in
                    mean.withUnsafeMutableBufferPointer(as: Float.self) { mp in
                        inv.withUnsafeMutableBufferPointer(as: Float.self) { ip in
                            scale.withUnsafeBufferPointer { sp in
                                func run(_ bp: UnsafePointer<Float>?) {
                                    Normalization.layerNorm(x: xp.baseAddress!, y: yp.baseAddress!, rows: rows, cols: cols, scale: sp.baseAddress!,
                                                            bias: bp, epsilon: eps, mean: mp.baseAddress, invStdDev: ip.baseAddress)
                                }
                                if let bias { bias.withUnsafeBufferPointer { run($0.baseAddress!) } } else { run(nil) }
                            }
                        }
                    }
                }
            }
            return [y, mean, inv]
        }
    }
}

/// ONNX LRN: `Y = X / (bias + α/size · Σ X²)^β`, the sum over a window of `size` channels
/// `[c − ⌊(size−1)/2⌋, c + ⌈(size−1)/2⌉]` clipped to `[0, C)`.
enum LRNOp {
    static func infer(_ inputs: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        let x = try ctx.required(inputs, 0)
        try NNSupport.checkFloat(x, "input X", ctx)
        guard x.shape.count >= 2 else { throw ctx.error("input X has shape \(NNSupport.shapeText(x.shape)); expected [N, C, …]") }
        guard NNSupport.int(ctx, "size", 0) >= 1 else { throw ctx.error("attribute size (≥ 1) is required") }
        return [x]
    }

    static func kernel(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        try NNSupport.asFloat32(inputs, ctx) { inputs in
            let x = try ctx.required(inputs, 0)
            guard x.shape.count >= 2 else { throw ctx.error("input X has shape \(NNSupport.shapeText(x.shape)); expected [N, C, …]") }
            let size = NNSupport.int(ctx, "size", 0)
            guard size >= 1 else { throw ctx.error("attribute size (≥ 1) is required") }
            var y = Tensor(uninitialized: .float32, shape: x.shape)
            if x.count == 0 { return [y] }
            x.withUnsafeBufferPointer(as: Float.self) { xp in
                y.withUnsafeMutableBufferPointer(as: Float.self) { yp in
                    Normalization.lrn(x: xp.baseAddress!, y: yp.baseAddress!, batch: x.shape[0], channels: x.shape[1],
                                      spatial: x.shape[2...].reduce(1, *), size: size, alpha: ctx.node.float("alpha") ?? 1e-4,
                                      beta: ctx.node.float("beta") ?? 0.75, bias: ctx.node.float("bias") ?? 1)
                }
            }
            return [y]
        }
    }
}
