import Foundation
import ModelIR
import TensorCore

// Attention-23 and Attention-24 (which adds the nonpad_kv_seqlen input), as in
// onnx/reference/ops/op_attention.py:
//
//   scores = scale · Q Kᵀ  →  softcap  →  + bias (attn_mask, causal, padding)  →  Softmax  →  · V
//
// with Q/K/V given 4-D `[batch, heads, seq, head_size]` or 3-D `[batch, seq, heads·head_size]`
// (q_num_heads and kv_num_heads then say how to split), past_key/past_value concatenated in
// front of K/V along the sequence (returned as present_key/present_value), and grouped-query
// attention when q_num_heads is a multiple of kv_num_heads (query head h reads key/value head
// h / (q_num_heads / kv_num_heads)). Both products run per head through BLAS.sgemm; the
// softmax is the Softmax op's kernel. Float16/bfloat16/float64 run through float32.
//
// Where the reference and the operator's text disagree the text wins, and the two cases are
// ones no backend test covers: qk_matmul_output_mode 0 with a softcap returns the product
// before the softcap (the reference returns it after), and a boolean mask with is_causal keeps
// the True entries at 0 (the reference turns them into 0·(-inf) = NaN).

extension StandardOps {
    static func registerAttention(_ r: OpRegistry) {
        for since in [23, 24] {
            r.register("Attention", since: since, kernel: { inputs, ctx in
                try NNSupport.asFloat32(inputs, ctx) { inputs in try AttentionOp.run(inputs, since: since, ctx) }
            }, infer: { inputs, _, ctx in
                let q = try ctx.required(inputs, 0)
                try NNSupport.checkFloat(q, "input Q", ctx)
                let p = try AttentionOp.Plan(inputs.map { $0?.shape }, since: since, ctx)
                let outs = [TensorInfo(q.dtype, p.outputShape), TensorInfo(q.dtype, [p.batch, p.kvHeads, p.total, p.headSize]),
                            TensorInfo(q.dtype, [p.batch, p.kvHeads, p.total, p.vHeadSize]), TensorInfo(q.dtype, [p.batch, p.qHeads, p.qSeq, p.total])]
                return Array(outs.prefix(max(ctx.node.outputs.count, 1)))
            })
        }
    }
}

enum AttentionOp {
    /// Shapes and sizes of one Attention node.
    struct Plan {
        var batch = 0, qHeads = 0, kvHeads = 0, qSeq = 0, kvSeq = 0, past = 0, headSize = 0, vHeadSize = 0
        var is3D = false
        var total: Int { past + kvSeq }
        /// [batch, qHeads, qSeq, maskLength] the mask broadcasts to, when there is one.
        var maskShape: [Int]?
        var outputShape: [Int] { is3D ? [batch, qSeq, qHeads * vHeadSize] : [batch, qHeads, qSeq, vHeadSize] }

        init(_ shapes: [[Int]?], since: Int, _ ctx: KernelContext) throws {
            func shape(_ i: Int) -> [Int]? { i < shapes.count ? shapes[i] : nil }
            guard let q = shape(0), let k = shape(1), let v = shape(2) else { throw ctx.error("Q, K and V are required") }
            guard q.count == k.count, k.count == v.count, q.count == 3 || q.count == 4 else {
                throw ctx.error("Q, K and V must all be 3-D or all 4-D, got \(NNSupport.shapeText(q)), \(NNSupport.shapeText(k)), \(NNSupport.shapeText(v))")
            }
            guard q[0] == k[0], k[0] == v[0] else { throw ctx.error("Q, K and V have different batch sizes (\(q[0]), \(k[0]), \(v[0]))") }
            batch = q[0]
            is3D = q.count == 3
            if is3D {
                let qh = ctx.intAttribute("q_num_heads", default: 0), kvh = ctx.intAttribute("kv_num_heads", default: 0)
                guard qh > 0, kvh > 0 else { throw ctx.error("3-D Q, K and V need the q_num_heads and kv_num_heads attributes") }
                guard q[2] % qh == 0, k[2] % kvh == 0, v[2] % kvh == 0 else {
                    throw ctx.error("hidden sizes (Q \(q[2]), K \(k[2]), V \(v[2])) must divide by q_num_heads \(qh) and kv_num_heads \(kvh)")
                }
                guard k[1] == v[1] else { throw ctx.error("K and V have different sequence lengths (\(k[1]), \(v[1]))") }
                (qHeads, kvHeads, qSeq, kvSeq) = (qh, kvh, q[1], k[1])
                (headSize, vHeadSize) = (q[2] / qh, v[2] / kvh)
                guard k[2] / kvh == headSize else { throw ctx.error("Q and K head sizes differ (\(headSize), \(k[2] / kvh))") }
            } else {
                guard k[1] == v[1], k[2] == v[2] else {
                    throw ctx.error("K \(NNSupport.shapeText(k)) and V \(NNSupport.shapeText(v)) must agree on heads and sequence length")
                }
                guard q[3] == k[3] else { throw ctx.error("Q and K head sizes differ (\(q[3]), \(k[3]))") }
                (qHeads, kvHeads, qSeq, kvSeq, headSize, vHeadSize) = (q[1], k[1], q[2], k[2], q[3], v[3])
            }
            guard kvHeads > 0, qHeads % kvHeads == 0 else {
                throw ctx.error("q_num_heads \(qHeads) must be a multiple of kv_num_heads \(kvHeads)")
            }
            switch (shape(4), shape(5)) {
            case (nil, nil): break
            case (let pk?, let pv?):
                guard pk == [batch, kvHeads, pk.count == 4 ? pk[2] : -1, headSize], pv == [batch, kvHeads, pk[2], vHeadSize] else {
                    throw ctx.error("past_key \(NNSupport.shapeText(pk)) and past_value \(NNSupport.shapeText(pv)) must be [\(batch), \(kvHeads), past, \(headSize)] and [\(batch), \(kvHeads), past, \(vHeadSize)]")
                }
                past = pk[2]
            default: throw ctx.error("past_key and past_value must be given together")
            }
            if since >= 24, let n = shape(6) {
                guard n == [batch] else { throw ctx.error("nonpad_kv_seqlen must be [\(batch)], got \(NNSupport.shapeText(n))") }
            }
            if let m = shape(3) {
                // The last axis may be shorter than the total sequence; the rest is padding (masked).
                guard let last = m.last, m.count <= 4, last <= past + kvSeq,
                      Broadcast.isUnidirectional(m, to: [batch, qHeads, qSeq, last]) else {
                    throw ctx.error("attn_mask \(NNSupport.shapeText(m)) does not broadcast to [\(batch), \(qHeads), \(qSeq), \(past + kvSeq)]")
                }
                maskShape = [batch, qHeads, qSeq, last]
            }
        }
    }

    static func run(_ inputs: [Tensor?], since: Int, _ ctx: KernelContext) throws -> [Tensor] {
        func input(_ i: Int) -> Tensor? { i < inputs.count ? inputs[i] : nil }
        let p = try Plan(inputs.map { $0?.shape }, since: since, ctx)
        for i in [0, 1, 2, 4, 5] where input(i).map({ $0.dtype != .float32 }) ?? false {
            throw ctx.error("input \(i) must have Q's float type, got \(input(i)!.dtype)")
        }
        // 4-D [batch, heads, seq, size] views of Q, K, V.
        func heads(_ t: Tensor, _ h: Int) throws -> Tensor {
            guard p.is3D else { return t }
            return try Movement.transpose(t.reshaped([t.shape[0], t.shape[1], h, t.shape[2] / h]), perm: [0, 2, 1, 3])
        }
        let q = try heads(try ctx.required(inputs, 0), p.qHeads)
        var k = try heads(try ctx.required(inputs, 1), p.kvHeads), v = try heads(try ctx.required(inputs, 2), p.kvHeads)
        if let pk = input(4), let pv = input(5) {
            k = try Movement.concat([pk, k], axis: 2)
            v = try Movement.concat([pv, v], axis: 2)
        }
        let (t, d, dv) = (p.total, p.headSize, p.vHeadSize)
        let group = p.qHeads / p.kvHeads
        let scale = ctx.node.float("scale") ?? 1 / Float(d).squareRoot()
        let softcap = ctx.floatAttribute("softcap", default: 0)
        let mode = ctx.intAttribute("qk_matmul_output_mode", default: 0)
        guard (0...3).contains(mode) else { throw ctx.error("qk_matmul_output_mode must be 0, 1, 2 or 3, got \(mode)") }
        let wantQK = ctx.node.outputs.count > 3 && !ctx.node.outputs[3].isEmpty

        // scores[b, h] = scale · Q[b, h] · K[b, h / group]ᵀ
        var scores = Tensor(uninitialized: .float32, shape: [p.batch, p.qHeads, p.qSeq, t])
        if scores.count > 0 {
            q.withUnsafeBufferPointer(as: Float.self) { qp in
                k.withUnsafeBufferPointer(as: Float.self) { kp in
                    scores.withUnsafeMutableBufferPointer(as: Float.self) { sp in
                        // One product per (batch, query head); heads run in parallel (a large
                        // product inside runs inline, as nested loops do).
                        Parallel.forRanges(count: p.batch * p.qHeads, workPerItem: p.qSeq * t * d) { range in
                            for bh in range {
                                let (b, h) = bh.quotientAndRemainder(dividingBy: p.qHeads)
                                BLAS.sgemm(transB: true, m: p.qSeq, n: t, k: d, alpha: scale,
                                           a: qp.baseAddress! + bh * p.qSeq * d, lda: d,
                                           b: kp.baseAddress! + (b * p.kvHeads + h / group) * t * d, ldb: d,
                                           c: sp.baseAddress! + bh * p.qSeq * t, ldc: t)
                            }
                        }
                    }
                }
            }
        }
        var qk: Tensor? = wantQK && mode == 0 ? scores : nil
        if softcap > 0 {
            scores.withUnsafeMutableBufferPointer(as: Float.self) { sp in
                for i in sp.indices { sp[i] = softcap * tanhf(sp[i] / softcap) }
            }
        }
        if wantQK && mode == 1 { qk = scores }
        try addBias(&scores, p, mask: input(3), causal: ctx.intAttribute("is_causal", default: 0) != 0,
                    nonpad: since >= 24 ? input(6) : nil, ctx)
        if wantQK && mode == 2 { qk = scores }

        var probs: Tensor
        if let code = ctx.node.int("softmax_precision") {
            guard let dt = DType(rawValue: Int32(truncatingIfNeeded: code)), NNSupport.floatTypes.contains(dt) else {
                throw ctx.error("softmax_precision \(code) is not a float type (float, float16, bfloat16, double)")
            }
            probs = try StandardOps.softmax(scores.converted(to: dt), .softmax, block: 3..<4, ctx).converted(to: .float32)
        } else {
            probs = try StandardOps.softmax(scores, .softmax, block: 3..<4, ctx)
        }
        if wantQK && mode == 3 { qk = probs }

        // y[b, h] = probs[b, h] · V[b, h / group]
        var y = Tensor(dtype: .float32, shape: [p.batch, p.qHeads, p.qSeq, dv])
        if y.count > 0 {
            probs.withUnsafeBufferPointer(as: Float.self) { pp in
                v.withUnsafeBufferPointer(as: Float.self) { vp in
                    y.withUnsafeMutableBufferPointer(as: Float.self) { yp in
                        Parallel.forRanges(count: p.batch * p.qHeads, workPerItem: p.qSeq * t * dv) { range in
                            for bh in range {
                                let (b, h) = bh.quotientAndRemainder(dividingBy: p.qHeads)
                                BLAS.sgemm(m: p.qSeq, n: dv, k: t,
                                           a: pp.baseAddress! + bh * p.qSeq * t, lda: t,
                                           b: vp.baseAddress! + (b * p.kvHeads + h / group) * t * dv, ldb: dv,
                                           c: yp.baseAddress! + bh * p.qSeq * dv, ldc: dv)
                            }
                        }
                    }
                }
            }
        }
        if p.is3D { y = try Movement.transpose(y, perm: [0, 2, 1, 3]).reshaped(p.outputShape) }
        var outs = [y, k, v]
        if wantQK, let qk { outs.append(qk) }
        return outs
    }

    /// Adds the attention bias in place: the mask (boolean: False → -inf; numeric: added), -inf
    /// past its last axis when it is shorter than the total sequence, -inf above the causal
    /// diagonal (query i sees keys 0 ... past + i) and -inf at keys j ≥ nonpad_kv_seqlen[b].
    static func addBias(_ scores: inout Tensor, _ p: Plan, mask: Tensor?, causal: Bool, nonpad: Tensor?, _ ctx: KernelContext) throws {
        if mask == nil && !causal && nonpad == nil { return }
        let t = p.total
        var valid = [Int](repeating: t, count: p.batch)
        if let nonpad {
            valid = try TensorOperands.ints(nonpad, "nonpad_kv_seqlen", ctx).map { min(max($0, 0), t) }
        }
        // The mask as float32 additive values (bool: 0 or -inf) with broadcast strides.
        var bias: [Float] = [], strides = [0, 0, 0, 0], maskLength = t
        if let mask, let target = p.maskShape {
            guard mask.dtype == .bool || TensorOperands.isNumeric(mask.dtype) else {
                throw ctx.error("attn_mask must be bool or numeric, got \(mask.dtype)")
            }
            maskLength = target[3]
            strides = Broadcast.strides(of: mask.shape, in: target)
            if mask.dtype == .bool {
                bias = mask.withUnsafeBufferPointer(as: UInt8.self) { $0.map { $0 != 0 ? 0 : -Float.infinity } }
            } else {
                bias = mask.floatValues()
            }
        }
        let ninf = -Float.infinity
        scores.withUnsafeMutableBufferPointer(as: Float.self) { sp in
            for b in 0..<p.batch {
                for h in 0..<p.qHeads {
                    for i in 0..<p.qSeq {
                        let row = sp.baseAddress! + ((b * p.qHeads + h) * p.qSeq + i) * t
                        let base = b * strides[0] + h * strides[1] + i * strides[2]
                        for j in 0..<t {
                            var add: Float = 0
                            if !bias.isEmpty { add = j < maskLength ? bias[base + j * strides[3]] : ninf }
                            if causal && j > p.past + i { add += ninf }
                            if j >= valid[b] { add += ninf }
                            row[j] += add
                        }
                    }
                }
            }
        }
    }
}
