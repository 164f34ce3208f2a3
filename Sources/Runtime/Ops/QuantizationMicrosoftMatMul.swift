import Foundation
import ModelIR
import TensorCore

extension StandardOps {
    /// com.microsoft QGemm, DynamicQuantizeMatMul, MatMulIntegerToFloat and DynamicQuantizeLSTM
    /// (since-version 1). Integer products use IntegerOps (QuantizationInteger.swift); the LSTM
    /// runs the float cell of Recurrent.swift on dequantized weights.
    static func registerMicrosoftQuantizedProducts(_ r: OpRegistry) {
        let ms = MicrosoftQuant.domain
        r.register("QGemm", domain: ms, since: 1, kernel: MicrosoftProducts.qgemm, infer: MicrosoftProducts.qgemmType)
        r.register("DynamicQuantizeMatMul", domain: ms, since: 1, kernel: MicrosoftProducts.dynamicQuantizeMatMul, infer: MicrosoftProducts.dynamicQuantizeMatMulType)
        r.register("MatMulIntegerToFloat", domain: ms, since: 1, kernel: MicrosoftProducts.matMulIntegerToFloat, infer: MicrosoftProducts.matMulIntegerToFloatType)
        r.register("DynamicQuantizeLSTM", domain: ms, since: 1, kernel: MicrosoftProducts.dynamicQuantizeLSTM, infer: MicrosoftProducts.dynamicQuantizeLSTMType)
    }
}

enum MicrosoftProducts {
    static func text(_ s: [Int]) -> String { QuantizationText.shape(s) }

    /// Float32 values of a per-tensor or per-column (`count` values) scale.
    static func columnScales(_ t: Tensor, count: Int, _ what: String, _ ctx: KernelContext) throws -> [Float] {
        guard t.dtype == .float32 else { throw ctx.error("\(what) is \(t.dtype); expected float32") }
        let v = t.scalars(as: Float.self)
        guard v.count == 1 || (v.count == count && t.shape.count <= 1) else {
            throw ctx.error("\(what) has shape \(text(t.shape)); expected a scalar or \(count) values (one per column)")
        }
        return v.count == 1 ? Array(repeating: v[0], count: count) : v
    }

    // MARK: QGemm

    static func gemmDims(_ a: [Int], _ b: [Int], _ ctx: KernelContext) throws -> (m: Int, k: Int, n: Int) {
        guard a.count == 2, b.count == 2 else { throw ctx.error("A \(text(a)) and B \(text(b)) must be 2-D") }
        let ta = (ctx.node.int("transA") ?? 0) != 0, tb = (ctx.node.int("transB") ?? 0) != 0
        let m = ta ? a[1] : a[0], k = ta ? a[0] : a[1], kb = tb ? b[1] : b[0], n = tb ? b[0] : b[1]
        guard k == kb else { throw ctx.error("A \(text(a)) and B \(text(b)) (transA \(ta ? 1 : 0), transB \(tb ? 1 : 0)) have inner dimensions \(k) and \(kb)") }
        return (m, k, n)
    }

    static func qgemmType(_ types: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        let a = try ctx.required(types, 0), b = try ctx.required(types, 3)
        try MicrosoftQuant.checkEightBit(a, "A", ctx)
        try MicrosoftQuant.checkEightBit(b, "B", ctx)
        _ = try ctx.required(types, 1); _ = try ctx.required(types, 2); _ = try ctx.required(types, 4); _ = try ctx.required(types, 5)
        let (m, _, n) = try gemmDims(a.shape, b.shape, ctx)
        if types.count > 6, let c = types[6] {
            guard c.dtype == .int32 else { throw ctx.error("C is \(c.dtype); expected int32") }
            guard Broadcast.isUnidirectional(c.shape, to: [m, n]) else { throw ctx.error("C has shape \(text(c.shape)), which does not broadcast to [\(m), \(n)]") }
        }
        let yz = types.count > 8 ? types[8] : nil
        if let yz { try MicrosoftQuant.checkEightBit(yz, "y_zero_point", ctx) }
        return [TensorInfo(yz?.dtype ?? .float32, [m, n])]
    }

    /// QGemm as ONNX Runtime computes it: `acc = C + (A − z_a)(B − z_b)` in int32 (C broadcast,
    /// z_b per tensor or per column), `m_j = (alpha · s_a) · s_b[j]` then `/ s_y` when y_scale is
    /// given, all float32; with y_zero_point `y = requantize(float(acc) · m_j)` (clamp, round half to
    /// even, + z_y), else float output `float(acc) · m_j`.
    static func qgemm(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        let out = try qgemmType(inputs.map { $0.map(TensorInfo.init) }, [], ctx)[0]
        let a = inputs[0]!, b = inputs[3]!
        let (m, k, n) = try gemmDims(a.shape, b.shape, ctx)
        let ta = (ctx.node.int("transA") ?? 0) != 0, tb = (ctx.node.int("transB") ?? 0) != 0
        let za = try MicrosoftQuant.zeroPoint(inputs, 2, a.dtype, "a_zero_point", ctx)
        let zbT = inputs[5]!
        guard zbT.dtype == b.dtype else { throw ctx.error("b_zero_point is \(zbT.dtype); expected \(b.dtype)") }
        let zbv = Quantization.intValues(zbT)
        guard zbv.count == 1 || zbv.count == n else { throw ctx.error("b_zero_point has \(zbv.count) values; expected 1 or \(n)") }
        let alpha = ctx.node.float("alpha") ?? 1
        let sa = try MicrosoftQuant.scale(inputs, 1, "a_scale", ctx)
        let sb = try columnScales(inputs[4]!, count: n, "b_scale", ctx)
        let sy: Float? = inputs.count > 7 && inputs[7] != nil ? try MicrosoftQuant.scale(inputs, 7, "y_scale", ctx) : nil
        let mult = sb.map { s -> Float in let v = alpha * sa * s; return sy.map { v / $0 } ?? v }
        // A as [m, k] and B as [k, n], zero points subtracted.
        let av = Quantization.intValues(a), bv = Quantization.intValues(b)
        var am = [Int32](repeating: 0, count: m * k), bm = [Int32](repeating: 0, count: k * n)
        for i in 0..<m { for p in 0..<k { am[i * k + p] = (ta ? av[p * m + i] : av[i * k + p]) - za } }
        for p in 0..<k { for j in 0..<n { bm[p * n + j] = (tb ? bv[j * k + p] : bv[p * n + j]) - zbv[zbv.count == 1 ? 0 : j] } }
        var acc = [Int32](repeating: 0, count: m * n)
        am.withUnsafeBufferPointer { ap in bm.withUnsafeBufferPointer { bp in acc.withUnsafeMutableBufferPointer { cp in
            IntegerKernels.gemm(m: m, n: n, k: k, a: ap.baseAddress!, b: bp.baseAddress!, c: cp.baseAddress!)
        } } }
        if inputs.count > 6, let c = inputs[6] {
            let cv = c.scalars(as: Int32.self), strides = Broadcast.strides(of: c.shape, in: [m, n])
            for i in 0..<m { for j in 0..<n { acc[i * n + j] &+= cv[i * strides[0] + j * strides[1]] } }
        }
        if out.dtype == .float32 {
            var y = [Float](repeating: 0, count: m * n)
            for i in 0..<(m * n) { y[i] = Float(acc[i]) * mult[i % n] }
            return [Tensor(shape: [m, n], scalars: y)]
        }
        let zy = try MicrosoftQuant.zeroPoint(inputs, 8, out.dtype, "y_zero_point", ctx)
        let range = Quantization.integerRange(of: out.dtype)!
        var y = Tensor(dtype: out.dtype, shape: [m, n])
        y.withUnsafeMutableBytes { raw in
            for i in 0..<(m * n) {
                Quantization.storeInt(MicrosoftQuant.requantize(Float(acc[i]) * mult[i % n], zeroPoint: zy, range), raw.baseAddress!, i, out.dtype)
            }
        }
        return [y]
    }

    // MARK: MatMulIntegerToFloat, DynamicQuantizeMatMul

    static func checkBias(_ bias: TensorInfo?, n: Int, _ ctx: KernelContext) throws {
        guard let bias else { return }
        guard bias.dtype == .float32, bias.shape == [n] else { throw ctx.error("bias is \(bias.dtype)\(text(bias.shape)); expected float32 [\(n)]") }
    }

    /// `y = float(acc) · (s_a · s_b[j]) + bias[j]` over the int32 product of IntegerOps (NumPy
    /// matmul shapes, b's zero point per tensor or per column); MLAS's output processor.
    static func integerToFloat(a: [Int32], aShape: [Int], za: Int32, b: Tensor, zb: Tensor?, sa: Float, sb: Tensor,
                               bias: Tensor?, _ ctx: KernelContext) throws -> Tensor {
        let s = try IntegerOps.matmulShape(aShape, b.shape, ctx)
        let bv = try IntegerOps.subtractZeroPoint(Quantization.intValues(b), shape: s.b, zb, vectorAxis: -1, what: "b_zero_point", ctx)
        let acc = IntegerOps.batchedProduct(za == 0 ? a : a.map { $0 - za }, bv, s)
        let scales = try columnScales(sb, count: s.n, "b_scale", ctx).map { sa * $0 }
        let bv2 = bias?.scalars(as: Float.self)
        var y = [Float](repeating: 0, count: acc.count)
        for i in 0..<acc.count {
            let j = i % s.n
            y[i] = Float(acc[i]) * scales[j] + (bv2?[j] ?? 0)
        }
        return Tensor(shape: s.output, scalars: y)
    }

    static func matMulIntegerToFloatType(_ types: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        let a = try ctx.required(types, 0), b = try ctx.required(types, 1)
        try MicrosoftQuant.checkEightBit(a, "A", ctx)
        try MicrosoftQuant.checkEightBit(b, "B", ctx)
        _ = try ctx.required(types, 2); _ = try ctx.required(types, 3)
        let s = try IntegerOps.matmulShape(a.shape, b.shape, ctx)
        try checkBias(types.count > 6 ? types[6] : nil, n: s.n, ctx)
        return [TensorInfo(.float32, s.output)]
    }

    /// MatMulIntegerToFloat(A, B, a_scale, b_scale, a_zero_point, b_zero_point, bias).
    static func matMulIntegerToFloat(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        _ = try matMulIntegerToFloatType(inputs.map { $0.map(TensorInfo.init) }, [], ctx)
        let a = inputs[0]!
        let za = try MicrosoftQuant.zeroPoint(inputs, 4, a.dtype, "a_zero_point", ctx)
        let sa = try MicrosoftQuant.scale(inputs, 2, "a_scale", ctx)
        return [try integerToFloat(a: Quantization.intValues(a), aShape: a.shape, za: za, b: inputs[1]!, zb: inputs.count > 5 ? inputs[5] : nil,
                                   sa: sa, sb: inputs[3]!, bias: inputs.count > 6 ? inputs[6] : nil, ctx)]
    }

    static func dynamicQuantizeMatMulType(_ types: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        let a = try ctx.required(types, 0), b = try ctx.required(types, 1)
        guard a.dtype == .float32 else { throw ctx.error("A is \(a.dtype); expected float32") }
        try MicrosoftQuant.checkEightBit(b, "B", ctx)
        _ = try ctx.required(types, 2)
        let s = try IntegerOps.matmulShape(a.shape, b.shape, ctx)
        try checkBias(types.count > 4 ? types[4] : nil, n: s.n, ctx)
        return [TensorInfo(.float32, s.output)]
    }

    /// DynamicQuantizeMatMul(A, B, b_scale, b_zero_point, bias): A quantized to uint8 over the
    /// whole tensor as ONNX Runtime does (range widened to include 0, `s = (max − min)/255`,
    /// `z = rint(clamp(−min/s, 0, 255))`, `q = sat(rint(a/s) + z)`: DynamicQuantizeLinear's
    /// arithmetic), then MatMulIntegerToFloat.
    static func dynamicQuantizeMatMul(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        _ = try dynamicQuantizeMatMulType(inputs.map { $0.map(TensorInfo.init) }, [], ctx)
        let a = inputs[0]!
        let q = try LinearQuantization.dynamicQuantize([a], ctx)
        let sa = q[1].scalars(as: Float.self)[0], za = Int32(q[2].scalars(as: UInt8.self)[0])
        return [try integerToFloat(a: Quantization.intValues(q[0]), aShape: a.shape, za: za, b: inputs[1]!, zb: inputs.count > 3 ? inputs[3] : nil,
                                   sa: sa, sb: inputs[2]!, bias: inputs.count > 4 ? inputs[4] : nil, ctx)]
    }

    // MARK: DynamicQuantizeLSTM

    /// Inputs: X, W `[D, input, 4H]`, R `[D, H, 4H]` (int8/uint8, transposed against ONNX LSTM),
    /// B, sequence_lens, initial_h, initial_c, P, W_scale, W_zero_point, R_scale, R_zero_point
    /// (each `[D]` or `[D, 4H]`).
    static func dequantizedWeights(_ w: Tensor, scale: Tensor, zeroPoint: Tensor, _ what: String, _ ctx: KernelContext) throws -> Tensor {
        guard w.shape.count == 3 else { throw ctx.error("\(what) has shape \(text(w.shape)); expected [num_directions, rows, 4*hidden_size]") }
        try MicrosoftQuant.checkEightBit(TensorInfo(w), what, ctx)
        guard zeroPoint.dtype == w.dtype else { throw ctx.error("\(what)_zero_point is \(zeroPoint.dtype); expected \(w.dtype)") }
        let dirs = w.shape[0], rows = w.shape[1], cols = w.shape[2]
        let s = scale.floatValues(), z = Quantization.intValues(zeroPoint)
        for (name, count) in [("scale", s.count), ("zero_point", z.count)] where count != dirs && count != dirs * cols {
            throw ctx.error("\(what)_\(name) has \(count) values; expected \(dirs) (per direction) or \(dirs * cols) (per column)")
        }
        let v = Quantization.intValues(w)
        var out = [Float](repeating: 0, count: w.count)
        for d in 0..<dirs {
            for r in 0..<rows {
                for c in 0..<cols {
                    let si = s.count == dirs ? d : d * cols + c, zi = z.count == dirs ? d : d * cols + c
                    out[(d * cols + c) * rows + r] = Float(v[(d * rows + r) * cols + c] - z[zi]) * s[si]
                }
            }
        }
        return Tensor(shape: [dirs, cols, rows], scalars: out)
    }

    static func lstmInputs(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor?] {
        for i in [1, 2, 8, 9, 10, 11] { _ = try ctx.required(inputs, i) }
        let w = try dequantizedWeights(inputs[1]!, scale: inputs[8]!, zeroPoint: inputs[9]!, "W", ctx)
        let r = try dequantizedWeights(inputs[2]!, scale: inputs[10]!, zeroPoint: inputs[11]!, "R", ctx)
        return [inputs[0], w, r] + (3..<8).map { $0 < inputs.count ? inputs[$0] : nil }
    }

    static func dynamicQuantizeLSTMType(_ types: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        let w = try ctx.required(types, 1), r = try ctx.required(types, 2)
        guard w.shape.count == 3, r.shape.count == 3 else { throw ctx.error("W \(text(w.shape)) and R \(text(r.shape)) must be 3-D") }
        var t = types
        t[1] = TensorInfo(.float32, [w.shape[0], w.shape[2], w.shape[1]])
        t[2] = TensorInfo(.float32, [r.shape[0], r.shape[2], r.shape[1]])
        return try RecurrentOp(.lstm, ctx).outputTypes(Array(t.prefix(8)), ctx)
    }

    /// DynamicQuantizeLSTM as ONNX Runtime's CPU kernel computes it (deep_cpu_lstm with quantized
    /// weights, one thread): per direction, X (all steps at once) and then at each step the
    /// previous hidden state (all batch rows at once) are quantized to uint8 like
    /// DynamicQuantizeMatMul's A; the products with W and R are exact int32 sums scaled by
    /// `s_x·s_w[j]` / `s_h·s_r[j]`; the fused bias `Wb + Rb`, peepholes and the usual gates follow:
    /// `c = c_prev·f + i·g`, `h = o·tanh(c)`. The gate functions are MLAS's logistic
    /// (`MicrosoftQuant.logistic`) and Foundation's tanh where ORT uses MLAS's tanh
    /// approximation: a few float32 ulp per step, which moves an output by more only when it
    /// flips the rounding of a quantized hidden value (one step of h's range / 255).
    /// sequence_lens as ORT: a row past its length is skipped, its Y rows are zero and (when Y is
    /// an output) its h enters the next steps' quantization as zeros. `clip` bounds each gate's
    /// input after the bias (not c), `input_forget` makes f = 1 − i, other activations follow
    /// ONNX. Non-float32 X takes the float LSTM of Recurrent.swift on dequantized weights.
    static func dynamicQuantizeLSTM(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        let op = try RecurrentOp(.lstm, ctx)
        let floatInputs = try lstmInputs(inputs, ctx)
        let types = floatInputs.map { $0.map(TensorInfo.init) }
        let outTypes = try op.outputTypes(types, ctx)
        let x = floatInputs[0]!
        let seq = x.shape[0], batch = x.shape[1], input = x.shape[2], dirs = op.directions
        guard x.dtype == .float32 else { return try op.run(floatInputs, ctx) }
        let fns = try op.activations(ctx)
        let inputForget = (ctx.node.int("input_forget") ?? 0) != 0
        // ORT: Sigmoid and Tanh through MLAS (logistic reproduced, libm tanh), others as ONNX defines them.
        func act(_ a: RecurrentActivation, _ v: Float) -> Float {
            switch a {
            case .sigmoid: return MicrosoftQuant.logistic(v)
            case .tanh: return tanhf(v)
            default: return a.apply(v)
            }
        }
        // Bias, then `clip` on a gate's input (ORT's clip_add_bias).
        func pre(_ v: Float, _ b: Float) -> Float {
            let x = v + b
            guard let cl = op.clip else { return x }
            return max(-cl, min(cl, x))
        }
        let w = inputs[1]!, r = inputs[2]!
        let H = r.shape[1], G = 4 * H
        let xv = x.scalars(as: Float.self)
        var lengths = Array(repeating: seq, count: batch)
        if inputs.count > 4, let l = inputs[4] {
            lengths = l.int64Values().map { Int($0) }
            if let bad = lengths.first(where: { $0 < 0 || $0 > seq }) { throw ctx.error("sequence_lens holds \(bad), outside 0...\(seq)") }
        }
        let maxLen = lengths.max() ?? 0, minLen = lengths.min() ?? 0
        // ORT feeds the previous step's Y rows (zero for finished rows) to the next product when Y
        // is an output, else the Y_h buffer (finished rows keep their last h).
        let outputSequence = !(ctx.node.outputs.first ?? "").isEmpty
        let bias = floatInputs[3]?.floatValues(), h0 = floatInputs[5]?.floatValues(), c0 = floatInputs[6]?.floatValues()
        let peep = floatInputs[7]?.floatValues()
        var y = [Float](repeating: 0, count: seq * dirs * batch * H)
        var yh = [Float](repeating: 0, count: dirs * batch * H), yc = yh
        for d in 0..<dirs {
            let wq = try integerWeights(w, inputs[9]!, d, ctx), rq = try integerWeights(r, inputs[11]!, d, ctx)
            let ws = try weightScales(inputs[8]!, d, dirs: dirs, G, "W_scale", ctx), rs = try weightScales(inputs[10]!, d, dirs: dirs, G, "R_scale", ctx)
            let reverse = d == 1 || (ctx.node.string("direction") ?? "forward") == "reverse"
            // The direction's input rows in processing order (ORT's ReverseSequence: each row's
            // first `len` steps reversed, later steps in place), the first maxLen steps quantized
            // together, then X · W for all of them: [maxLen·batch, G].
            var xd = [Float](repeating: 0, count: maxLen * batch * input)
            for s in 0..<maxLen {
                for b in 0..<batch {
                    let t = reverse && s < lengths[b] ? lengths[b] - 1 - s : s
                    for k in 0..<input { xd[(s * batch + b) * input + k] = xv[(t * batch + b) * input + k] }
                }
            }
            let (xq, sx, zx) = dynamicU8(xd)
            let xm = xq.map { $0 - zx }
            var accX = [Int32](repeating: 0, count: maxLen * batch * G)
            if maxLen > 0 {
                xm.withUnsafeBufferPointer { a in wq.withUnsafeBufferPointer { b in accX.withUnsafeMutableBufferPointer { c in
                    IntegerKernels.gemm(m: maxLen * batch, n: G, k: input, a: a.baseAddress!, b: b.baseAddress!, c: c.baseAddress!)
                } } }
            }
            let mx = ws.map { sx * $0 }
            let fusedBias: [Float] = bias.map { b in (0..<G).map { b[d * 2 * G + $0] + b[d * 2 * G + G + $0] } } ?? Array(repeating: 0, count: G)
            var h = h0.map { Array($0[(d * batch * H)..<((d + 1) * batch * H)]) } ?? Array(repeating: 0, count: batch * H)
            var c = c0.map { Array($0[(d * batch * H)..<((d + 1) * batch * H)]) } ?? Array(repeating: 0, count: batch * H)
            var accH = [Int32](repeating: 0, count: batch * G)
            var lastH = [Float](repeating: 0, count: batch * H), lastC = lastH
            for s in 0..<maxLen {
                let (hq, sh, zh) = dynamicU8(h)
                let hm = hq.map { $0 - zh }
                hm.withUnsafeBufferPointer { a in rq.withUnsafeBufferPointer { b in accH.withUnsafeMutableBufferPointer { cc in
                    IntegerKernels.gemm(m: batch, n: G, k: H, a: a.baseAddress!, b: b.baseAddress!, c: cc.baseAddress!)
                } } }
                let mh = rs.map { sh * $0 }
                for b in 0..<batch {
                    guard s < lengths[b] else {
                        if outputSequence && s >= minLen { for k in 0..<H { h[b * H + k] = 0 } }
                        continue
                    }
                    var gate = [Float](repeating: 0, count: G)
                    for j in 0..<G {
                        gate[j] = Float(accX[(s * batch + b) * G + j]) * mx[j] + Float(accH[b * G + j]) * mh[j]
                    }
                    let (fa, ga, ha) = (fns[d][0], fns[d][1], fns[d][2])
                    for k in 0..<H {
                        let cPrev = c[b * H + k]
                        var gi = gate[k], go = gate[H + k], gf = gate[2 * H + k]
                        if let p = peep {
                            gi += cPrev * p[d * 3 * H + k]
                            gf += cPrev * p[d * 3 * H + 2 * H + k]
                        }
                        let i = act(fa, pre(gi, fusedBias[k]))
                        let f = inputForget ? 1 - i : act(fa, pre(gf, fusedBias[2 * H + k]))
                        let g = act(ga, pre(gate[3 * H + k], fusedBias[3 * H + k]))
                        let cNew = cPrev * f + i * g
                        if let p = peep { go += cNew * p[d * 3 * H + H + k] }
                        let o = act(fa, pre(go, fusedBias[H + k]))
                        c[b * H + k] = cNew
                        h[b * H + k] = o * act(ha, cNew)
                    }
                }
                for b in 0..<batch where s < lengths[b] {
                    let t = reverse ? lengths[b] - 1 - s : s
                    for k in 0..<H { y[((t * dirs + d) * batch + b) * H + k] = h[b * H + k] }
                    if s == lengths[b] - 1 {
                        for k in 0..<H { lastH[b * H + k] = h[b * H + k]; lastC[b * H + k] = c[b * H + k] }
                    }
                }
            }
            for i in 0..<(batch * H) { yh[d * batch * H + i] = lastH[i]; yc[d * batch * H + i] = lastC[i] }
        }
        return [Tensor(shape: outTypes[0].shape, scalars: y), Tensor(shape: outTypes[1].shape, scalars: yh),
                Tensor(shape: outTypes[2].shape, scalars: yc)]
    }

    /// uint8 dynamic quantization of ONNX Runtime's quantized GEMMs (GetQuantizationParameter +
    /// MlasQuantizeLinear): range widened to include 0, `s = (max − min)/255`, `z = rint(−min/s)`.
    static func dynamicU8(_ v: [Float]) -> ([Int32], Float, Int32) {
        var lo: Float = 0, hi: Float = 0
        for e in v { lo = min(lo, e); hi = max(hi, e) }
        let (scale, zp) = Quantization.dynamicParameters(minValue: lo, maxValue: hi)
        let z = Int32(zp), range: ClosedRange<Int32> = 0...255
        return (v.map { MicrosoftQuant.requantize($0 / scale, zeroPoint: z, range) }, scale, z)
    }

    /// Direction `d` of W `[D, rows, G]` (or R) as Int32 `[rows, G]` minus its zero point.
    static func integerWeights(_ w: Tensor, _ zero: Tensor, _ d: Int, _ ctx: KernelContext) throws -> [Int32] {
        let rows = w.shape[1], cols = w.shape[2], dirs = w.shape[0]
        let v = Quantization.intValues(w), z = Quantization.intValues(zero)
        var out = [Int32](repeating: 0, count: rows * cols)
        for r in 0..<rows {
            for c in 0..<cols {
                let zi = z.count == dirs ? d : d * cols + c
                out[r * cols + c] = v[(d * rows + r) * cols + c] - z[zi]
            }
        }
        return out
    }

    static func weightScales(_ s: Tensor, _ d: Int, dirs: Int, _ g: Int, _ what: String, _ ctx: KernelContext) throws -> [Float] {
        let v = s.floatValues()
        if v.count == dirs { return Array(repeating: v[d], count: g) }
        guard v.count == dirs * g else { throw ctx.error("\(what) has \(v.count) values; expected \(dirs) or \(dirs * g)") }
        return Array(v[(d * g)..<((d + 1) * g)])
    }
}
