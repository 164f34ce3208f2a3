import CKernels
import Foundation
import XCTest
@testable import TensorCore

/// The C kernels (CKernels: register-tiled GEMM with fused bias/activation, 3×3 depthwise) and
/// the thread pool, against naive float64 loops; every variant the CPU runs (AVX-512 for the
/// product, AVX2 + FMA, baseline), each forced in turn.
///
/// Tolerance as in GEMMTests: |y − ref| ≤ 4·K·ε·Σ|terms| + 1e-30 (ε = 2^-24), K the terms summed.
final class DirectKernelTests: XCTestCase {
    override func tearDown() { DirectGemm.force(nil) }

    static func act(_ kind: Int, _ v: Double) -> Double {
        switch kind {
        case 1: return max(v, 0)
        case 2: return min(max(v, -0.5), 0.75)
        case 3: return v >= 0 ? v : 0.1 * v
        default: return v
        }
    }
    static let activations: [KernelActivation] = [.none, .relu, .clip(min: -0.5, max: 0.75), .leakyRelu(alpha: 0.1)]

    func testGemmMatchesNaiveLoop() {
        for variant in DirectGemm.availableVariants {
            DirectGemm.force(variant)
            var rng = SplitMixForTests(seed: 11)
            // Tails in every dimension: m not a multiple of 6 or 12, n not of 16 or 32 (and a last
            // AVX-512 panel of at most 16 columns), k of 1; padded strides.
            let shapes = [(1, 1, 1), (6, 16, 8), (7, 17, 3), (13, 31, 40), (5, 100, 1), (24, 49, 96), (96, 3136, 24), (130, 20, 300),
                          (12, 32, 5), (11, 33, 9), (25, 47, 19), (18, 64, 2)]
            for (si, (m, n, k)) in shapes.enumerated() {
                let lda = k + (si % 2), ldb = n + (si % 3), ldc = n + 2
                let a = (0..<(m * lda)).map { _ in rng.uniform() }
                let b = (0..<(k * ldb)).map { _ in rng.uniform() }
                let bias = (0..<m).map { _ in rng.uniform() }
                // A also in the packed layout (the executor packs convolution weights once).
                var packed = [Float](repeating: .nan, count: DirectGemm.packedSize(m: m, k: k))
                packed.withUnsafeMutableBufferPointer { DirectGemm.packA(m: m, k: k, a: a, lda: lda, into: $0.baseAddress!) }
                for (kind, activation) in Self.activations.enumerated() {
                    for (useBias, usePacked) in [(true, false), (false, false), (true, true), (false, true)] {
                        var c = [Float](repeating: .nan, count: m * ldc)
                        a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in bias.withUnsafeBufferPointer { biasp in
                            packed.withUnsafeBufferPointer { pp in
                                c.withUnsafeMutableBufferPointer { cp in
                                    DirectGemm.multiply(m: m, n: n, k: k, a: ap.baseAddress!, lda: lda, b: bp.baseAddress!, ldb: ldb,
                                                        c: cp.baseAddress!, ldc: ldc, bias: useBias ? biasp.baseAddress! : nil, activation: activation,
                                                        packedA: usePacked ? pp.baseAddress! : nil)
                                }
                            }
                        } } }
                        for i in 0..<m {
                            for j in 0..<ldc {
                                guard j < n else { XCTAssert(c[i * ldc + j].isNaN, "wrote past column \(n)"); continue }
                                var s = useBias ? Double(bias[i]) : 0, mag = abs(s)
                                for p in 0..<k { let t = Double(a[i * lda + p]) * Double(b[p * ldb + j]); s += t; mag += abs(t) }
                                let ref = Self.act(kind, s)
                                XCTAssertEqual(Double(c[i * ldc + j]), ref, accuracy: 4 * Double(k + 1) * 0x1p-24 * mag + 1e-30,
                                               "m \(m) n \(n) k \(k) act \(kind) bias \(useBias) packed \(usePacked) \(variant) at (\(i), \(j))")
                            }
                        }
                    }
                }
            }
        }
    }

    /// The AVX-512 and AVX2 products add the same terms in the same order with one fused
    /// multiply-add each, so they agree bit for bit (tiles of 12 × 32 and 6 × 16, packed A or
    /// in place, each activation). It needs an AVX-512 CPU to compare anything; elsewhere it
    /// checks that the AVX-512 variant is neither offered nor used.
    func testGemmVariantsAgreeBitForBit() {
        let variants = DirectGemm.availableVariants.filter { $0 != .baseline }
        if !variants.contains(.avx512) { XCTAssertFalse(DirectGemm.usesAVX512) }
        var rng = SplitMixForTests(seed: 29)
        // The last shape's A is scaled by 40: sums beyond ±87.3 send Sigmoid and SiLU down the
        // eight-lane fallback inside the AVX-512 tile (`act16_halves`).
        for (m, n, k, scale) in [(12, 32, 64, Float(1)), (37, 70, 147, 1), (64, 196, 576, 1), (5, 9, 3, 1), (30, 40, 24, 40)] {
            let a = (0..<(m * k)).map { _ in rng.uniform() * scale }, b = (0..<(k * n)).map { _ in rng.uniform() }
            let bias = (0..<m).map { _ in rng.uniform() }
            var packed = [Float](repeating: .nan, count: DirectGemm.packedSize(m: m, k: k))
            packed.withUnsafeMutableBufferPointer { DirectGemm.packA(m: m, k: k, a: a, lda: k, into: $0.baseAddress!) }
            for activation in Self.activations + [.sigmoid, .hardSwish, .hardSigmoid(alpha: 0.2, beta: 0.5), .silu] {
                for usePacked in [false, true] {
                    var results: [[Float]] = []
                    for variant in variants {
                        DirectGemm.force(variant)
                        var c = [Float](repeating: .nan, count: m * n)
                        packed.withUnsafeBufferPointer { pp in
                            DirectGemm.multiply(m: m, n: n, k: k, a: a, lda: k, b: b, ldb: n, c: &c, ldc: n, bias: bias,
                                                activation: activation, packedA: usePacked ? pp.baseAddress! : nil)
                        }
                        results.append(c)
                    }
                    for (v, c) in zip(variants, results).dropFirst() {
                        XCTAssertEqual(c.map(\.bitPattern), results[0].map(\.bitPattern),
                                       "m \(m) n \(n) k \(k) \(activation) packed \(usePacked): \(v) differs from \(variants[0])")
                    }
                }
            }
        }
        DirectGemm.force(nil)
    }

    /// One column of C with packed A (a squeeze-and-excitation 1×1 convolution on a 1×1 plane)
    /// takes its own loop, not a packed panel of B: each value must equal the same column computed
    /// by the tiles (column 0 of a two-column product, same variant) bit for bit, and the float64
    /// loop within the tolerance. Rows not a multiple of 6 and of 24 (four groups a pass), k of 1,
    /// a strided column (ldb > 1), every activation, with and without bias, every variant.
    func testOneColumnEqualsTheTilesBitForBit() {
        var rng = SplitMixForTests(seed: 61)
        for variant in DirectGemm.availableVariants {
            DirectGemm.force(variant)
            for (m, k) in [(1, 1), (5, 7), (6, 1), (23, 40), (24, 144), (25, 3), (144, 576), (577, 13)] {
                let a = (0..<(m * k)).map { _ in rng.uniform() }
                let b2 = (0..<(k * 2)).map { _ in rng.uniform() }          // k × 2, row-major
                let bias = (0..<m).map { _ in rng.uniform() }
                // Packed A followed by 64 NaNs: a kernel that read past it into a kept row would
                // give NaN there (caught below against the tiles and the float64 sums).
                var packed = [Float](repeating: .nan, count: DirectGemm.packedSize(m: m, k: k) + 64)
                packed.withUnsafeMutableBufferPointer { DirectGemm.packA(m: m, k: k, a: a, lda: k, into: $0.baseAddress!) }
                for (kind, activation) in (Self.activations + [.sigmoid, .hardSwish]).enumerated() {
                    for useBias in [true, false] {
                        var one = [Float](repeating: .nan, count: m * 3), two = [Float](repeating: .nan, count: m * 2)
                        packed.withUnsafeBufferPointer { pp in
                            bias.withUnsafeBufferPointer { bp in
                                // column 0 of B read with ldb 2 (strided), written with ldc 3
                                DirectGemm.multiply(m: m, n: 1, k: k, a: a, lda: k, b: b2, ldb: 2, c: &one, ldc: 3,
                                                    bias: useBias ? bp.baseAddress! : nil, activation: activation, packedA: pp.baseAddress!)
                                DirectGemm.multiply(m: m, n: 2, k: k, a: a, lda: k, b: b2, ldb: 2, c: &two, ldc: 2,
                                                    bias: useBias ? bp.baseAddress! : nil, activation: activation, packedA: pp.baseAddress!)
                            }
                        }
                        for i in 0..<m {
                            XCTAssertFalse(one[i * 3].isNaN, "m \(m) k \(k) \(activation) \(variant) row \(i): NaN (read past packed A?)")
                            XCTAssertEqual(one[i * 3].bitPattern, two[i * 2].bitPattern,
                                           "m \(m) k \(k) \(activation) bias \(useBias) \(variant) row \(i): \(one[i * 3]) vs \(two[i * 2])")
                            XCTAssert(one[i * 3 + 1].isNaN && one[i * 3 + 2].isNaN, "wrote outside column 0 at row \(i)")
                            guard kind < Self.activations.count else { continue }
                            var s = useBias ? Double(bias[i]) : 0, mag = abs(s)
                            for p in 0..<k { let t = Double(a[i * k + p]) * Double(b2[p * 2]); s += t; mag += abs(t) }
                            XCTAssertEqual(Double(one[i * 3]), Self.act(kind, s), accuracy: 4 * Double(k + 1) * 0x1p-24 * mag + 1e-30)
                        }
                    }
                }
            }
        }
        DirectGemm.force(nil)
    }

    /// A lone last column of a batched product (three images of 11 columns: the last panel,
    /// one column of the third image) taken by the one-column loop on its own thread, packed A.
    func testOneColumnOfABatchedProduct() {
        defer { Parallel.setThreads(ProcessInfo.processInfo.activeProcessorCount); DirectGemm.force(nil) }
        Parallel.setThreads(2)
        var rng = SplitMixForTests(seed: 67)
        let (m, k, per, images) = (12, 400, 11, 3)
        let bStride = k * per + 5, cStride = m * per + 3
        let a = (0..<(m * k)).map { _ in rng.uniform() }
        let b = (0..<(images * bStride)).map { _ in rng.uniform() }
        let bias = (0..<m).map { _ in rng.uniform() }
        var packed = [Float](repeating: .nan, count: DirectGemm.packedSize(m: m, k: k))
        packed.withUnsafeMutableBufferPointer { DirectGemm.packA(m: m, k: k, a: a, lda: k, into: $0.baseAddress!) }
        for variant in DirectGemm.availableVariants {
            DirectGemm.force(variant)
            var c = [Float](repeating: .nan, count: images * cStride)
            packed.withUnsafeBufferPointer { pp in
                DirectGemm.multiply(m: m, n: images * per, k: k, a: a, lda: k, b: b, ldb: per, c: &c, ldc: per, bias: bias,
                                    activation: .none, images: (images, bStride, cStride), packedA: pp.baseAddress!)
            }
            for img in 0..<images {
                for i in 0..<m {
                    for j in 0..<per {
                        var s = Double(bias[i]), mag = abs(s)
                        for p in 0..<k { let t = Double(a[i * k + p]) * Double(b[img * bStride + p * per + j]); s += t; mag += abs(t) }
                        XCTAssertEqual(Double(c[img * cStride + i * per + j]), s, accuracy: 4 * Double(k + 1) * 0x1p-24 * mag + 1e-30,
                                       "\(variant) image \(img) row \(i) column \(j)")
                    }
                }
                XCTAssert(c[(img * cStride + m * per)..<(img * cStride + cStride)].allSatisfy(\.isNaN), "wrote between images")
            }
        }
    }

    /// COMPRESS_NO_AVX512=1 leaves the AVX2 product (the variant CPUs without AVX-512 run).
    func testEnvironmentTurnsAVX512Off() {
        let had = DirectGemm.availableVariants
        setenv("COMPRESS_NO_AVX512", "1", 1)
        defer { unsetenv("COMPRESS_NO_AVX512"); DirectGemm.force(nil) }
        DirectGemm.force(nil)
        XCTAssertFalse(DirectGemm.usesAVX512)
        XCTAssertFalse(DirectGemm.availableVariants.contains(.avx512))
        XCTAssertEqual(DirectGemm.usesAVX2, had.contains(.avx2))
    }

    /// Columns as several images (1×1 convolution over a batch): panels that cross from one image
    /// to the next are gathered and scattered column by column.
    func testGemmBatchedLayoutMatchesNaiveLoop() {
        for variant in DirectGemm.availableVariants {
            DirectGemm.force(variant)
            var rng = SplitMixForTests(seed: 3)
            for (m, per, k, images) in [(7, 20, 5, 3), (13, 49, 33, 8), (6, 16, 4, 2), (1, 3, 2, 5)] {
                let bStride = k * per + 5, cStride = m * per + 3
                let b = (0..<(images * bStride)).map { _ in rng.uniform() }
                let a = (0..<(m * k)).map { _ in rng.uniform() }
                let bias = (0..<m).map { _ in rng.uniform() }
                var c = [Float](repeating: .nan, count: images * cStride)
                c.withUnsafeMutableBufferPointer { cp in
                    DirectGemm.multiply(m: m, n: images * per, k: k, a: a, lda: k, b: b, ldb: per, c: cp.baseAddress!, ldc: per,
                                        bias: bias, activation: .relu, images: (images, bStride, cStride))
                }
                for t in 0..<images {
                    for i in 0..<m {
                        for j in 0..<per {
                            var s = Double(bias[i]), mag = abs(s)
                            for p in 0..<k { let v = Double(a[i * k + p]) * Double(b[t * bStride + p * per + j]); s += v; mag += abs(v) }
                            XCTAssertEqual(Double(c[t * cStride + i * per + j]), max(s, 0), accuracy: 4 * Double(k + 1) * 0x1p-24 * mag + 1e-30,
                                           "m \(m) per \(per) k \(k) images \(images) \(variant) at (\(t), \(i), \(j))")
                        }
                    }
                    XCTAssert(c[(t * cStride + m * per)..<((t + 1) * cStride)].allSatisfy(\.isNaN), "wrote between images")
                }
            }
        }
    }

    func testActivationsKeepNaN() {
        for variant in DirectGemm.availableVariants {
            DirectGemm.force(variant)
            for activation in Self.activations {
                let a: [Float] = [1], b = [Float](repeating: .nan, count: 16)
                var c = [Float](repeating: 0, count: 16)
                DirectGemm.multiply(m: 1, n: 16, k: 1, a: a, lda: 1, b: b, ldb: 16, c: &c, ldc: 16, bias: nil, activation: activation)
                XCTAssert(c.allSatisfy(\.isNaN), "\(activation) \(variant): \(c)")
            }
        }
    }

    func testDepthwise3x3MatchesNaiveLoop() {
        for baseline in [false, true] {
            DirectGemm.forceBaseline(baseline)
            var rng = SplitMixForTests(seed: 5)
            // (H, W, stride down, stride across, pad top, pad left)
            let cases = [(1, 1, 1, 1, 1, 1), (5, 7, 1, 1, 1, 1), (7, 7, 2, 2, 1, 1), (8, 9, 1, 2, 0, 0), (12, 20, 3, 1, 2, 2),
                         (3, 30, 2, 2, 1, 0), (16, 16, 1, 1, 0, 1), (17, 33, 2, 2, 1, 1), (2, 2, 1, 1, 2, 2),
                         (12, 12, 2, 1, -3, 1)]  // negative top padding: a strip of rows further down
            for (h, w, sh, sw, ph, pw) in cases {
                // Bottom/right pads equal to the top/left ones (any would do: they only set the output size).
                let oh = (h + 2 * ph - 3) / sh + 1, ow = (w + 2 * pw - 3) / sw + 1
                guard oh > 0, ow > 0 else { continue }
                let x = (0..<(h * w)).map { _ in rng.uniform() }
                let k = (0..<9).map { _ in rng.uniform() }
                let bias = rng.uniform()
                for (kind, activation) in Self.activations.enumerated() {
                    var y = [Float](repeating: .nan, count: oh * ow + 8)
                    let scratch = [Float](repeating: 0, count: DirectGemm.depthwiseScratch(outWidth: ow, strideW: sw))
                    var sc = scratch
                    sc.withUnsafeMutableBufferPointer { sp in
                        DirectGemm.depthwise3x3(x: x, height: h, width: w, w: k, bias: bias, y: &y, outHeight: oh, outWidth: ow,
                                                strides: (sh, sw), padsBegin: (ph, pw), activation: activation, scratch: sp.baseAddress!)
                    }
                    for o in 0..<oh {
                        for q in 0..<ow {
                            var s = Double(bias), mag = abs(s)
                            for kh in 0..<3 {
                                for kw in 0..<3 {
                                    let ih = o * sh - ph + kh, iw = q * sw - pw + kw
                                    guard ih >= 0, ih < h, iw >= 0, iw < w else { continue }
                                    let t = Double(k[kh * 3 + kw]) * Double(x[ih * w + iw])
                                    s += t; mag += abs(t)
                                }
                            }
                            XCTAssertEqual(Double(y[o * ow + q]), Self.act(kind, s), accuracy: 40 * 0x1p-24 * mag + 1e-30,
                                           "H \(h) W \(w) s \(sh)x\(sw) pad \(ph),\(pw) act \(kind) baseline \(baseline) at (\(o), \(q))")
                        }
                    }
                    XCTAssert(y[(oh * ow)...].allSatisfy(\.isNaN), "wrote past the plane")
                }
            }
        }
    }

    func testDepthwise3x3EightChannelsMatchesNaiveLoop() {
        for baseline in [false, true] {
            DirectGemm.forceBaseline(baseline)
            var rng = SplitMixForTests(seed: 9)
            let cases = [(1, 1, 1, 1, 1, 1), (5, 7, 1, 1, 1, 1), (7, 7, 2, 2, 1, 1), (8, 9, 1, 2, 0, 0), (12, 20, 3, 1, 2, 2),
                         (3, 30, 2, 2, 1, 0), (16, 16, 1, 1, 0, 1), (17, 33, 2, 2, 1, 1), (2, 2, 1, 1, 2, 2), (14, 14, 1, 1, 1, 1),
                         (12, 12, 2, 1, -3, 1)]
            for (h, w, sh, sw, ph, pw) in cases {
                let oh = (h + 2 * ph - 3) / sh + 1, ow = (w + 2 * pw - 3) / sw + 1
                guard oh > 0, ow > 0 else { continue }
                let plane = h * w + 3, outPlane = oh * ow + 2   // planes need not be adjacent
                let x = (0..<(8 * plane)).map { _ in rng.uniform() }
                let k = (0..<72).map { _ in rng.uniform() }
                let bias = (0..<8).map { _ in rng.uniform() }
                for (kind, activation) in Self.activations.enumerated() {
                    for useBias in [true, false] {
                        var y = [Float](repeating: .nan, count: 8 * outPlane)
                        var sc = [Float](repeating: 0, count: DirectGemm.depthwise8Scratch(outHeight: oh, outWidth: ow, strides: (sh, sw)))
                        sc.withUnsafeMutableBufferPointer { sp in
                            bias.withUnsafeBufferPointer { bp in
                                DirectGemm.depthwise3x3x8(x: x, plane: plane, height: h, width: w, w: k, bias: useBias ? bp.baseAddress! : nil,
                                                          y: &y, outPlane: outPlane, outHeight: oh, outWidth: ow, strides: (sh, sw),
                                                          padsBegin: (ph, pw), activation: activation, scratch: sp.baseAddress!)
                            }
                        }
                        for c in 0..<8 {
                            for o in 0..<oh {
                                for q in 0..<ow {
                                    var s = useBias ? Double(bias[c]) : 0, mag = abs(s)
                                    for kh in 0..<3 {
                                        for kw in 0..<3 {
                                            let ih = o * sh - ph + kh, iw = q * sw - pw + kw
                                            guard ih >= 0, ih < h, iw >= 0, iw < w else { continue }
                                            let t = Double(k[c * 9 + kh * 3 + kw]) * Double(x[c * plane + ih * w + iw])
                                            s += t; mag += abs(t)
                                        }
                                    }
                                    XCTAssertEqual(Double(y[c * outPlane + o * ow + q]), Self.act(kind, s), accuracy: 40 * 0x1p-24 * mag + 1e-30,
                                                   "H \(h) W \(w) s \(sh)x\(sw) pad \(ph),\(pw) act \(kind) baseline \(baseline) at (\(c), \(o), \(q))")
                                }
                            }
                            XCTAssert(y[(c * outPlane + oh * ow)..<((c + 1) * outPlane)].allSatisfy(\.isNaN), "wrote between planes")
                        }
                    }
                }
            }
        }
    }

    /// Sigmoid and SiLU (vectorized e^x) against float64 over [-100, 100], NaN kept, and both
    /// fused into a product's store.
    func testSigmoidAndSiLU() {
        // Each variant's results, to compare the AVX-512 loop (sixteen lanes) with the AVX2 one.
        var results: [String: [UInt32]] = [:]
        for variant in DirectGemm.availableVariants {
            DirectGemm.force(variant)
            let n = 20_003
            var x = (0..<n).map { Float(-100 + 200 * Double($0) / Double(n - 1)) }
            x += [.nan, 0, -0.0]
            var y = [Float](repeating: 0, count: x.count)
            for (act, f) in [(KernelActivation.sigmoid, { (v: Double) in 1 / (1 + exp(-v)) }), (.silu, { (v: Double) in v / (1 + exp(-v)) })] {
                x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { act.apply(xp.baseAddress!, into: $0.baseAddress!, count: x.count) } }
                results["\(variant) \(act.raw.kind)"] = y.map(\.bitPattern)
                for i in 0..<n {
                    let ref = f(Double(x[i]))
                    // Subnormal results (under 2^-126) carry an absolute error of up to 2^-149.
                    XCTAssertEqual(Double(y[i]), ref, accuracy: 4e-7 * abs(ref) + 100 * 0x1p-149, "\(act) at \(x[i]) \(variant)")
                }
                XCTAssert(y[n].isNaN)
                XCTAssertEqual(y[n + 1], act == .sigmoid ? 0.5 : 0)
            }
            // Fused into the product: C = σ(A·B + bias).
            let a: [Float] = [0.5, -1, 2, 0.25], b: [Float] = (0..<(2 * 20)).map { Float($0 % 7) - 3 }
            var c = [Float](repeating: 0, count: 2 * 20)
            DirectGemm.multiply(m: 2, n: 20, k: 2, a: a, lda: 2, b: b, ldb: 20, c: &c, ldc: 20, bias: [0.1, -0.2], activation: .sigmoid)
            for i in 0..<2 {
                for j in 0..<20 {
                    let s = Double([0.1, -0.2][i]) + Double(a[i * 2]) * Double(b[j]) + Double(a[i * 2 + 1]) * Double(b[20 + j])
                    XCTAssertEqual(Double(c[i * 20 + j]), 1 / (1 + exp(-s)), accuracy: 1e-6)
                }
            }
        }
        if DirectGemm.availableVariants.contains(.avx512) { XCTAssertNotNil(results["avx512 4"], "\(results.keys.sorted())") }
        for kind in [4, 5] where results["avx512 \(kind)"] != nil {
            XCTAssertEqual(results["avx512 \(kind)"], results["avx2 \(kind)"], "kind \(kind): AVX-512 and AVX2 loops differ")
        }
    }

    /// Every index exactly once, from one thread, nested loops and several submitting threads.
    func testParallelCoversEveryIndexOnce() {
        let saved = Parallel.threads
        defer { Parallel.setThreads(saved) }
        Parallel.setThreads(4)
        for count in [1, 2, 7, 100, 1000] {
            var hits = [Int](repeating: 0, count: count)
            hits.withUnsafeMutableBufferPointer { h in
                let base = h.baseAddress!
                Parallel.forRanges(count: count, minimumWork: 0) { r in for i in r { base[i] += 1 } }
            }
            XCTAssertEqual(hits, [Int](repeating: 1, count: count), "count \(count)")
        }
        // Nested: inner loops run inline on whichever thread runs the outer chunk.
        var grid = [Int](repeating: 0, count: 64 * 64)
        grid.withUnsafeMutableBufferPointer { g in
            let base = g.baseAddress!
            Parallel.forRanges(count: 64, minimumWork: 0) { rows in
                for r in rows { Parallel.forRanges(count: 64, minimumWork: 0) { cols in for c in cols { base[r * 64 + c] += 1 } } }
            }
        }
        XCTAssertEqual(grid, [Int](repeating: 1, count: 64 * 64))
        // Several threads submitting at once (one gets the pool, the others run inline).
        let sums = UnsafeMutablePointer<Int>.allocate(capacity: 8)
        defer { sums.deallocate() }
        DispatchQueue.concurrentPerform(iterations: 8) { t in
            var local = [Int](repeating: 0, count: 5000)
            for _ in 0..<20 {
                local.withUnsafeMutableBufferPointer { l in
                    let base = l.baseAddress!
                    Parallel.forRanges(count: 5000, minimumWork: 0) { r in for i in r { base[i] += i } }
                }
            }
            sums[t] = local.reduce(0, +)
        }
        for t in 0..<8 { XCTAssertEqual(sums[t], 20 * (4999 * 5000 / 2)) }
        // Straight through the pool: chunks are claimed by position up to 256 a job (each thread
        // starting at its own share), by one counter beyond; both every chunk exactly once.
        for chunks in [2, 3, 255, 256, 257, 1000] {
            for threads: Int32 in [2, 3] {
                var hits = [Int32](repeating: 0, count: chunks)
                hits.withUnsafeMutableBufferPointer { h in
                    ck_parallel_run(chunks, threads, { ctx, i in
                        let p = ctx!.assumingMemoryBound(to: Int32.self) + i
                        p.pointee += 1
                    }, h.baseAddress!)
                }
                XCTAssertEqual(hits, [Int32](repeating: 1, count: chunks), "\(chunks) chunks on \(threads) threads")
            }
        }
        // With work in each chunk (a spin of some microseconds) a worker takes part: some chunk
        // runs on a thread other than the submitting one, and still every chunk runs once (each
        // records the thread that ran it). Up to five tries, for a worker descheduled by the OS.
        let me = UInt(pthread_self())
        var shared = false
        for _ in 0..<5 where !shared {
            var owners = [UInt](repeating: 0, count: 64)
            owners.withUnsafeMutableBufferPointer { o in
                ck_parallel_run(64, 2, { ctx, i in
                    var x = 0.0
                    for j in 0..<20_000 { x += Double(j & 7) }
                    let p = ctx!.assumingMemoryBound(to: UInt.self) + i
                    p.pointee = p.pointee != 0 ? UInt.max : x < 0 ? 0 : UInt(pthread_self())   // max: ran twice
                }, o.baseAddress!)
            }
            XCTAssertFalse(owners.contains(0), "a chunk did not run")
            XCTAssertFalse(owners.contains(UInt.max), "a chunk ran twice")
            shared = owners.contains { $0 != me }
        }
        XCTAssertTrue(shared, "no chunk ran on a worker thread in five tries")
    }
}
