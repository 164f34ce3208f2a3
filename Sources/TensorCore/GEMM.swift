import COpenBLAS

/// Single-precision matrix multiply through OpenBLAS: C = alpha·op(A)·op(B) + beta·C, row-major.
///
/// OpenBLAS is opened on the first product (`COpenBLAS`: dlopen, Debian's pthread build started
/// without its thread pool), so commands that never multiply through it do not pay for loading it.
///
/// OpenBLAS runs single-threaded; a large product is split into blocks of rows or columns that
/// the kernels' own thread pool (`Parallel`) multiplies concurrently. OpenBLAS's threads spin
/// between calls (sched_yield) and so compete with the pool's on a machine with few cores;
/// with one pool for everything, a network that mixes the C kernels and OpenBLAS no longer
/// oversubscribes the CPU.
///
/// - Parameters:
///   - transA, transB: whether A (M×K as stored K×M) and B (K×N as stored N×K) are transposed.
///   - lda, ldb, ldc: leading dimensions (row strides) of the stored matrices.
public enum BLAS {
    /// The Gram matrix G = A·Aᵀ (n×n) of a row-major n×d matrix A, in double precision
    /// (`cblas_dgemm`, single-threaded): the dot products behind pairwise distances.
    public static func gram(_ a: [Double], rows n: Int, cols d: Int) -> [Double] {
        precondition(a.count == n * d, "gram: \(a.count) values for \(n)×\(d)")
        var g = [Double](repeating: 0, count: n * n)
        guard n > 0, d > 0 else { return g }
        a.withUnsafeBufferPointer { ap in
            g.withUnsafeMutableBufferPointer { gp in
                compress_cblas_dgemm(false, true, Int32(n), Int32(n), Int32(d), 1,
                                     ap.baseAddress, Int32(d), ap.baseAddress, Int32(d), 0, gp.baseAddress, Int32(n))
            }
        }
        return g
    }

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
        let threads = Parallel.threads
        let work = m * n * k
        guard threads > 1, work >= parallelAbove else {
            compress_cblas_sgemm(transA, transB, Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
            return
        }
        // Blocks along the longer side of C, at least 64 rows/columns (16-aligned) each.
        let alongColumns = n >= m
        let extent = alongColumns ? n : m
        let blocks = max(1, min(threads * 2, extent / 64))
        let step = ((extent + blocks - 1) / blocks + 15) / 16 * 16
        let count = (extent + step - 1) / step
        Parallel.forRanges(count: count, minimumWork: 0) { range in
            for blk in range {
                let lo = blk * step, hi = min(extent, lo + step)
                if alongColumns {
                    // Columns lo..<hi of op(B): B stored K×N (offset lo) or N×K (rows lo).
                    let bb = transB ? b + lo * ldb : b + lo
                    compress_cblas_sgemm(transA, transB, Int32(m), Int32(hi - lo), Int32(k), alpha, a, Int32(lda), bb, Int32(ldb),
                                beta, c + lo, Int32(ldc))
                } else {
                    // Rows lo..<hi of op(A): A stored M×K (rows lo) or K×M (offset lo).
                    let aa = transA ? a + lo : a + lo * lda
                    compress_cblas_sgemm(transA, transB, Int32(hi - lo), Int32(n), Int32(k), alpha, aa, Int32(lda), b, Int32(ldb),
                                beta, c + lo * ldc, Int32(ldc))
                }
            }
        }
    }

    /// Products of at least this many multiply-adds are split across the thread pool.
    static let parallelAbove = 1 << 18

    /// Where OpenBLAS was loaded from (it is opened on the first product, not at process start;
    /// this loads it) and its build description (`openblas_get_config`).
    public static var library: (path: String, config: String) {
        (String(cString: compress_openblas_library()), String(cString: compress_openblas_config()))
    }

    /// Whether OpenBLAS has been loaded in this process (a product has run); does not load it.
    public static var isLoaded: Bool { compress_openblas_loaded() }

    /// Whether products are serialized (a build other than the pthread one was loaded: Debian's
    /// 0.3.21 serial build is wrong when called from several threads at once); loads it.
    public static var isSerialized: Bool { compress_openblas_serialized() }
}
