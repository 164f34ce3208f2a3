import XCTest
@testable import TensorCore

/// The transposed product (`DirectGemm.multiplyTransposed`, AVX-512: the vector along A's rows,
/// the register tile along B's columns), which 1×1 convolutions over few positions take: the same
/// values as the column tiles bit for bit, every activation, and within the float64 tolerance.
/// It runs only where the AVX-512 variant does; elsewhere these tests check that nothing prefers it.
final class TransposedProductTests: XCTestCase {
    private var savedTransposed = true, savedThreads = 1
    override func setUp() { savedTransposed = Convolution.transposedProducts; savedThreads = Parallel.threads }
    override func tearDown() {
        DirectGemm.force(nil)
        Convolution.transposedProducts = savedTransposed
        Parallel.setThreads(savedThreads)
    }

    private var hasAVX512: Bool { DirectGemm.availableVariants.contains(.avx512) }

    /// Which products take it: few columns (49 fill 64 lanes) against many rows; not 196 columns
    /// (98 % either way), not rows too few to fill a vector, never without the AVX-512 kernel.
    func testWhichProductsPreferIt() {
        DirectGemm.force(hasAVX512 ? .avx512 : nil)
        XCTAssertEqual(DirectGemm.prefersTransposed(m: 1152, n: 49), hasAVX512)
        XCTAssertEqual(DirectGemm.prefersTransposed(m: 160, n: 1), hasAVX512)
        XCTAssertFalse(DirectGemm.prefersTransposed(m: 672, n: 196))
        XCTAssertFalse(DirectGemm.prefersTransposed(m: 8, n: 49))
        XCTAssertFalse(DirectGemm.prefersTransposed(m: 24, n: 49))   // 75 % of 32 lanes vs 77 % of 64
        XCTAssertFalse(DirectGemm.prefersTransposed(m: 1152, n: 3136))
        if hasAVX512 {
            DirectGemm.force(.avx2)
            XCTAssertFalse(DirectGemm.prefersTransposed(m: 1152, n: 49), "the AVX2 variant has no transposed kernel")
        }
    }

    /// Rows not a multiple of 16 or 32 (one and several panels, a last panel of 1 and of 17 rows),
    /// columns 1–5, 8, 12, 13, 25, 36, 49 and 100 (tiles of every size from 1 to 12 positions), k
    /// of 1; B and C with padded strides, C's padding and the rows after C left untouched; every
    /// activation, with and without bias; one thread and the panels split over two and four.
    func testEqualsTheColumnTilesBitForBit() throws {
        guard hasAVX512 else {
            XCTAssertFalse(DirectGemm.prefersTransposed(m: 1152, n: 49))
            throw XCTSkip("no AVX-512 on this CPU: the transposed kernel does not run here")
        }
        DirectGemm.force(.avx512)
        var rng = SplitMixForTests(seed: 73)
        let activations = DirectKernelTests.activations + [.sigmoid, .silu, .hardSwish, .hardSigmoid(alpha: 0.2, beta: 0.5), .tanh]
        let shapes = [(17, 49, 7), (33, 49, 40), (160, 49, 96), (64, 1, 13), (40, 13, 5), (97, 36, 1), (16, 100, 20), (49, 12, 300),
                      (70, 2, 9), (35, 3, 16), (96, 4, 33), (20, 5, 2), (48, 8, 64), (130, 25, 24),
                      // Few panels on 4, 1 and 2 threads: positions split into 5 parts a panel, none
                      // (one thread), 3 parts a panel.
                      (64, 60, 50), (50, 7, 40), (96, 49, 128)]
        // Which tile heights the shapes reach, positions split as ck_gemm_t_columns splits them
        // when a panel's positions are one part (the one-thread shapes; the split shapes reach others).
        var heights = Set<Int>()
        for (_, n, _) in shapes {
            let tiles = (n + 11) / 12
            var done = 0
            for t in 0..<tiles { let rows = (n - done) / (tiles - t); heights.insert(rows); done += rows }
        }
        XCTAssertEqual(heights, Set(1...12), "tile heights reached")
        for (si, (m, n, k)) in shapes.enumerated() {
            Parallel.setThreads([1, 2, 4][si % 3])
            let ldb = n + 3, ldc = n + 2
            let a = (0..<(m * k)).map { _ in rng.uniform() }
            let b = (0..<(k * ldb)).map { _ in rng.uniform() }
            let bias = (0..<m).map { _ in rng.uniform() }
            var packed = [Float](repeating: .nan, count: DirectGemm.packedSize(m: m, k: k))
            packed.withUnsafeMutableBufferPointer { DirectGemm.packA(m: m, k: k, a: a, lda: k, into: $0.baseAddress!) }
            var packedT = [Float](repeating: .nan, count: DirectGemm.packedTransposedSize(m: m, k: k))
            packedT.withUnsafeMutableBufferPointer { DirectGemm.packAT(m: m, k: k, a: a, lda: k, into: $0.baseAddress!) }
            XCTAssertFalse(packedT.contains { $0.isNaN }, "packAT left floats unwritten")
            for (kind, activation) in activations.enumerated() {
                for useBias in [true, false] {
                    // Two rows of NaN after C: a store past row m − 1 would show there.
                    var tiles = [Float](repeating: .nan, count: (m + 2) * ldc), trans = tiles
                    packed.withUnsafeBufferPointer { pp in packedT.withUnsafeBufferPointer { tp in
                        b.withUnsafeBufferPointer { bp in bias.withUnsafeBufferPointer { biasp in
                            DirectGemm.multiply(m: m, n: n, k: k, a: a, lda: k, b: bp.baseAddress!, ldb: ldb, c: &tiles, ldc: ldc,
                                                bias: useBias ? biasp.baseAddress! : nil, activation: activation, packedA: pp.baseAddress!)
                            trans.withUnsafeMutableBufferPointer { cp in
                                DirectGemm.multiplyTransposed(m: m, n: n, k: k, packedAT: tp.baseAddress!, b: bp.baseAddress!, ldb: ldb,
                                                              c: cp.baseAddress!, ldc: ldc, bias: useBias ? biasp.baseAddress! : nil,
                                                              activation: activation)
                            }
                        } }
                    } }
                    XCTAssert(trans[(m * ldc)...].allSatisfy(\.isNaN), "m \(m) n \(n): wrote past row \(m - 1)")
                    for i in 0..<m {
                        for j in 0..<ldc {
                            let v = trans[i * ldc + j]
                            guard j < n else { XCTAssert(v.isNaN, "m \(m) n \(n): wrote past column \(n) in row \(i)"); continue }
                            XCTAssertEqual(v.bitPattern, tiles[i * ldc + j].bitPattern,
                                           "m \(m) n \(n) k \(k) \(activation) bias \(useBias) at (\(i), \(j)): \(v) vs \(tiles[i * ldc + j])")
                            guard kind < DirectKernelTests.activations.count else { continue }
                            var s = useBias ? Double(bias[i]) : 0, mag = abs(s)
                            for p in 0..<k { let t = Double(a[i * k + p]) * Double(b[p * ldb + j]); s += t; mag += abs(t) }
                            XCTAssertEqual(Double(v), DirectKernelTests.act(kind, s), accuracy: 4 * Double(k + 1) * 0x1p-24 * mag + 1e-30,
                                           "m \(m) n \(n) k \(k) act \(kind) bias \(useBias) at (\(i), \(j))")
                        }
                    }
                }
            }
        }
    }

    /// A 1×1 convolution on a 7×7 plane with packed weights takes the transposed product (its run
    /// count rises) and gives the column tiles' output bit for bit (`transposedProducts` off),
    /// fused activation and a row epilogue alike; without packed weights, and over a batch, it
    /// stays on the column tiles.
    func testPointwiseConvolutionOnASmallPlaneTakesIt() throws {
        guard hasAVX512 else { throw XCTSkip("no AVX-512 on this CPU: the transposed kernel does not run here") }
        DirectGemm.force(.avx512)
        var rng = SplitMixForTests(seed: 5)
        let (c, m, h, w) = (40, 72, 7, 7)
        let g = WindowGeometry(input: [h, w], kernel: [1, 1], strides: [1, 1], dilations: [1, 1], padsBegin: [0, 0],
                               padsEnd: [0, 0], output: [h, w])
        let weights = (0..<(m * c)).map { _ in rng.uniform() }
        let bias = (0..<m).map { _ in rng.uniform() }
        let storage = weights.withUnsafeBytes { TensorStorage(copying: $0) }
        let wBase = UnsafePointer(storage.base.assumingMemoryBound(to: Float.self))
        let packed = PackedWeights.packed(storage: storage, base: wBase, groups: 1, rows: m, k: c)
        let rowsEpilogue: RowEpilogue = { p, n, b in for i in 0..<n { p[i] = (p[i] + b) * 0.5 } }
        for batch in [1, 2] {
            let shape = ConvShape(batch: batch, inChannels: c, outChannels: m, groups: 1, window: g)
            let x = (0..<(batch * c * h * w)).map { _ in rng.uniform() }
            for (name, epilogue) in [("silu", ConvEpilogue.activation(.silu)), ("relu", .activation(.relu)), ("rows", .rows(rowsEpilogue))] {
                for usePacked in [true, false] {
                    func run(_ transposed: Bool) -> [Float] {
                        Convolution.transposedProducts = transposed
                        var y = [Float](repeating: .nan, count: batch * m * h * w)
                        x.withUnsafeBufferPointer { xp in bias.withUnsafeBufferPointer { bp in y.withUnsafeMutableBufferPointer { yp in
                            Convolution.forward(x: xp.baseAddress!, w: wBase, bias: bp.baseAddress!, y: yp.baseAddress!, shape: shape,
                                                epilogue: epilogue, packedWeights: usePacked ? packed : nil)
                        } } }
                        return y
                    }
                    let tiles = run(false)
                    let before = DirectGemm.transposedRuns
                    let trans = run(true)
                    let taken = DirectGemm.transposedRuns > before
                    XCTAssertEqual(taken, usePacked && batch == 1, "batch \(batch) \(name) packed \(usePacked): transposed taken \(taken)")
                    XCTAssertFalse(trans.contains { $0.isNaN }, "batch \(batch) \(name): output not fully written")
                    XCTAssertEqual(trans.map(\.bitPattern), tiles.map(\.bitPattern), "batch \(batch) \(name) packed \(usePacked)")
                }
            }
        }
        withExtendedLifetime(storage) {}
    }
}
