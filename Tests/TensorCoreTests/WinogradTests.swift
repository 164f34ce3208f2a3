import XCTest
@testable import TensorCore

/// Winograd F(2×2, 3×3) convolutions (`Winograd`, taken by `Convolution.forward` for 3×3
/// stride-1 undilated single-group windows) against a float64 loop, within 1e-5 of Σ|w·x| (the
/// transforms add a few roundings per product); planes 1×1 to 9×10 (odd sizes: cropped tiles),
/// pads 0, 1, 2 and asymmetric, channels 1, 3, 17, output channels off the 6- and 12-row tiles,
/// bias or none, relu / clip / a row epilogue, batch 2, transformed weights per call and kept
/// with a `PackedWeights` entry, for every variant; the baseline variant declines.
final class WinogradTests: XCTestCase {
    override func setUp() { Winograd.minimumChannels = 1; Winograd.enabled = true }
    override func tearDown() {
        Winograd.minimumChannels = 64
        Winograd.enabled = ProcessInfo.processInfo.environment["COMPRESS_WINOGRAD"] != "0"
        DirectGemm.force(nil)
    }

    struct Case { var n, c, m, h, w, pt, pl, pb, pr: Int }

    static let cases: [Case] = [
        Case(n: 1, c: 3, m: 5, h: 1, w: 1, pt: 1, pl: 1, pb: 1, pr: 1),
        Case(n: 1, c: 1, m: 7, h: 2, w: 3, pt: 1, pl: 1, pb: 1, pr: 1),
        Case(n: 1, c: 17, m: 13, h: 5, w: 7, pt: 1, pl: 1, pb: 1, pr: 1),
        Case(n: 1, c: 3, m: 25, h: 9, w: 10, pt: 1, pl: 1, pb: 1, pr: 1),
        Case(n: 1, c: 17, m: 7, h: 9, w: 10, pt: 0, pl: 0, pb: 0, pr: 0),
        Case(n: 1, c: 1, m: 1, h: 5, w: 7, pt: 0, pl: 0, pb: 0, pr: 0),
        Case(n: 2, c: 3, m: 14, h: 9, w: 10, pt: 0, pl: 1, pb: 2, pr: 0),
        Case(n: 1, c: 17, m: 30, h: 5, w: 7, pt: 2, pl: 2, pb: 1, pr: 2),
        Case(n: 1, c: 3, m: 6, h: 2, w: 3, pt: 2, pl: 1, pb: 0, pr: 2),
        // Rows of 20 tiles over several 16- and 32-column panels; 40 columns (past the 32-wide panel).
        Case(n: 1, c: 17, m: 19, h: 23, w: 40, pt: 1, pl: 1, pb: 1, pr: 1),
        Case(n: 2, c: 5, m: 37, h: 34, w: 34, pt: 1, pl: 1, pb: 1, pr: 1),
    ]

    static func act(_ kind: Int, _ v: Double) -> Double {
        switch kind {
        case 1: return max(v, 0)
        case 2: return min(max(v, -0.5), 0.75)
        default: return v
        }
    }

    func testWinogradMatchesFloat64Loop() throws {
        try XCTSkipIf(Convolution.convolutionsThroughBLAS, "COMPRESS_CONV_GEMM=blas: convolutions do not take the direct kernels")
        let savedThreads = Parallel.threads, savedBlock = Winograd.blockBytes
        defer { Parallel.setThreads(savedThreads); Winograd.blockBytes = savedBlock }
        // Three settings: as configured; 16 threads (row groups of the products split, offsets
        // into the weights and products); blocks of one or two tile rows (a plane in pieces).
        for (threads, block) in [(savedThreads, savedBlock), (16, savedBlock), (savedThreads, 1), (16, 16 * 24 * 5 * 4 * 2)] {
            Parallel.setThreads(threads)
            Winograd.blockBytes = block
            try check(seed: 91)
        }
    }

    func check(seed: UInt64) throws {
        var rng = SplitMixForTests(seed: seed)
        let epilogues: [(Int, ConvEpilogue)] = [(0, .bias), (1, .activation(.relu)), (2, .activation(.clip(min: -0.5, max: 0.75))),
                                                (1, .rows({ p, n, b in for i in 0..<n { p[i] = max(p[i] + b, 0) } }))]
        for c in Self.cases {
            let oh = c.h + c.pt + c.pb - 2, ow = c.w + c.pl + c.pr - 2
            XCTAssert(oh > 0 && ow > 0)
            let g = WindowGeometry(input: [c.h, c.w], kernel: [3, 3], strides: [1, 1], dilations: [1, 1],
                                   padsBegin: [c.pt, c.pl], padsEnd: [c.pb, c.pr], output: [oh, ow])
            let shape = ConvShape(batch: c.n, inChannels: c.c, outChannels: c.m, groups: 1, window: g)
            let x = (0..<(c.n * c.c * c.h * c.w)).map { _ in rng.uniform() }
            let w = (0..<(c.m * c.c * 9)).map { _ in rng.uniform() }
            let biasValues = (0..<c.m).map { _ in rng.uniform() }
            // ref without bias; mag = Σ|w·x| (+ |bias| where used)
            var ref = [Double](repeating: 0, count: c.n * c.m * oh * ow), mag = ref
            for n in 0..<c.n { for m in 0..<c.m { for o in 0..<oh { for q in 0..<ow {
                var s = 0.0, t = 0.0
                for ci in 0..<c.c { for a in 0..<3 { for b in 0..<3 {
                    let ih = o - c.pt + a, iw = q - c.pl + b
                    guard ih >= 0, ih < c.h, iw >= 0, iw < c.w else { continue }
                    let v = Double(w[((m * c.c + ci) * 3 + a) * 3 + b]) * Double(x[((n * c.c + ci) * c.h + ih) * c.w + iw])
                    s += v; t += abs(v)
                } } }
                let i = ((n * c.m + m) * oh + o) * ow + q
                ref[i] = s; mag[i] = t
            } } } }
            // Weights in a storage with a PackedWeights entry (the transformed weights kept with it).
            let storage = w.withUnsafeBytes { TensorStorage(copying: $0) }
            let wBase = UnsafePointer(storage.base.assumingMemoryBound(to: Float.self))
            let packed = PackedWeights.packed(storage: storage, base: wBase, groups: 1, rows: c.m, k: c.c * 9)
            for variant in DirectGemm.availableVariants {
                DirectGemm.force(variant)
                XCTAssertEqual(Winograd.applies(shape, window: Convolution.lifted(g)), variant != .baseline, "\(c) \(variant)")
                for (kind, epilogue) in epilogues {
                    for withBias in [true, false] {
                        for usePacked in [false, true] {
                            var y = [Float](repeating: .nan, count: ref.count)
                            let before = Winograd.runs
                            defer { XCTAssertEqual(Winograd.runs > before, variant != .baseline, "\(c) \(variant): Winograd path not taken") }
                            x.withUnsafeBufferPointer { xp in biasValues.withUnsafeBufferPointer { bp in
                                y.withUnsafeMutableBufferPointer { yp in
                                    Convolution.forward(x: xp.baseAddress!, w: wBase, bias: withBias ? bp.baseAddress! : nil,
                                                        y: yp.baseAddress!, shape: shape, epilogue: epilogue,
                                                        packedWeights: usePacked ? packed : nil)
                                }
                            } }
                            for i in 0..<ref.count {
                                let b = withBias ? Double(biasValues[(i / (oh * ow)) % c.m]) : 0
                                XCTAssertEqual(Double(y[i]), Self.act(kind, ref[i] + b), accuracy: 1e-5 * (mag[i] + abs(b)) + 1e-30,
                                               "\(c) \(variant) act \(kind) bias \(withBias) packed \(usePacked) at \(i)")
                            }
                        }
                    }
                }
            }
            DirectGemm.force(nil)
            withExtendedLifetime(storage) {}
        }
    }

    /// The transformed weights kept with a `PackedWeights` entry are made once and found again;
    /// a pointer that is no live entry's buffer finds nothing.
    func testTransformedWeightsAreKeptWithTheEntry() {
        let w = (0..<(4 * 3 * 9)).map { Float($0) * 0.01 }
        let storage = w.withUnsafeBytes { TensorStorage(copying: $0) }
        let base = UnsafePointer(storage.base.assumingMemoryBound(to: Float.self))
        let packed = PackedWeights.packed(storage: storage, base: base, groups: 1, rows: 4, k: 27)
        var made = 0
        let count = Winograd.packedSize(outChannels: 4, inChannels: 3)
        let a = PackedWeights.derived(from: packed, count: count) { made += 1; Winograd.transformWeights(m: 4, c: 3, w: base, into: $0) }
        let b = PackedWeights.derived(from: packed, count: count) { _ in made += 1 }
        XCTAssertNotNil(a)
        XCTAssertEqual(a, b)
        XCTAssertEqual(made, 1)
        let other = [Float](repeating: 0, count: 4)
        other.withUnsafeBufferPointer { p in
            XCTAssertNil(PackedWeights.derived(from: p.baseAddress!, count: count) { _ in made += 1 })
        }
        XCTAssertEqual(made, 1)
        withExtendedLifetime(storage) {}
    }
}
