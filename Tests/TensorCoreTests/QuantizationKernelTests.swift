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
                // Infinities make the sums infinite; the finite part is checked on its own below.
                XCTAssertEqual(sums.signal, .infinity)
            }
        }
        // Finite values only: the sums equal Double sums to float accuracy.
        let x = (0..<1024).map { _ in rng.uniform() * 3 }
        for baseline in [false, true] {
            DirectGemm.forceBaseline(baseline)
            let sums = x.withUnsafeBufferPointer { QuantizationKernels.fakeQuantize($0.baseAddress!, into: nil, count: x.count, scale: 0.03, lo: -127, hi: 127) }
            var signal = 0.0, noise = 0.0
            for v in x {
                let q = Float(min(max(Double(v / 0.03).rounded(.toNearestOrEven), -127), 127)) * 0.03
                signal += Double(v) * Double(v); noise += Double(v - q) * Double(v - q)
            }
            XCTAssertEqual(sums.signal, signal, accuracy: signal * 1e-5)
            XCTAssertEqual(sums.noise, noise, accuracy: noise * 1e-4)
            XCTAssertGreaterThan(sums.noise, 0)
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
        let nans = [Float](repeating: .nan, count: 16)
        let r = nans.withUnsafeBufferPointer { QuantizationKernels.minMax($0.baseAddress!, count: 16) }
        XCTAssertEqual(r.min, .infinity)
        XCTAssertEqual(r.max, -.infinity)
    }
}
