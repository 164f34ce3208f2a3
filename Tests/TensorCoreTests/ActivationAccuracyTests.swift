import XCTest
import Foundation
@testable import TensorCore

/// The vectorized Tanh, Exp, Erf, HardSigmoid and HardSwish (`ck_activate`) over a dense sweep
/// of float32 bit patterns (every 127th finite pattern of both signs: 33.7M inputs), against
/// float64 libm rounded to float32; the largest error in ulps of the float32 result is printed and bounded. Special values (NaN, ±Inf, ±0, subnormals) must
/// match float32 libm (`tanhf`, `expf`, `erff`) exactly; both the AVX2 + FMA and the baseline variants.
///
/// Measured maxima over every 61st pattern (70.1M inputs), AVX2 + FMA / baseline: tanh 1.499 /
/// 1.499 ulp, exp 1.003 / 0.959 ulp, erf 1.016 / 1.177 ulp; the bounds sit just above.
final class ActivationAccuracyTests: XCTestCase {
    override func tearDown() { DirectGemm.forceBaseline(false) }

    /// Every `step`-th float32 bit pattern that is finite, both signs.
    static func sweep(step: UInt32 = 127) -> [Float] {
        var xs: [Float] = []
        xs.reserveCapacity(Int(0x7f80_0000 / step) * 2 + 2)
        var b: UInt32 = 0
        while b < 0x7f80_0000 {
            xs.append(Float(bitPattern: b)); xs.append(Float(bitPattern: b | 0x8000_0000))
            b += step
        }
        xs.append(Float.greatestFiniteMagnitude); xs.append(-Float.greatestFiniteMagnitude)
        return xs
    }

    static func apply(_ a: KernelActivation, _ x: [Float]) -> [Float] {
        var y = [Float](repeating: 0, count: x.count)
        x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { a.apply(xp.baseAddress!, into: $0.baseAddress!, count: x.count) } }
        return y
    }

    /// |y − ref| in units of the float32 ulp at ref (the subnormal spacing at most); an overflowing
    /// reference must give ±Inf exactly (reported as 0 or .infinity).
    static func ulps(_ y: Float, _ ref: Double) -> Double {
        let r = Float(ref)
        if r.isInfinite { return y == r ? 0 : .infinity }
        if y.isNaN { return .infinity }
        let unit = Double(max(abs(r).ulp, Float.leastNonzeroMagnitude))
        return abs(Double(y) - ref) / unit
    }

    func testTanhExpErfUlpErrorOverDenseSweep() {
        let xs = Self.sweep()
        let funcs: [(String, KernelActivation, (Double) -> Double, Double, Double)] = [
            // name, kernel, reference, bound AVX2, bound baseline (ulps)
            ("tanh", .tanh, { Foundation.tanh($0) }, 1.6, 1.6),
            ("exp", .exp, { Foundation.exp($0) }, 1.1, 1.1),
            ("erf", .erf, { Foundation.erf($0) }, 1.1, 1.3),
        ]
        for baseline in [false, true] {
            DirectGemm.forceBaseline(baseline)
            for (name, act, ref, boundAVX, boundBase) in funcs {
                let y = Self.apply(act, xs)
                var worst = 0.0, at: Float = 0
                for i in 0..<xs.count {
                    let e = Self.ulps(y[i], ref(Double(xs[i])))
                    if e > worst { worst = e; at = xs[i] }
                }
                // COMPRESS_NO_AVX2=1 keeps the baseline even when not forced: bound by what runs.
                let avx2 = DirectGemm.usesAVX2
                print("ActivationAccuracy: \(name) \(avx2 ? "AVX2+FMA" : "baseline") max \(String(format: "%.3f", worst)) ulp at \(at) over \(xs.count) inputs")
                XCTAssertLessThanOrEqual(worst, avx2 ? boundAVX : boundBase, "\(name) baseline \(baseline) worst at \(at)")
            }
        }
    }

    func testSpecialValuesMatchLibm() {
        let specials: [Float] = [.nan, -.nan, .infinity, -.infinity, 0, -0.0, .leastNonzeroMagnitude, -.leastNonzeroMagnitude,
                                 Float(bitPattern: 0x0001_1234), -Float(bitPattern: 0x0001_1234), .leastNormalMagnitude, -.leastNormalMagnitude, 1e-30, -1e-30,
                                 88.72, 88.73, 89, 100, -87.3, -100, -103.9, -104, -150, 3.925, 3.93, -3.93, 9, 9.1, -9.1,
                                 .greatestFiniteMagnitude, -.greatestFiniteMagnitude]
        let funcs: [(String, KernelActivation, (Float) -> Float)] = [("tanh", .tanh, { tanhf($0) }), ("exp", .exp, { expf($0) }),
                                                                      ("erf", .erf, { erff($0) })]
        for baseline in [false, true] {
            DirectGemm.forceBaseline(baseline)
            for (name, act, libm) in funcs {
                let y = Self.apply(act, specials)
                for (x, v) in zip(specials, y) {
                    let r = libm(x)
                    if r.isNaN { XCTAssert(v.isNaN, "\(name)(\(x)) = \(v), libm NaN"); continue }
                    if r.isInfinite || r == 0 || x == 0 || !x.isFinite {
                        // exact, sign of zero included
                        XCTAssertEqual(v.bitPattern, r.bitPattern, "\(name)(\(x)) = \(v), libm \(r) baseline \(baseline)")
                    } else {
                        XCTAssertLessThanOrEqual(Self.ulps(v, Double(r)), 2, "\(name)(\(x)) = \(v), libm \(r) baseline \(baseline)")
                    }
                }
            }
        }
    }

    /// HardSigmoid and HardSwish against the float64 formula (NaN kept, ±0 and ±Inf as the scalar op).
    func testHardSigmoidAndHardSwish() {
        let xs = (0..<40_001).map { Float(-10 + 20 * Double($0) / 40_000) } + [.nan, .infinity, -.infinity, 0, -0.0, Float(bitPattern: 0x0001_1234), -3, 3]
        for baseline in [false, true] {
            DirectGemm.forceBaseline(baseline)
            let hs = Self.apply(.hardSigmoid(alpha: 0.2, beta: 0.5), xs)
            let hw = Self.apply(.hardSwish, xs)
            for (i, x) in xs.enumerated() {
                let d = Double(x)
                let rs = max(0, min(1, 0.2 * d + 0.5)), rw = d * max(0, min(1, d / 6 + 0.5))
                if x.isNaN { XCTAssert(hs[i].isNaN && hw[i].isNaN); continue }
                if !x.isFinite {
                    XCTAssertEqual(Double(hs[i]), rs)
                    // +Inf · 1 = +Inf; −Inf · 0 = NaN, as the scalar HardSwishFunction gives
                    if x > 0 { XCTAssertEqual(hw[i], .infinity) } else { XCTAssert(hw[i].isNaN, "hardSwish(-inf) = \(hw[i])") }
                    continue
                }
                XCTAssertEqual(Double(hs[i]), rs, accuracy: 1.5 * 0x1p-24, "hardSigmoid(\(x)) baseline \(baseline)")
                XCTAssertEqual(Double(hw[i]), rw, accuracy: 0x1p-22 * abs(d), "hardSwish(\(x)) baseline \(baseline)")
            }
            XCTAssertEqual(hw[xs.count - 4].bitPattern, (-0.0 as Float).bitPattern, "hardSwish(-0) = -0")
        }
    }
}
