import Foundation

/// Matrix products on float32 buffers through OpenBLAS `sgemm`.
public enum MatrixProduct {
    /// The output shape of NumPy `matmul` (ONNX MatMul), or nil when the operands do not fit:
    /// a 1-D first operand is a row `[1, K]` and a 1-D second operand a column `[K, 1]`, the
    /// inserted unit dim is removed from the result; batch dims (all but the last two)
    /// broadcast.
    public static func matmulShape(_ a: [Int], _ b: [Int]) -> [Int]? {
        guard !a.isEmpty, !b.isEmpty else { return nil }
        let a2 = a.count == 1 ? [1, a[0]] : a
        let b2 = b.count == 1 ? [b[0], 1] : b
        guard a2[a2.count - 1] == b2[b2.count - 2] else { return nil }
        guard let batch = broadcastBatch(Array(a2.dropLast(2)), Array(b2.dropLast(2))) else { return nil }
        var out = batch
        if a.count > 1 { out.append(a2[a2.count - 2]) }
        if b.count > 1 { out.append(b2[b2.count - 1]) }
        return out
    }

    static func broadcastBatch(_ a: [Int], _ b: [Int]) -> [Int]? {
        let r = max(a.count, b.count)
        let pa = Array(repeating: 1, count: r - a.count) + a, pb = Array(repeating: 1, count: r - b.count) + b
        var out: [Int] = []
        for (x, y) in zip(pa, pb) {
            if x == y || y == 1 { out.append(x) } else if x == 1 { out.append(y) } else { return nil }
        }
        return out
    }

    /// NumPy `matmul` of `a` (shape `aShape`) and `b` into `y` (shape `matmulShape(aShape, bShape)`).
    ///
    /// When the second operand has no batch dims (or only unit ones) the first operand's batch
    /// folds into the rows of one `sgemm`; otherwise one `sgemm` per broadcast batch index.
    public static func matmul(a: UnsafePointer<Float>, aShape: [Int], b: UnsafePointer<Float>, bShape: [Int], y: UnsafeMutablePointer<Float>) {
        let a2 = aShape.count == 1 ? [1, aShape[0]] : aShape
        let b2 = bShape.count == 1 ? [bShape[0], 1] : bShape
        let m = a2[a2.count - 2], k = a2[a2.count - 1], n = b2[b2.count - 1]
        let aBatch = Array(a2.dropLast(2)), bBatch = Array(b2.dropLast(2))
        if bBatch.allSatisfy({ $0 == 1 }) && aBatch.count >= bBatch.count {
            let rows = aBatch.reduce(1, *) * m
            BLAS.sgemm(m: rows, n: n, k: k, a: a, lda: k, b: b, ldb: n, c: y, ldc: n)
            return
        }
        guard let batch = broadcastBatch(aBatch, bBatch) else { preconditionFailure("matmul shapes \(aShape) \(bShape)") }
        let count = batch.reduce(1, *)
        let sa = strides(aBatch, in: batch), sb = strides(bBatch, in: batch)
        var idx = [Int](repeating: 0, count: batch.count)
        for i in 0..<count {
            var oa = 0, ob = 0
            for d in 0..<batch.count { oa += idx[d] * sa[d]; ob += idx[d] * sb[d] }
            BLAS.sgemm(m: m, n: n, k: k, a: a + oa * m * k, lda: k, b: b + ob * k * n, ldb: n, c: y + i * m * n, ldc: n)
            var d = batch.count - 1
            while d >= 0 {
                idx[d] += 1
                if idx[d] < batch[d] { break }
                idx[d] = 0
                d -= 1
            }
        }
    }

    /// Batch strides (in matrices) of `shape` seen through the broadcast `batch`: 0 on a
    /// broadcast or missing dim.
    static func strides(_ shape: [Int], in batch: [Int]) -> [Int] {
        let pad = batch.count - shape.count
        var out = [Int](repeating: 0, count: batch.count)
        var s = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            out[pad + i] = shape[i] == 1 ? 0 : s
            s *= shape[i]
        }
        return out
    }

    /// ONNX Gemm: `Y = α·op(A)·op(B) + β·C` with `Y` `[M, N]`, `op` an optional transpose and `C`
    /// unidirectionally broadcast to `[M, N]` (shape `[]`, `[N]`, `[1, N]`, `[M, 1]`, `[M, N]`…).
    /// - Parameters:
    ///   - c: C's data with its shape, or nil (or β = 0) for none.
    public static func gemm(a: UnsafePointer<Float>, b: UnsafePointer<Float>, c: (UnsafePointer<Float>, [Int])?, y: UnsafeMutablePointer<Float>,
                            m: Int, n: Int, k: Int, transA: Bool, transB: Bool, alpha: Float, beta: Float) {
        var betaC: Float = 0
        if let (cp, cs) = c, beta != 0 {
            // Row stride 0 repeats one row; column stride 0 repeats one value.
            let rows = cs.count >= 2 ? cs[cs.count - 2] : 1
            let cols = cs.count >= 1 ? cs[cs.count - 1] : 1
            let rs = rows == 1 ? 0 : cols, cstep = cols == 1 ? 0 : 1
            for i in 0..<m {
                let yr = y + i * n, cr = cp + i * rs
                if cstep == 0 {
                    let v = beta * cr[0]
                    for j in 0..<n { yr[j] = v }
                } else if beta == 1 {
                    yr.update(from: cr, count: n)
                } else {
                    for j in 0..<n { yr[j] = beta * cr[j] }
                }
            }
            betaC = 1
        }
        BLAS.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                   a: a, lda: transA ? m : k, b: b, ldb: transB ? k : n, beta: betaC, c: y, ldc: n)
    }
}
