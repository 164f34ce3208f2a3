import XCTest
@testable import TensorCore

/// The k×k depthwise kernel (`ck_depthwise_c8`, through `Convolution.forward`) against a float64
/// loop: 5×5, 7×7, 3×3 with dilation or stride 3, 1×k and k×1 windows, strides 1–3, dilations,
/// asymmetric pads, 1–17 channels (tails of the eight-channel groups), batch 2, several row
/// strips; AVX2 + FMA and baseline variants, fused activations and a row epilogue.
final class DepthwiseKxKTests: XCTestCase {
    override func tearDown() {
        DirectGemm.forceBaseline(false); Convolution.depthwiseThroughLoops = false
        Convolution.narrowDepthwiseThroughKxK = true
        Parallel.setThreads(ProcessInfo.processInfo.activeProcessorCount)
    }

    struct Case { var n, c, h, w, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr: Int }

    static let cases: [Case] = [
        Case(n: 1, c: 8, h: 14, w: 14, kh: 5, kw: 5, sh: 1, sw: 1, dh: 1, dw: 1, pt: 2, pl: 2, pb: 2, pr: 2),
        Case(n: 1, c: 17, h: 15, w: 13, kh: 5, kw: 5, sh: 2, sw: 2, dh: 1, dw: 1, pt: 1, pl: 2, pb: 2, pr: 1),
        Case(n: 2, c: 3, h: 9, w: 11, kh: 7, kw: 7, sh: 1, sw: 1, dh: 1, dw: 1, pt: 3, pl: 3, pb: 3, pr: 3),
        Case(n: 1, c: 9, h: 16, w: 16, kh: 7, kw: 7, sh: 2, sw: 2, dh: 1, dw: 1, pt: 3, pl: 3, pb: 2, pr: 2),
        Case(n: 1, c: 1, h: 6, w: 21, kh: 3, kw: 3, sh: 1, sw: 1, dh: 2, dw: 2, pt: 2, pl: 2, pb: 2, pr: 2),
        Case(n: 1, c: 12, h: 10, w: 10, kh: 3, kw: 3, sh: 3, sw: 3, dh: 1, dw: 1, pt: 1, pl: 1, pb: 1, pr: 1),
        Case(n: 1, c: 16, h: 13, w: 17, kh: 5, kw: 3, sh: 1, sw: 2, dh: 2, dw: 3, pt: 4, pl: 0, pb: 1, pr: 3),
        Case(n: 2, c: 5, h: 1, w: 19, kh: 1, kw: 5, sh: 1, sw: 1, dh: 1, dw: 1, pt: 0, pl: 2, pb: 0, pr: 2),
        Case(n: 1, c: 7, h: 19, w: 1, kh: 5, kw: 1, sh: 2, sw: 1, dh: 1, dw: 1, pt: 2, pl: 0, pb: 2, pr: 0),
        Case(n: 1, c: 2, h: 4, w: 4, kh: 5, kw: 5, sh: 1, sw: 1, dh: 1, dw: 1, pt: 4, pl: 4, pb: 4, pr: 4),  // pads wider than the input
        Case(n: 1, c: 4, h: 5, w: 5, kh: 5, kw: 5, sh: 1, sw: 1, dh: 1, dw: 1, pt: 0, pl: 0, pb: 0, pr: 0),  // one output
        Case(n: 1, c: 11, h: 28, w: 27, kh: 5, kw: 5, sh: 2, sw: 2, dh: 1, dw: 1, pt: 1, pl: 2, pb: 2, pr: 1),
        Case(n: 1, c: 6, h: 12, w: 12, kh: 3, kw: 3, sh: 1, sw: 1, dh: 3, dw: 1, pt: 3, pl: 1, pb: 3, pr: 1),
        Case(n: 1, c: 10, h: 23, w: 9, kh: 4, kw: 2, sh: 1, sw: 3, dh: 1, dw: 2, pt: 1, pl: 1, pb: 2, pr: 0),
        // Rows of 10 (a block of 8 and a tail of 2) at strides 1, 2 and 3; rows of 3 (the tail
        // stored whole spills over the next rows) and of 18 (two blocks and a tail of 2).
        Case(n: 1, c: 8, h: 6, w: 10, kh: 5, kw: 5, sh: 1, sw: 1, dh: 1, dw: 1, pt: 2, pl: 2, pb: 2, pr: 2),
        Case(n: 1, c: 9, h: 9, w: 20, kh: 5, kw: 5, sh: 2, sw: 2, dh: 1, dw: 1, pt: 2, pl: 2, pb: 2, pr: 2),
        Case(n: 1, c: 8, h: 7, w: 30, kh: 5, kw: 5, sh: 1, sw: 3, dh: 1, dw: 1, pt: 2, pl: 2, pb: 2, pr: 2),
        Case(n: 1, c: 8, h: 8, w: 3, kh: 5, kw: 5, sh: 1, sw: 1, dh: 1, dw: 1, pt: 2, pl: 2, pb: 2, pr: 2),
        Case(n: 1, c: 16, h: 5, w: 36, kh: 5, kw: 5, sh: 1, sw: 2, dh: 1, dw: 1, pt: 2, pl: 2, pb: 2, pr: 2),
    ]

    static func act(_ kind: Int, _ v: Double) -> Double {
        switch kind {
        case 1: return max(v, 0)
        case 2: return min(max(v, -0.5), 0.75)
        case 3: return v >= 0 ? v : 0.1 * v
        default: return v
        }
    }

    /// Sigmoid, SiLU and Tanh are applied over each finished output row of the eight-channel
    /// kernels (3×3 and k×k) instead of in their blocks: the fused result must equal the
    /// unfused convolution followed by the activation over the array, bit for bit, in every
    /// variant, on one thread and in strips; HardSwish (applied in the blocks) likewise. The
    /// reference applies the same `ck_activate` the row pass calls, so this checks that every
    /// row, channel, strip and tail is activated once (the tail channels of the 3×3 shapes go
    /// through the one-plane kernel, which activates in its blocks); the activation's values
    /// are checked against float64 in DirectKernelTests and ActivationAccuracyTests.
    func testRowActivationsEqualTheUnfusedPassBitForBit() {
        var rng = SplitMixForTests(seed: 44)
        let shapes: [(c: Int, h: Int, w: Int, k: Int, s: Int)] = [(20, 9, 11, 3, 1), (16, 12, 7, 3, 2), (20, 10, 9, 5, 1), (13, 14, 14, 5, 2)]
        for t in shapes {
            let oh = (t.h + 2 * (t.k / 2) - t.k) / t.s + 1, ow = (t.w + 2 * (t.k / 2) - t.k) / t.s + 1
            let g = WindowGeometry(input: [t.h, t.w], kernel: [t.k, t.k], strides: [t.s, t.s], dilations: [1, 1],
                                   padsBegin: [t.k / 2, t.k / 2], padsEnd: [t.k / 2, t.k / 2], output: [oh, ow])
            let shape = ConvShape(batch: 1, inChannels: t.c, outChannels: t.c, groups: t.c, window: g)
            // Wide values, so the sigmoid's both branches and its far tails are reached.
            let x = (0..<(t.c * t.h * t.w)).map { _ in rng.uniform() * 12 }
            let k = (0..<(t.c * t.k * t.k)).map { _ in rng.uniform() }
            let bias = (0..<t.c).map { _ in rng.uniform() }
            for variant in DirectGemm.availableVariants {
                DirectGemm.force(variant)
                for threads in [1, 2] {
                    Parallel.setThreads(threads)
                    var plain = [Float](repeating: .nan, count: t.c * oh * ow)
                    Convolution.forward(x: x, w: k, bias: bias, y: &plain, shape: shape, epilogue: .bias)
                    for act in [KernelActivation.sigmoid, .silu, .tanh, .hardSwish] {
                        var fused = [Float](repeating: .nan, count: plain.count), after = fused
                        Convolution.forward(x: x, w: k, bias: bias, y: &fused, shape: shape, epilogue: .activation(act))
                        plain.withUnsafeBufferPointer { pp in after.withUnsafeMutableBufferPointer { act.apply(pp.baseAddress!, into: $0.baseAddress!, count: pp.count) } }
                        let bad = (0..<fused.count).filter { fused[$0].bitPattern != after[$0].bitPattern }
                        XCTAssert(bad.isEmpty, "\(t) \(act) \(variant) threads \(threads): \(bad.count) differ, first at \(bad.first ?? -1): \(bad.first.map { "\(fused[$0]) vs \(after[$0])" } ?? "")")
                    }
                }
            }
            DirectGemm.force(nil)
        }
    }

    func testDepthwiseKxKMatchesFloat64Loop() {
        var rng = SplitMixForTests(seed: 21)
        let epilogues: [(Int, ConvEpilogue)] = [(0, .bias), (1, .activation(.relu)), (2, .activation(.clip(min: -0.5, max: 0.75))),
                                                (3, .activation(.leakyRelu(alpha: 0.1))),
                                                (1, .rows({ p, n, b in for i in 0..<n { p[i] = max(p[i] + b, 0) } }))]
        for c in Self.cases {
            let oh = (c.h + c.pt + c.pb - ((c.kh - 1) * c.dh + 1)) / c.sh + 1
            let ow = (c.w + c.pl + c.pr - ((c.kw - 1) * c.dw + 1)) / c.sw + 1
            XCTAssert(oh > 0 && ow > 0)
            let g = WindowGeometry(input: [c.h, c.w], kernel: [c.kh, c.kw], strides: [c.sh, c.sw], dilations: [c.dh, c.dw],
                                   padsBegin: [c.pt, c.pl], padsEnd: [c.pb, c.pr], output: [oh, ow])
            let shape = ConvShape(batch: c.n, inChannels: c.c, outChannels: c.c, groups: c.c, window: g)
            let x = (0..<(c.n * c.c * c.h * c.w)).map { _ in rng.uniform() }
            let k = (0..<(c.c * c.kh * c.kw)).map { _ in rng.uniform() }
            let bias = (0..<c.c).map { _ in rng.uniform() }
            // float64 reference and Σ|terms| for the tolerance
            var ref = [Double](repeating: 0, count: c.n * c.c * oh * ow), mag = ref
            for n in 0..<c.n { for ch in 0..<c.c { for o in 0..<oh { for q in 0..<ow {
                var s = Double(bias[ch]), m = abs(s)
                for a in 0..<c.kh { for b in 0..<c.kw {
                    let ih = o * c.sh - c.pt + a * c.dh, iw = q * c.sw - c.pl + b * c.dw
                    guard ih >= 0, ih < c.h, iw >= 0, iw < c.w else { continue }
                    let t = Double(k[(ch * c.kh + a) * c.kw + b]) * Double(x[((n * c.c + ch) * c.h + ih) * c.w + iw])
                    s += t; m += abs(t)
                } }
                let i = ((n * c.c + ch) * oh + o) * ow + q
                ref[i] = s; mag[i] = m
            } } } }
            // One thread: each eight-channel group is one call over every row; two or more:
            // rows split into strips across calls (the tail stores must stay in their strip).
            for (threads, baseline) in [(1, false), (2, false), (4, false), (2, true)] {
                Parallel.setThreads(threads)
                DirectGemm.forceBaseline(baseline)
                for (kind, epilogue) in epilogues {
                    for useBias in [true, false] {
                        var y = [Float](repeating: .nan, count: ref.count + 8)
                        bias.withUnsafeBufferPointer { bp in
                            Convolution.forward(x: x, w: k, bias: useBias ? bp.baseAddress! : nil, y: &y, shape: shape, epilogue: epilogue)
                        }
                        for i in 0..<ref.count {
                            let ch = (i / (oh * ow)) % c.c
                            let r = ref[i] - (useBias ? 0 : Double(bias[ch]))
                            XCTAssertEqual(Double(y[i]), Self.act(kind, r), accuracy: 4 * Double(c.kh * c.kw + 1) * 0x1p-24 * mag[i] + 1e-30,
                                           "\(c) act \(kind) bias \(useBias) baseline \(baseline) threads \(threads) at \(i)")
                        }
                        XCTAssert(y[ref.count...].allSatisfy(\.isNaN), "\(c): wrote past the output")
                    }
                }
            }
        }
    }

    /// The kernel on its own: 1–8 channels with planes not adjacent (nothing written between them).
    func testDepthwiseKxKChannelCountsAndPlaneGaps() {
        var rng = SplitMixForTests(seed: 33)
        let (h, w, kh, kw, sh, sw, dh, dw, ph, pw) = (11, 13, 5, 5, 2, 1, 1, 2, 2, 3)
        let oh = (h + 2 * ph - ((kh - 1) * dh + 1)) / sh + 1, ow = (w + 2 * pw - ((kw - 1) * dw + 1)) / sw + 1
        let plane = h * w + 5, outPlane = oh * ow + 9   // a gap wider than a whole-row store
        for baseline in [false, true] {
            DirectGemm.forceBaseline(baseline)
            for nc in 1...8 {
                let x = (0..<(8 * plane)).map { _ in rng.uniform() }
                let k = (0..<(8 * kh * kw)).map { _ in rng.uniform() }
                let bias = (0..<8).map { _ in rng.uniform() }
                var y = [Float](repeating: .nan, count: 8 * outPlane)
                var sc = [Float](repeating: 0, count: DirectGemm.depthwiseKxKScratch(kernel: (kh, kw), outHeight: oh, outWidth: ow,
                                                                                     strides: (sh, sw), dilations: (dh, dw)))
                sc.withUnsafeMutableBufferPointer { sp in
                    DirectGemm.depthwiseKxK(x: x, plane: plane, channels: nc, height: h, width: w, kernel: (kh, kw), w: k, bias: bias,
                                            y: &y, outPlane: outPlane, outHeight: oh, outWidth: ow, strides: (sh, sw),
                                            dilations: (dh, dw), padsBegin: (ph, pw), activation: .none, scratch: sp.baseAddress!)
                }
                for c in 0..<8 {
                    for i in 0..<outPlane {
                        let v = y[c * outPlane + i]
                        if c >= nc || i >= oh * ow { XCTAssert(v.isNaN, "nc \(nc): wrote channel \(c) index \(i)"); continue }
                        let (o, q) = (i / ow, i % ow)
                        var s = Double(bias[c]), m = abs(s)
                        for a in 0..<kh { for b in 0..<kw {
                            let ih = o * sh - ph + a * dh, iw = q * sw - pw + b * dw
                            guard ih >= 0, ih < h, iw >= 0, iw < w else { continue }
                            let t = Double(k[c * kh * kw + a * kw + b]) * Double(x[c * plane + ih * w + iw]); s += t; m += abs(t)
                        } }
                        XCTAssertEqual(Double(v), s, accuracy: 4 * Double(kh * kw + 1) * 0x1p-24 * m + 1e-30, "nc \(nc) c \(c) i \(i) baseline \(baseline)")
                    }
                }
            }
        }
    }

    /// 3×3 windows on planes narrower than 16 outputs go to the k×k kernel: the same bits as the
    /// 3×3 kernel in whole 8-channel groups (the last C mod 8 channels, which the 3×3 path runs
    /// through its one-plane kernel in another order, are checked against float64), in every
    /// variant, on one and two threads (strips), strides 1 and 2, with fused activations (Clip in
    /// the blocks, SiLU over the rows) and a row epilogue; batch 2 and a channel count with a
    /// tail of 5. Widths 7, 14 and 15 (one block of 7 positions, 8 + 6, 8 + 7).
    func testNarrowThreeByThreeThroughKxKEqualsTheThreeByThreeKernel() {
        var rng = SplitMixForTests(seed: 58)
        // Odd widths at stride 2 (15, 9) read the right-hand padding; batch 2 at both strides.
        let shapes: [(n: Int, c: Int, h: Int, w: Int, s: Int)] = [(1, 16, 7, 7, 1), (2, 13, 14, 14, 1), (1, 24, 14, 14, 2),
                                                                  (1, 8, 9, 15, 1), (1, 21, 28, 28, 2), (2, 13, 15, 15, 2),
                                                                  (1, 8, 7, 9, 2)]
        let epilogues: [(String, ConvEpilogue)] = [("bias", .bias), ("clip", .activation(.clip(min: 0, max: 6))),
                                                   ("silu", .activation(.silu)),
                                                   ("rows", .rows({ p, n, b in for i in 0..<n { p[i] = max(p[i] + b, 0) } }))]
        for t in shapes {
            let oh = (t.h + 2 - 3) / t.s + 1, ow = (t.w + 2 - 3) / t.s + 1
            XCTAssert(ow < 16, "\(t): not a narrow plane")
            let g = WindowGeometry(input: [t.h, t.w], kernel: [3, 3], strides: [t.s, t.s], dilations: [1, 1],
                                   padsBegin: [1, 1], padsEnd: [1, 1], output: [oh, ow])
            let shape = ConvShape(batch: t.n, inChannels: t.c, outChannels: t.c, groups: t.c, window: g)
            let x = (0..<(t.n * t.c * t.h * t.w)).map { _ in rng.uniform() * 4 }
            let k = (0..<(t.c * 9)).map { _ in rng.uniform() }
            let bias = (0..<t.c).map { _ in rng.uniform() }
            var ref = [Double](repeating: 0, count: t.n * t.c * oh * ow), mag = ref
            for n in 0..<t.n { for ch in 0..<t.c { for o in 0..<oh { for q in 0..<ow {
                var s = Double(bias[ch]), m = abs(s)
                for a in 0..<3 { for b in 0..<3 {
                    let ih = o * t.s - 1 + a, iw = q * t.s - 1 + b
                    guard ih >= 0, ih < t.h, iw >= 0, iw < t.w else { continue }
                    let v = Double(k[ch * 9 + a * 3 + b]) * Double(x[((n * t.c + ch) * t.h + ih) * t.w + iw]); s += v; m += abs(v)
                } }
                let i = ((n * t.c + ch) * oh + o) * ow + q
                ref[i] = s; mag[i] = m
            } } } }
            for variant in DirectGemm.availableVariants {
                DirectGemm.force(variant)
                for threads in [1, 2] {
                    Parallel.setThreads(threads)
                    for (name, epilogue) in epilogues {
                        var viaKxK = [Float](repeating: .nan, count: ref.count), via3x3 = viaKxK
                        Convolution.narrowDepthwiseThroughKxK = true
                        let runs = Convolution.kxkRuns
                        Convolution.forward(x: x, w: k, bias: bias, y: &viaKxK, shape: shape, epilogue: epilogue)
                        XCTAssertEqual(Convolution.kxkRuns, runs + 1, "\(t): the narrow plane did not take the k×k kernel")
                        Convolution.narrowDepthwiseThroughKxK = false
                        Convolution.forward(x: x, w: k, bias: bias, y: &via3x3, shape: shape, epilogue: epilogue)
                        XCTAssertEqual(Convolution.kxkRuns, runs + 1, "\(t): the switch did not keep the 3×3 kernel")
                        Convolution.narrowDepthwiseThroughKxK = true
                        let grouped = t.c / 8 * 8
                        let bad = (0..<ref.count).filter { ($0 / (oh * ow)) % t.c < grouped && viaKxK[$0].bitPattern != via3x3[$0].bitPattern }
                        XCTAssert(bad.isEmpty, "\(t) \(name) \(variant) threads \(threads): \(bad.count) differ, first at \(bad.first ?? -1)")
                        for i in 0..<ref.count {
                            let r = ref[i]
                            let want: Double
                            switch name {
                            case "clip": want = min(max(r, 0), 6)
                            case "silu": want = r / (1 + exp(-r))
                            case "rows": want = max(r, 0)
                            default: want = r
                            }
                            XCTAssertEqual(Double(viaKxK[i]), want, accuracy: 40 * 0x1p-24 * (mag[i] + abs(want)) + 1e-30,
                                           "\(t) \(name) \(variant) threads \(threads) at \(i)")
                        }
                    }
                }
            }
            DirectGemm.force(nil)
        }
    }

    /// Planes 16 outputs wide or wider keep the 3×3 kernel (the k×k kernel is not run).
    func testWideThreeByThreeStaysOnTheThreeByThreeKernel() {
        var rng = SplitMixForTests(seed: 59)
        for (w, s) in [(16, 1), (31, 2), (56, 1)] {
            let ow = (w + 2 - 3) / s + 1
            XCTAssert(ow >= 16)
            let g = WindowGeometry(input: [5, w], kernel: [3, 3], strides: [s, s], dilations: [1, 1],
                                   padsBegin: [1, 1], padsEnd: [1, 1], output: [(5 - 1) / s + 1, ow])
            let shape = ConvShape(batch: 1, inChannels: 8, outChannels: 8, groups: 8, window: g)
            let x = (0..<(8 * 5 * w)).map { _ in rng.uniform() }, k = (0..<72).map { _ in rng.uniform() }
            var y = [Float](repeating: .nan, count: 8 * g.output[0] * ow)
            let runs = Convolution.kxkRuns
            Convolution.forward(x: x, w: k, bias: nil, y: &y, shape: shape)
            XCTAssertEqual(Convolution.kxkRuns, runs, "width \(w) stride \(s): took the k×k kernel")
            XCTAssertFalse(y.contains { $0.isNaN }, "width \(w): output not written")
        }
    }

    /// The scalar loops (still used for channel multipliers above 1) agree with the kernel.
    func testLoopsAndKernelAgree() {
        var rng = SplitMixForTests(seed: 7)
        let c = Self.cases[1]
        let oh = (c.h + c.pt + c.pb - c.kh) / c.sh + 1, ow = (c.w + c.pl + c.pr - c.kw) / c.sw + 1
        let g = WindowGeometry(input: [c.h, c.w], kernel: [c.kh, c.kw], strides: [c.sh, c.sw], dilations: [1, 1],
                               padsBegin: [c.pt, c.pl], padsEnd: [c.pb, c.pr], output: [oh, ow])
        let shape = ConvShape(batch: 1, inChannels: c.c, outChannels: c.c, groups: c.c, window: g)
        let x = (0..<(c.c * c.h * c.w)).map { _ in rng.uniform() }, k = (0..<(c.c * 25)).map { _ in rng.uniform() }
        var a = [Float](repeating: 0, count: c.c * oh * ow), b = a
        Convolution.depthwiseThroughLoops = true
        Convolution.forward(x: x, w: k, bias: nil, y: &a, shape: shape)
        Convolution.depthwiseThroughLoops = false
        Convolution.forward(x: x, w: k, bias: nil, y: &b, shape: shape)
        for i in 0..<a.count { XCTAssertEqual(a[i], b[i], accuracy: 1e-5) }
    }
}
