import ModelIR
import TensorCore

extension StandardOps {
    /// Trilu-14: the upper (`upper` = 1, the default) or lower triangle of each matrix in the
    /// last two dimensions of a tensor of rank ≥ 2, the rest set to zero. The optional int64
    /// scalar input k moves the diagonal: upper keeps `j − i ≥ k`, lower keeps `j − i ≤ k`.
    /// Works on bytes (zero is all-zero bytes in every dtype), so it serves every element type.
    static func registerTrilu(_ r: OpRegistry) {
        r.register("Trilu", since: 14, kernel: TriluOp.kernel, infer: TriluOp.infer)
    }
}

enum TriluOp {
    static func check(_ x: [Int], _ ctx: KernelContext) throws {
        guard x.count >= 2 else { throw ctx.error("input has rank \(x.count); Trilu needs rank ≥ 2") }
    }

    static func infer(_ inputs: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        let x = try ctx.required(inputs, 0)
        try check(x.shape, ctx)
        if inputs.count > 1, let k = inputs[1], k.count != 1 { throw ctx.error("k has \(k.count) elements; expected a scalar") }
        return [x]
    }

    static func kernel(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        let x = try ctx.required(inputs, 0)
        try check(x.shape, ctx)
        let rows = x.shape[x.rank - 2], cols = x.shape[x.rank - 1]
        var k = 0
        if let list = try TensorOperands.optionalInts(inputs, 1, "k", ctx) {
            guard list.count == 1 else { throw ctx.error("k has \(list.count) elements; expected a scalar") }
            // Beyond ±(rows + cols) every offset means the same; clamping keeps i + k from overflowing.
            k = max(-(rows + cols), min(rows + cols, list[0]))
        }
        let upper = (ctx.node.int("upper") ?? 1) != 0
        var y = x
        if x.count == 0 { return [y] }
        let es = x.dtype.size, matrices = x.count / (rows * cols)
        y.withUnsafeMutableBytes { d in
            let base = d.baseAddress!
            for m in 0..<matrices {
                for i in 0..<rows {
                    // Columns to clear in row i: upper clears j < i + k, lower clears j > i + k.
                    let lo = upper ? 0 : max(0, min(cols, i + k + 1))
                    let hi = upper ? max(0, min(cols, i + k)) : cols
                    if hi > lo { (base + ((m * rows + i) * cols + lo) * es).initializeMemory(as: UInt8.self, repeating: 0, count: (hi - lo) * es) }
                }
            }
        }
        return [y]
    }
}
