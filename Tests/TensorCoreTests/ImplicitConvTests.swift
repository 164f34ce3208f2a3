import XCTest
@testable import TensorCore

/// Dense 2-d convolutions through `Convolution.forward` against a float64 loop, with the implicit
/// product (`ck_conv_columns`: B gathered from the input; AVX-512 k × 32 panels, AVX2 k × 16)
/// and with the im2col path, for every variant the CPU has; the two paths must agree bit for bit,
/// and the AVX2 and AVX-512 variants with each other. Windows 1×2 to 8×8 (64 taps, the most the
/// kernel takes; 9×9 declines), strides down 1–2 (across 1, and 2 where the im2col path takes
/// over), dilations, asymmetric pads (wider than the input too), one input channel, output rows
/// of 1–40 positions (runs crossing the 8- and 16-lane halves and the 16- and 32-column panels,
/// panels of at most 8 columns), groups, batch 2, output channels not a multiple of the 6- or
/// 12-row tile, packed and in-place weights, fused activations and a row epilogue. With AVX-512,
/// at most 4 input channels and output rows of 16 or more take the direct blocks (no panels),
/// whose row groups of 16 and row tails the stem cases cover; every case runs on one thread and
/// on the pool's threads (which split a product's rows and panels into tasks). The baseline
/// variant (and a CPU without AVX2) has no implicit kernel: the test then checks that it
/// declines and that the im2col path is right.
final class ImplicitConvTests: XCTestCase {
    static let poolThreads = Parallel.threads
    override func tearDown() { Convolution.implicitProducts = true; DirectGemm.force(nil); Parallel.threads = Self.poolThreads }

    struct Case { var n, c, m, groups, h, w, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr: Int }

    static let cases: [Case] = [
        Case(n: 1, c: 3, m: 5, groups: 1, h: 9, w: 10, kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, pt: 1, pl: 1, pb: 1, pr: 1),
        Case(n: 1, c: 4, m: 13, groups: 1, h: 7, w: 7, kh: 3, kw: 3, sh: 2, sw: 1, dh: 1, dw: 1, pt: 1, pl: 1, pb: 1, pr: 1),
        Case(n: 2, c: 2, m: 25, groups: 1, h: 5, w: 40, kh: 5, kw: 5, sh: 1, sw: 1, dh: 2, dw: 2, pt: 4, pl: 4, pb: 3, pr: 4),
        Case(n: 1, c: 3, m: 12, groups: 1, h: 3, w: 3, kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, pt: 2, pl: 2, pb: 2, pr: 2),
        Case(n: 1, c: 5, m: 7, groups: 1, h: 1, w: 1, kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, pt: 1, pl: 1, pb: 1, pr: 1),
        Case(n: 1, c: 2, m: 30, groups: 1, h: 6, w: 17, kh: 7, kw: 7, sh: 1, sw: 1, dh: 1, dw: 1, pt: 3, pl: 3, pb: 3, pr: 3),
        Case(n: 1, c: 3, m: 6, groups: 1, h: 8, w: 8, kh: 1, kw: 2, sh: 1, sw: 1, dh: 1, dw: 3, pt: 0, pl: 1, pb: 0, pr: 2),
        Case(n: 1, c: 8, m: 24, groups: 4, h: 11, w: 13, kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, pt: 1, pl: 0, pb: 1, pr: 2),
        Case(n: 1, c: 6, m: 16, groups: 1, h: 20, w: 33, kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, pt: 1, pl: 1, pb: 1, pr: 1),
        Case(n: 2, c: 4, m: 9, groups: 1, h: 12, w: 12, kh: 3, kw: 3, sh: 2, sw: 2, dh: 1, dw: 1, pt: 1, pl: 1, pb: 1, pr: 1),
        // Batch 2 with planes of 1156 positions (≥ 1024: each image through the implicit kernel,
        // not side by side), groups.
        Case(n: 2, c: 4, m: 6, groups: 2, h: 34, w: 34, kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, pt: 1, pl: 1, pb: 1, pr: 1),
        Case(n: 1, c: 3, m: 37, groups: 1, h: 15, w: 2, kh: 2, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, pt: 0, pl: 2, pb: 1, pr: 1),
        Case(n: 1, c: 3, m: 16, groups: 1, h: 30, w: 37, kh: 7, kw: 7, sh: 2, sw: 2, dh: 1, dw: 1, pt: 3, pl: 3, pb: 3, pr: 3),
        Case(n: 1, c: 5, m: 13, groups: 1, h: 9, w: 11, kh: 3, kw: 3, sh: 1, sw: 2, dh: 1, dw: 1, pt: 0, pl: 2, pb: 0, pr: 1),
        Case(n: 1, c: 4, m: 25, groups: 1, h: 13, w: 40, kh: 5, kw: 3, sh: 2, sw: 2, dh: 2, dw: 3, pt: 1, pl: 4, pb: 1, pr: 4),
        Case(n: 1, c: 2, m: 7, groups: 1, h: 3, w: 3, kh: 3, kw: 3, sh: 2, sw: 2, dh: 1, dw: 1, pt: 2, pl: 2, pb: 2, pr: 2),
        Case(n: 1, c: 6, m: 12, groups: 2, h: 17, w: 6, kh: 2, kw: 2, sh: 1, sw: 2, dh: 1, dw: 1, pt: 0, pl: 0, pb: 0, pr: 1),
        Case(n: 1, c: 3, m: 8, groups: 1, h: 10, w: 19, kh: 3, kw: 3, sh: 1, sw: 3, dh: 1, dw: 1, pt: 1, pl: 1, pb: 1, pr: 1),
        // One channel, 5×5 with stride 2 (output rows of 12 and of 5: panels of 16 over several rows).
        Case(n: 1, c: 1, m: 7, groups: 1, h: 21, w: 23, kh: 5, kw: 5, sh: 2, sw: 2, dh: 1, dw: 1, pt: 2, pl: 2, pb: 2, pr: 2),
        Case(n: 1, c: 1, m: 11, groups: 1, h: 11, w: 9, kh: 5, kw: 5, sh: 2, sw: 2, dh: 1, dw: 1, pt: 2, pl: 2, pb: 2, pr: 2),
        // Output rows of one position (every lane its own run) and of 7 (runs across the 8-lane halves).
        Case(n: 1, c: 2, m: 19, groups: 1, h: 20, w: 1, kh: 3, kw: 1, sh: 1, sw: 1, dh: 1, dw: 1, pt: 1, pl: 0, pb: 1, pr: 0),
        Case(n: 1, c: 3, m: 14, groups: 1, h: 13, w: 7, kh: 3, kw: 3, sh: 1, sw: 1, dh: 2, dw: 1, pt: 2, pl: 1, pb: 2, pr: 1),
        Case(n: 1, c: 4, m: 6, groups: 1, h: 9, w: 14, kh: 3, kw: 3, sh: 1, sw: 2, dh: 1, dw: 2, pt: 1, pl: 3, pb: 0, pr: 0),
        // An RGB stem (3×3 stride 2, 32 filters: two 16-row groups of the AVX-512 direct blocks
        // for at most 4 channels; output rows of 35 = 16 + 16 + 3) and output rows of exactly 16.
        Case(n: 1, c: 3, m: 32, groups: 1, h: 70, w: 70, kh: 3, kw: 3, sh: 2, sw: 2, dh: 1, dw: 1, pt: 1, pl: 1, pb: 1, pr: 1),
        Case(n: 1, c: 4, m: 17, groups: 1, h: 32, w: 32, kh: 3, kw: 3, sh: 2, sw: 2, dh: 1, dw: 1, pt: 0, pl: 1, pb: 1, pr: 0),
        // Stride 1, dilated across and down, one image (the direct blocks; output rows of 30).
        Case(n: 1, c: 3, m: 20, groups: 1, h: 9, w: 30, kh: 3, kw: 3, sh: 1, sw: 1, dh: 2, dw: 2, pt: 2, pl: 2, pb: 1, pr: 2),
        // 64 taps (the most the implicit kernel takes) and 81 (im2col).
        Case(n: 1, c: 1, m: 3, groups: 1, h: 10, w: 12, kh: 8, kw: 8, sh: 1, sw: 1, dh: 1, dw: 1, pt: 3, pl: 4, pb: 4, pr: 3),
        Case(n: 1, c: 2, m: 5, groups: 1, h: 9, w: 9, kh: 9, kw: 9, sh: 1, sw: 1, dh: 1, dw: 1, pt: 4, pl: 4, pb: 4, pr: 4),
    ]

    static func act(_ kind: Int, _ v: Double) -> Double {
        switch kind {
        case 1: return max(v, 0)
        case 2: return min(max(v, -0.5), 0.75)
        default: return v
        }
    }

    func testImplicitConvolutionMatchesFloat64LoopAndIm2col() {
        var rng = SplitMixForTests(seed: 47)
        let epilogues: [(Int, ConvEpilogue)] = [(0, .bias), (1, .activation(.relu)), (2, .activation(.clip(min: -0.5, max: 0.75))),
                                                (1, .rows({ p, n, b in for i in 0..<n { p[i] = max(p[i] + b, 0) } }))]
        let variants = DirectGemm.availableVariants
        var implicitRuns: [DirectGemm.Variant: Int] = [:]
        var sink = [Float](repeating: 0, count: 1)
        // One thread (every row of a task in one call: the direct blocks' 16-row groups and their
        // remainders whatever the machine) and the pool's threads (tasks split by rows and panels).
        let threadCounts = Array(Set([1, Self.poolThreads])).sorted()
        for (c, threads) in Self.cases.flatMap({ c in threadCounts.map { (c, $0) } }) {
            Parallel.threads = threads
            let oh = (c.h + c.pt + c.pb - ((c.kh - 1) * c.dh + 1)) / c.sh + 1
            let ow = (c.w + c.pl + c.pr - ((c.kw - 1) * c.dw + 1)) / c.sw + 1
            XCTAssert(oh > 0 && ow > 0)
            let g = WindowGeometry(input: [c.h, c.w], kernel: [c.kh, c.kw], strides: [c.sh, c.sw], dilations: [c.dh, c.dw],
                                   padsBegin: [c.pt, c.pl], padsEnd: [c.pb, c.pr], output: [oh, ow])
            let shape = ConvShape(batch: c.n, inChannels: c.c, outChannels: c.m, groups: c.groups, window: g)
            let cg = c.c / c.groups, mg = c.m / c.groups
            let x = (0..<(c.n * c.c * c.h * c.w)).map { _ in rng.uniform() }
            let w = (0..<(c.m * cg * c.kh * c.kw)).map { _ in rng.uniform() }
            let bias = (0..<c.m).map { _ in rng.uniform() }
            var ref = [Double](repeating: 0, count: c.n * c.m * oh * ow), mag = ref
            for n in 0..<c.n { for m in 0..<c.m { for o in 0..<oh { for q in 0..<ow {
                var s = Double(bias[m]), t = abs(s)
                let g0 = m / mg * cg
                for ci in 0..<cg { for a in 0..<c.kh { for b in 0..<c.kw {
                    let ih = o * c.sh - c.pt + a * c.dh, iw = q * c.sw - c.pl + b * c.dw
                    guard ih >= 0, ih < c.h, iw >= 0, iw < c.w else { continue }
                    let v = Double(w[((m * cg + ci) * c.kh + a) * c.kw + b]) * Double(x[((n * c.c + g0 + ci) * c.h + ih) * c.w + iw])
                    s += v; t += abs(v)
                } } }
                let i = ((n * c.m + m) * oh + o) * ow + q
                ref[i] = s; mag[i] = t
            } } } }
            let k = cg * c.kh * c.kw
            var packed = [Float](repeating: .nan, count: c.groups * DirectGemm.packedSize(m: mg, k: k))
            packed.withUnsafeMutableBufferPointer { pp in
                for gi in 0..<c.groups {
                    w.withUnsafeBufferPointer { DirectGemm.packA(m: mg, k: k, a: $0.baseAddress! + gi * mg * k, lda: k,
                                                                 into: pp.baseAddress! + gi * DirectGemm.packedSize(m: mg, k: k)) }
                }
            }
            // The first fused-multiply-add variant's implicit results, per epilogue and packing:
            // the other one (AVX2 / AVX-512) must give the same bits.
            var fmaResults: [String: (DirectGemm.Variant, [Float])] = [:]
            for variant in variants {
                DirectGemm.force(variant)
                XCTAssertEqual(DirectGemm.usesAVX512, variant == .avx512, "\(variant) not in use")
                XCTAssertEqual(DirectGemm.usesAVX2, variant != .baseline, "\(variant) not in use")
                var im2colBias: [Float] = []
                for (e, (kind, epilogue)) in epilogues.enumerated() {
                    for usePacked in [false, true] {
                        var outputs: [[Float]] = []
                        for implicit in [true, false] {
                            Convolution.implicitProducts = implicit
                            defer { Convolution.implicitProducts = true }
                            var y = [Float](repeating: .nan, count: ref.count)
                            x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in bias.withUnsafeBufferPointer { bp in
                                packed.withUnsafeBufferPointer { pp in y.withUnsafeMutableBufferPointer { yp in
                                    Convolution.forward(x: xp.baseAddress!, w: wp.baseAddress!, bias: bp.baseAddress!, y: yp.baseAddress!,
                                                        shape: shape, epilogue: epilogue, packedWeights: usePacked ? pp.baseAddress! : nil)
                                } }
                            } } }
                            for i in 0..<ref.count {
                                XCTAssertEqual(Double(y[i]), Self.act(kind, ref[i]), accuracy: 4 * Double(k + 1) * 0x1p-24 * mag[i] + 1e-30,
                                               "\(c) threads \(threads) \(variant) act \(kind) packed \(usePacked) implicit \(implicit) at \(i)")
                            }
                            outputs.append(y)
                        }
                        XCTAssertEqual(outputs[0].map(\.bitPattern), outputs[1].map(\.bitPattern),
                                       "\(c) threads \(threads) \(variant) act \(kind) packed \(usePacked): implicit differs from im2col")
                        if e == 0 && !usePacked { im2colBias = outputs[1] }
                        if variant != .baseline {
                            let key = "\(e) \(usePacked)"
                            if let (first, y) = fmaResults[key] {
                                XCTAssertEqual(outputs[0].map(\.bitPattern), y.map(\.bitPattern),
                                               "\(c) act \(kind) packed \(usePacked): \(variant) differs from \(first)")
                            } else {
                                fmaResults[key] = (variant, outputs[0])
                            }
                        }
                    }
                }
                // Whether the implicit kernel takes this geometry: AVX2 (or AVX-512), stride 1 or 2
                // across, at most 64 taps.
                let takes = DirectGemm.convolveImplicitly(
                    m: mg, channels: cg, input: (c.h, c.w), kernel: (c.kh, c.kw), strides: (c.sh, c.sw), dilations: (c.dh, c.dw),
                    padsBegin: (c.pt, c.pl), output: (oh, ow), x: x, w: w, packedW: nil,
                    y: &sink, bias: nil, activation: .none, dryRun: true)
                XCTAssertEqual(takes, DirectGemm.usesAVX2 && c.sw <= 2 && c.kh * c.kw <= 64, "\(c) \(variant)")
                if takes { implicitRuns[variant, default: 0] += 1 }
                // The kernel itself, called directly (so a forward that silently took im2col in both
                // runs above would not pass for it): the im2col path's bits, with and without bias.
                if takes && c.groups == 1 && c.n == 1 {
                    for withBias in [true, false] {
                        var yd = [Float](repeating: .nan, count: ref.count)
                        let ran = x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in bias.withUnsafeBufferPointer { bp in
                            DirectGemm.convolveImplicitly(
                                m: c.m, channels: c.c, input: (c.h, c.w), kernel: (c.kh, c.kw), strides: (c.sh, c.sw), dilations: (c.dh, c.dw),
                                padsBegin: (c.pt, c.pl), output: (oh, ow), x: xp.baseAddress!, w: wp.baseAddress!, packedW: nil,
                                y: &yd, bias: withBias ? bp.baseAddress! : nil, activation: .none)
                        } } }
                        XCTAssertTrue(ran, "\(c) \(variant)")
                        if withBias {
                            XCTAssertEqual(yd.map(\.bitPattern), im2colBias.map(\.bitPattern), "\(c) \(variant): kernel differs from im2col")
                        } else {
                            for i in 0..<ref.count {
                                XCTAssertEqual(Double(yd[i]), ref[i] - Double(bias[i / (oh * ow)]), accuracy: 4 * Double(k + 1) * 0x1p-24 * mag[i] + 1e-30,
                                               "\(c) \(variant) without bias at \(i)")
                            }
                        }
                    }
                }
            }
            DirectGemm.force(nil)
        }
        for variant in variants {
            DirectGemm.force(variant)
            XCTAssertEqual(implicitRuns[variant, default: 0] > 0, DirectGemm.usesAVX2, "\(variant)")
        }
        DirectGemm.force(nil)
    }

    /// The implicit kernel runs with the AVX2 variant (what a CPU without AVX-512 runs) as with
    /// AVX-512, and declines with the baseline one.
    func testImplicitKernelNeedsAVX2() {
        let x = [Float](repeating: 1, count: 16), w = [Float](repeating: 1, count: 9)
        var y = [Float](repeating: 0, count: 16)
        for variant in DirectGemm.availableVariants {
            DirectGemm.force(variant)
            let ran = DirectGemm.convolveImplicitly(m: 1, channels: 1, input: (4, 4), kernel: (3, 3), strides: (1, 1), dilations: (1, 1),
                                                    padsBegin: (1, 1), output: (4, 4), x: x, w: w, packedW: nil,
                                                    y: &y, bias: nil, activation: .none, dryRun: true)
            XCTAssertEqual(ran, variant != .baseline, "\(variant)")
        }
        DirectGemm.force(nil)
    }
}
