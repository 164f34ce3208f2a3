import COpenBLAS

/// Single-precision matrix multiply through OpenBLAS: C = alpha·op(A)·op(B) + beta·C, row-major.
///
/// - Parameters:
///   - transA, transB: whether A (M×K as stored K×M) and B (K×N as stored N×K) are transposed.
///   - lda, ldb, ldc: leading dimensions (row strides) of the stored matrices.
public enum BLAS {
    @inline(__always)
    public static func sgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                             alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                             b: UnsafePointer<Float>, ldb: Int,
                             beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        guard m > 0, n > 0 else { return }
        if k == 0 {
            // OpenBLAS leaves C alone for K = 0; the mathematics asks for beta·C.
            for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] } }
            return
        }
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// Threads OpenBLAS may use (it reads OPENBLAS_NUM_THREADS at start; this overrides it).
    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }
}
