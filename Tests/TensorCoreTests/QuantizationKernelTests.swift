import XCTest
@testable import TensorCore

/// `QuantizationKernels` (the calibration and quality-report kernels in CKernels) against scalar
/// references written here: AVX2 and baseline variants give the same bits.
final class QuantizationKernelTests: XCTestCase {
    override func tearDown() { DirectGemm.forceBaseline(false) }

    /// Each element as QuantizeLinear (x / scale in Float as the operator divides, then round half
    /// to even, saturate, NaN → zero point) and DequantizeLinear compute it; the sums in Double.
    /// The scale is a power of two so that the ties are exact.
    func testFakeQuantizeMatchesQuantizeThenDequantize() {
        var rng = SplitMixForTests(seed: 11)
        let scale: Float = 0.0625
        for (lo, hi) in [(Float(-127), Float(127)), (Float(-128), Float(127)), (Float(-100), Float(155))] {
            var x = (0..<4096).map { _ in rng.uniform() * 9 }
            // Ties at ±k.5 steps, values far beyond the range, NaN and infinities.
            x[0] = 2.5 * scale; x[1] = -2.5 * scale; x[2] = 3.5 * scale; x[3] = .nan
            x[4] = .infinity; x[5] = -.infinity; x[6] = 1e30; x[7] = 0
            for baseline in [false, true] {
                DirectGemm.forceBaseline(baseline)
                var y = [Float](repeating: -1, count: x.count)
                let sums = x.withUnsafeBufferPointer { xp in
                    y.withUnsafeMutableBufferPointer { yp in
                        QuantizationKernels.fakeQuantize(xp.baseAddress!, into: yp.baseAddress!, count: x.count, scale: scale, lo: lo, hi: hi)
                    }
                }
                for (i, v) in x.enumerated() {
                    let t = v.isNaN ? 0 : Double(v / scale)
                    let q = min(max(t.rounded(.toNearestOrEven), Double(lo)), Double(hi))
                    let want = Float(q) * scale
                    XCTAssertEqual(y[i], want, "x[\(i)] = \(v), bounds \(lo)…\(hi), baseline \(baseline)")
                }
                XCTAssertEqual(y[0], 2 * scale, "2.5 steps round to even (2)")
                XCTAssertEqual(y[2], 4 * scale, "3.5 steps round to even (4)")
                XCTAssertEqual(y[3], 0, "NaN gives the zero point")
                // Infinities make the sums infinite; finite sums are checked exactly in the next test.
                XCTAssertEqual(sums.signal, .infinity)
            }
        }
    }

    /// A scale that is not a power of two (x / s is not x · (1/s), r · s rounds): the output bit
    /// for bit as the operators compute it in Float, and the sums exactly as the kernel documents
    /// them (lane i % 8 in Float, the lanes added in order in Double, then the last count % 8
    /// values one by one in Double), on both variants; with and without a scalar tail.
    func testFakeQuantizeAtAnInexactScaleIsExactOnBothVariants() {
        for count in [2048, 2045, 5] {
            var rng = SplitMixForTests(seed: 23)
            let scale: Float = 0.0123
            var x = (0..<count).map { _ in rng.uniform() * 1.7 }
            x[count - 1] = .nan   // in the tail (or the vector part) alike: 0 out, nothing summed
            // The reference, in the kernel's documented order.
            var want = [Float](repeating: 0, count: count)
            var laneS = [Float](repeating: 0, count: 8), laneN = [Float](repeating: 0, count: 8)
            var tailS = [Float](), tailN = [Float]()
            let vectorized = count - count % 8
            for (i, x) in x.enumerated() {
                let v = x.isNaN ? 0 : x
                let t = min(max(v / scale, -128), 127)
                let q = Float(Double(t).rounded(.toNearestOrEven)) * scale
                want[i] = q
                let d = v - q
                if i < vectorized {
                    laneS[i % 8] += v * v
                    laneN[i % 8] += d * d
                } else {
                    tailS.append(v * v); tailN.append(d * d)
                }
            }
            var signal = 0.0, noise = 0.0
            for l in 0..<8 { signal += Double(laneS[l]); noise += Double(laneN[l]) }
            for (a, b) in zip(tailS, tailN) { signal += Double(a); noise += Double(b) }
            XCTAssertEqual(want[count - 1], 0)
            var results: [(Double, Double)] = []
            for baseline in [false, true] {
                DirectGemm.forceBaseline(baseline)
                var y = [Float](repeating: .nan, count: count)
                let sums = x.withUnsafeBufferPointer { xp in
                    y.withUnsafeMutableBufferPointer { yp in
                        QuantizationKernels.fakeQuantize(xp.baseAddress!, into: yp.baseAddress!, count: count, scale: scale, lo: -128, hi: 127)
                    }
                }
                XCTAssertEqual(y, want, "count \(count), baseline \(baseline)")
                XCTAssertEqual(sums.signal, signal, "baseline \(baseline)")
                XCTAssertEqual(sums.noise, noise, "baseline \(baseline)")
                results.append((sums.signal, sums.noise))
            }
            XCTAssertEqual(results[0].0, results[1].0, "AVX2 and baseline sums are the same bits")
            XCTAssertEqual(results[0].1, results[1].1)
            XCTAssertGreaterThan(noise, 0)
        }
    }

    func testMinMaxIgnoresNaNAndCoversTheTail() {
        var rng = SplitMixForTests(seed: 5)
        for count in [1, 7, 8, 9, 64, 1003] {
            var x = (0..<count).map { _ in rng.uniform() }
            if count > 2 { x[1] = .nan }
            x[count - 1] = 5   // the largest, in the scalar tail when count % 8 != 0
            if count > 3 { x[2] = -7 }
            for baseline in [false, true] {
                DirectGemm.forceBaseline(baseline)
                let r = x.withUnsafeBufferPointer { QuantizationKernels.minMax($0.baseAddress!, count: count) }
                let finite = x.filter { !$0.isNaN }
                XCTAssertEqual(r.min, finite.min()!, "count \(count) baseline \(baseline)")
                XCTAssertEqual(r.max, 5, "count \(count) baseline \(baseline)")
            }
        }
        // Infinities are extremes like any value; a NaN in the scalar tail moves nothing.
        var v: [Float] = [1, -.infinity, 3, 2, 0.5, 7, -1, 4, .infinity, 2, .nan]
        for baseline in [false, true] {
            DirectGemm.forceBaseline(baseline)
            let r = v.withUnsafeBufferPointer { QuantizationKernels.minMax($0.baseAddress!, count: $0.count) }
            XCTAssertEqual(r.min, -.infinity)
            XCTAssertEqual(r.max, .infinity)
            v[1] = -3; v[8] = 6
            let s = v.withUnsafeBufferPointer { QuantizationKernels.minMax($0.baseAddress!, count: $0.count) }
            XCTAssertEqual(s.min, -3, "baseline \(baseline)")
            XCTAssertEqual(s.max, 7, "baseline \(baseline)")
            v[1] = -.infinity; v[8] = .infinity
        }
        let nans = [Float](repeating: .nan, count: 16)
        let r = nans.withUnsafeBufferPointer { QuantizationKernels.minMax($0.baseAddress!, count: 16) }
        XCTAssertEqual(r.min, .infinity)
        XCTAssertEqual(r.max, -.infinity)
    }
}
