import Foundation
import XCTest
@testable import TensorCore

/// `BLAS.sgemm` against a naive triple loop in float64: C = alpha·op(A)·op(B) + beta·C.
///
/// Tolerance: each output sums K float32 products; OpenBLAS may reorder and fuse them, so the
/// float32 result differs from the exact sum by at most about K·ε·Σ|a·b| (ε = 2^-24). The check is
/// |c - ref| ≤ 4·K·ε·(Σ|alpha·a·b| + |beta·c0|) + 1e-30.
final class GEMMTests: XCTestCase {
    struct Case { var m, n, k: Int; var transA, transB: Bool; var alpha, beta: Float; var pad: Int }

    func testMatchesNaiveLoop() {
        var rng = SplitMixForTests(seed: 7)
        let cases: [Case] = [
            Case(m: 1, n: 1, k: 1, transA: false, transB: false, alpha: 1, beta: 0, pad: 0),
            Case(m: 3, n: 5, k: 7, transA: false, transB: false, alpha: 1, beta: 0, pad: 0),
            Case(m: 3, n: 5, k: 7, transA: true, transB: false, alpha: 0.5, beta: 0, pad: 0),
            Case(m: 3, n: 5, k: 7, transA: false, transB: true, alpha: 1, beta: 1, pad: 0),
            Case(m: 4, n: 6, k: 9, transA: true, transB: true, alpha: -2, beta: 0.25, pad: 3),
            Case(m: 33, n: 17, k: 65, transA: false, transB: true, alpha: 1, beta: 0, pad: 1),
            Case(m: 64, n: 128, k: 96, transA: false, transB: false, alpha: 1, beta: 1, pad: 0),
            Case(m: 7, n: 3, k: 300, transA: true, transB: false, alpha: 1, beta: 0, pad: 5),
        ]
        // One row or one column of C (matrix-vector products, `cblas_sgemv`), every transpose,
        // padded strides, beta 0 and not; wide enough to be split across the pool.
        var vectors: [Case] = []
        for (transA, transB) in [(false, false), (true, false), (false, true), (true, true)] {
            vectors.append(Case(m: 1, n: 53, k: 29, transA: transA, transB: transB, alpha: 0.5, beta: 0.25, pad: 3))
            vectors.append(Case(m: 37, n: 1, k: 29, transA: transA, transB: transB, alpha: 1, beta: 0, pad: 2))
            vectors.append(Case(m: 1, n: 1000, k: 576, transA: transA, transB: transB, alpha: 1, beta: 0, pad: 1))
            vectors.append(Case(m: 700, n: 1, k: 400, transA: transA, transB: transB, alpha: -1, beta: 1, pad: 0))
        }
        for c in cases + vectors { check(c, rng: &rng) }
    }

    /// K = 0: the product is empty, C = beta·C (OpenBLAS would leave C alone).
    func testEmptyInnerDimension() {
        var c: [Float] = [1, 2, 3, 4, 5, 6]
        let a: [Float] = [0], b: [Float] = [0]
        BLAS.sgemm(m: 2, n: 3, k: 0, a: a, lda: 1, b: b, ldb: 3, beta: 0.5, c: &c, ldc: 3)
        XCTAssertEqual(c, [0.5, 1, 1.5, 2, 2.5, 3])
        BLAS.sgemm(m: 2, n: 3, k: 0, a: a, lda: 1, b: b, ldb: 3, beta: 0, c: &c, ldc: 3)
        XCTAssertEqual(c, [0, 0, 0, 0, 0, 0])
    }

    /// beta = 0 must not read C: NaN already in C does not leak into the result (BLAS rule).
    func testBetaZeroIgnoresGarbageInC() {
        let a: [Float] = [1, 2, 3, 4], b: [Float] = [5, 6, 7, 8]
        var c: [Float] = [.nan, .nan, .nan, .nan]
        BLAS.sgemm(m: 2, n: 2, k: 2, a: a, lda: 2, b: b, ldb: 2, c: &c, ldc: 2)
        // numpy: np.array([[1,2],[3,4]]) @ np.array([[5,6],[7,8]]) -> [[19,22],[43,50]]
        XCTAssertEqual(c, [19, 22, 43, 50])
    }

    /// OpenBLAS is opened on the first product (dlopen): Debian's pthread build where installed
    /// (unless COMPRESS_OPENBLAS names another), which runs calls from several threads at once.
    func testLoadsThePthreadOpenBLASWhenInstalled() throws {
        let (path, config) = BLAS.library
        XCTAssertTrue(BLAS.isLoaded)
        XCTAssertTrue(config.hasPrefix("OpenBLAS"), config)
        #if arch(x86_64) && os(Linux)
        let pthread = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0"
        guard ProcessInfo.processInfo.environment["COMPRESS_OPENBLAS"] == nil,
              FileManager.default.fileExists(atPath: pthread) else {
            throw XCTSkip("libopenblas0-pthread not installed (or COMPRESS_OPENBLAS set): loaded \(path)")
        }
        XCTAssertEqual(path, pthread)
        XCTAssertFalse(BLAS.isSerialized)
        #endif
    }

    /// Products from several threads at once (the pool splits large ones, and nested loops call
    /// OpenBLAS from the workers): each equals the same product computed alone. Debian's 0.3.21
    /// serial build failed this (COMPRESS_OPENBLAS=.../openblas-serial/libopenblas.so.0: about
    /// 1 product in 70 wrong with 8 threads at 48×40×56); such a build is now serialized.
    func testConcurrentProductsMatchSequentialOnes() {
        let m = 48, n = 40, k = 56, jobs = 16
        var rng = SplitMixForTests(seed: 11)
        let inputs = (0..<jobs).map { _ in ((0..<m * k).map { _ in rng.uniform() }, (0..<k * n).map { _ in rng.uniform() }) }
        let alone: [[Float]] = inputs.map { a, b in
            var c = [Float](repeating: 0, count: m * n)
            BLAS.sgemm(m: m, n: n, k: k, a: a, lda: k, b: b, ldb: n, c: &c, ldc: n)
            return c
        }
        for _ in 0..<20 {
            var together = [[Float]](repeating: [], count: jobs)
            let lock = NSLock()
            DispatchQueue.concurrentPerform(iterations: jobs) { j in
                var c = [Float](repeating: 0, count: m * n)
                BLAS.sgemm(m: m, n: n, k: k, a: inputs[j].0, lda: k, b: inputs[j].1, ldb: n, c: &c, ldc: n)
                lock.lock(); together[j] = c; lock.unlock()
            }
            for j in 0..<jobs {
                let differing = zip(together[j], alone[j]).filter { $0.0.bitPattern != $0.1.bitPattern }.count
                XCTAssertEqual(differing, 0, "product \(j): \(differing) of \(m * n) values differ from the product computed alone")
            }
        }
    }

    private func check(_ c: Case, rng: inout SplitMixForTests) {
        // Stored shapes: A is M×K (K×M when transposed), B is K×N (N×K when transposed); rows are
        // padded by `pad` extra columns so lda/ldb/ldc differ from the logical widths.
        let (aRows, aCols) = c.transA ? (c.k, c.m) : (c.m, c.k)
        let (bRows, bCols) = c.transB ? (c.n, c.k) : (c.k, c.n)
        let lda = aCols + c.pad, ldb = bCols + c.pad, ldc = c.n + c.pad
        let a = (0..<aRows * lda).map { _ in rng.uniform() }
        let b = (0..<bRows * ldb).map { _ in rng.uniform() }
        let c0 = (0..<c.m * ldc).map { _ in rng.uniform() }
        var out = c0
        BLAS.sgemm(transA: c.transA, transB: c.transB, m: c.m, n: c.n, k: c.k, alpha: c.alpha, a: a, lda: lda,
                   b: b, ldb: ldb, beta: c.beta, c: &out, ldc: ldc)
        let eps = Double(Float.ulpOfOne) / 2
        for i in 0..<c.m {
            for j in 0..<c.n {
                var sum = 0.0, mag = 0.0
                for p in 0..<c.k {
                    let av = Double(c.transA ? a[p * lda + i] : a[i * lda + p])
                    let bv = Double(c.transB ? b[j * ldb + p] : b[p * ldb + j])
                    sum += av * bv
                    mag += abs(Double(c.alpha) * av * bv)
                }
                let ref = Double(c.alpha) * sum + Double(c.beta) * Double(c0[i * ldc + j])
                let tol = 4 * Double(c.k + 1) * eps * (mag + abs(Double(c.beta) * Double(c0[i * ldc + j]))) + 1e-30
                XCTAssertLessThanOrEqual(abs(Double(out[i * ldc + j]) - ref), tol, "\(c) at (\(i), \(j))")
            }
            for j in c.n..<ldc {
                XCTAssertEqual(out[i * ldc + j].bitPattern, c0[i * ldc + j].bitPattern, "padding column \(j) of row \(i) was written")
            }
        }
    }
}

/// SplitMix64 for test data (uniform floats in [-1, 1)).
struct SplitMixForTests {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform() -> Float { Float(next() >> 40) * 0x1p-23 - 1 }
}
