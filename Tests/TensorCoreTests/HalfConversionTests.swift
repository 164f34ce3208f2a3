import XCTest
@testable import TensorCore

/// float16 / bfloat16 conversions checked bit for bit against numpy 2.4 and ml_dtypes 0.6.
///
/// Every expected pattern below was produced by (numpy for float16, ml_dtypes for bfloat16):
///
///     import numpy as np, ml_dtypes
///     f32 = lambda b: np.array([b], np.uint32).view(np.float32)
///     f32(b).astype(np.float16).view(np.uint16)[0]            # float32 -> float16
///     f32(b).astype(ml_dtypes.bfloat16).view(np.uint16)[0]    # float32 -> bfloat16
///     np.array([h], np.uint16).view(np.float16).astype(np.float32).view(np.uint32)[0]
///     np.array([x], np.float64).astype(np.float16)            # float64 -> float16 (direct)
///     np.array([x], np.float64).astype(ml_dtypes.bfloat16)    # float64 -> bfloat16 (via float32)
final class HalfConversionTests: XCTestCase {
    // (float32 bits, float16 bits) — numpy: f32(b).astype(np.float16).view(np.uint16)[0]
    static let float16Cases: [(UInt32, UInt16, String)] = [
        (0x0000_0000, 0x0000, "+0"),
        (0x8000_0000, 0x8000, "-0"),
        (0x3F80_0000, 0x3C00, "1"),
        (0xC000_0000, 0xC000, "-2"),
        (0x477F_E000, 0x7BFF, "65504, max finite"),
        (0x477F_EFFF, 0x7BFF, "65519.996, just below the overflow tie"),
        (0x477F_F000, 0x7C00, "65520, tie between 65504 and 2^16 rounds to even = +inf"),
        (0x47C3_5000, 0x7C00, "1e5 overflows to +inf"),
        (0xC7C3_5000, 0xFC00, "-1e5 overflows to -inf"),
        (0x7F7F_FFFF, 0x7C00, "float32 max overflows to +inf"),
        (0x7F80_0000, 0x7C00, "+inf"),
        (0xFF80_0000, 0xFC00, "-inf"),
        (0x7FC0_0000, 0x7E00, "quiet NaN"),
        (0xFFC0_0000, 0xFE00, "negative quiet NaN"),
        (0x3380_0000, 0x0001, "2^-24, smallest subnormal"),
        (0x3300_0000, 0x0000, "2^-25, tie between 0 and 2^-24 rounds to even = 0"),
        (0x3340_0000, 0x0001, "1.5 * 2^-25 rounds up to 2^-24"),
        (0x387F_C000, 0x03FF, "largest subnormal"),
        (0x3880_0000, 0x0400, "2^-14, smallest normal"),
        (0x0000_0001, 0x0000, "float32 subnormal underflows to 0"),
        (0x3F80_1000, 0x3C00, "1 + 2^-11, tie rounds to even (down)"),
        (0x3F80_3000, 0x3C02, "1 + 3*2^-11, tie rounds to even (up)"),
        (0x3F80_1001, 0x3C01, "just above the tie rounds up"),
        (0x4500_1000, 0x6800, "2049 -> 2048 (tie to even)"),
        (0x4500_3000, 0x6802, "2051 -> 2052 (tie to even)"),
    ]

    // (float32 bits, bfloat16 bits) — ml_dtypes: f32(b).astype(ml_dtypes.bfloat16).view(np.uint16)[0]
    static let bfloat16Cases: [(UInt32, UInt16, String)] = [
        (0x0000_0000, 0x0000, "+0"),
        (0x8000_0000, 0x8000, "-0"),
        (0x3F80_0000, 0x3F80, "1"),
        (0x7F80_0000, 0x7F80, "+inf"),
        (0xFF80_0000, 0xFF80, "-inf"),
        (0x7FC0_0000, 0x7FC0, "quiet NaN"),
        (0xFFC0_0000, 0xFFC0, "negative quiet NaN"),
        (0x7F80_0001, 0x7FC0, "signaling NaN becomes the canonical quiet NaN"),
        (0xFF80_0001, 0xFFC0, "negative signaling NaN keeps its sign"),
        (0x7FBF_FFFF, 0x7FC0, "NaN whose payload would round up is not carried to another pattern"),
        (0x7F7F_FFFF, 0x7F80, "float32 max rounds to +inf"),
        (0x7F7F_7FFF, 0x7F7F, "just below the tie stays at bfloat16 max finite"),
        (0x7F7F_8000, 0x7F80, "tie above max finite rounds to even = +inf"),
        (0x0000_0001, 0x0000, "smallest float32 subnormal rounds to 0"),
        (0x0001_0000, 0x0001, "smallest bfloat16 subnormal is exact"),
        (0x0000_8000, 0x0000, "subnormal tie rounds to even (0)"),
        (0x0001_8000, 0x0002, "subnormal tie rounds to even (2)"),
        (0x8000_8000, 0x8000, "negative subnormal tie rounds to -0"),
        (0x3F80_8000, 0x3F80, "1 + 2^-8, tie rounds to even (down)"),
        (0x3F81_8000, 0x3F82, "tie rounds to even (up)"),
        (0x3F80_8001, 0x3F81, "just above the tie rounds up"),
        (0xBF80_8000, 0xBF80, "negative tie rounds to even"),
    ]

    // (float16 bits, float32 bits) — numpy: np.array([h], np.uint16).view(np.float16).astype(np.float32)
    static let widenCases: [(UInt16, UInt32)] = [
        (0x0000, 0x0000_0000), (0x8000, 0x8000_0000), (0x0001, 0x3380_0000), (0x03FF, 0x387F_C000),
        (0x0400, 0x3880_0000), (0x3C00, 0x3F80_0000), (0x7BFF, 0x477F_E000), (0xFBFF, 0xC77F_E000),
        (0x7C00, 0x7F80_0000), (0xFC00, 0xFF80_0000), (0x7E00, 0x7FC0_0000), (0xFE00, 0xFFC0_0000),
        (0x3555, 0x3EAA_A000),
    ]

    func testFloat32ToFloat16MatchesNumpy() {
        for (f, h, what) in Self.float16Cases {
            let got = HalfConversion.float16Bits(from: Float(bitPattern: f))
            XCTAssertEqual(got, h, "float16 of 0x\(String(f, radix: 16)) (\(what)): got 0x\(String(got, radix: 16))")
        }
    }

    func testFloat32ToBFloat16MatchesMLDtypes() {
        for (f, b, what) in Self.bfloat16Cases {
            let got = HalfConversion.bfloat16Bits(from: Float(bitPattern: f))
            XCTAssertEqual(got, b, "bfloat16 of 0x\(String(f, radix: 16)) (\(what)): got 0x\(String(got, radix: 16))")
        }
    }

    func testFloat16ToFloat32MatchesNumpy() {
        for (h, f) in Self.widenCases {
            XCTAssertEqual(HalfConversion.float(fromFloat16Bits: h).bitPattern, f, "float16 0x\(String(h, radix: 16))")
        }
    }

    /// A signaling NaN keeps NaN-ness and sign (numpy also keeps the payload: 0x7F800001 ->
    /// 0x7C01 and 0x7C01 -> 0x7F802000; the hardware conversion Swift uses quiets it).
    func testFloat16SignalingNaNStaysNaNWithSign() {
        for bits: UInt32 in [0x7F80_0001, 0xFF80_0001, 0x7FBF_FFFF] {
            let h = HalfConversion.float16Bits(from: Float(bitPattern: bits))
            XCTAssertTrue(Float16(bitPattern: h).isNaN, "0x\(String(bits, radix: 16))")
            XCTAssertEqual(h & 0x8000 != 0, bits & 0x8000_0000 != 0)
        }
        let w = HalfConversion.float(fromFloat16Bits: 0xFC01)
        XCTAssertTrue(w.isNaN)
        XCTAssertEqual(w.sign, .minus)
    }

    /// Every float16 pattern widens to float32 exactly, so narrowing gives the pattern back.
    func testEveryFloat16PatternRoundTrips() {
        for h in 0...UInt16.max {
            let f = HalfConversion.float(fromFloat16Bits: h)
            if Float16(bitPattern: h).isNaN { XCTAssertTrue(f.isNaN); continue }
            XCTAssertEqual(HalfConversion.float16Bits(from: f), h)
        }
    }

    /// Every bfloat16 pattern widens exactly; narrowing gives it back (NaNs: the canonical NaN).
    func testEveryBFloat16PatternRoundTrips() {
        for b in 0...UInt16.max {
            let f = HalfConversion.float(fromBFloat16Bits: b)
            XCTAssertEqual(f.bitPattern, UInt32(b) << 16)
            let back = HalfConversion.bfloat16Bits(from: f)
            if f.isNaN { XCTAssertEqual(back, b & 0x8000 | 0x7FC0) } else { XCTAssertEqual(back, b) }
        }
    }

    /// `Tensor.converted(to:)` uses the same rules on whole buffers, also through the float64 path.
    func testTensorConversionsMatchReference() {
        let src = Self.float16Cases.map { Float(bitPattern: $0.0) }
        let h = Tensor(shape: [src.count], scalars: src).converted(to: .float16)
        XCTAssertEqual(h.dtype, .float16)
        h.withUnsafeBufferPointer(as: UInt16.self) { XCTAssertEqual(Array($0), Self.float16Cases.map(\.1)) }

        let bsrc = Self.bfloat16Cases.map { Float(bitPattern: $0.0) }
        let b = Tensor(shape: [bsrc.count], scalars: bsrc).converted(to: .bfloat16)
        b.withUnsafeBufferPointer(as: UInt16.self) { XCTAssertEqual(Array($0), Self.bfloat16Cases.map(\.1)) }

        // float64 sources. numpy rounds float64 -> float16 once (1 + 2^-11 + 2^-40 -> 0x3C01, where
        // going through float32 would give the tie 1 + 2^-11 and round to 0x3C00); ml_dtypes goes
        // through float32 for bfloat16 (1 + 2^-8 + 2^-40 -> 0x3F80).
        //   np.array([1+2**-11+2**-40, 1+2**-8+2**-40, 65520.0, 65519.99999, 1e-300, -1e300])
        //   .astype(np.float16) -> 3C01 3C04 7C00 7BFF 0000 FC00
        //   .astype(ml_dtypes.bfloat16) -> 3F80 3F80 4780 4780 0000 FF80
        let d: [Double] = [1 + 0x1p-11 + 0x1p-40, 1 + 0x1p-8 + 0x1p-40, 65520, 65519.99999, 1e-300, -1e300]
        let dt = Tensor(shape: [d.count], scalars: d)
        dt.converted(to: .float16).withUnsafeBufferPointer(as: UInt16.self) {
            XCTAssertEqual(Array($0), [0x3C01, 0x3C04, 0x7C00, 0x7BFF, 0x0000, 0xFC00])
        }
        dt.converted(to: .bfloat16).withUnsafeBufferPointer(as: UInt16.self) {
            XCTAssertEqual(Array($0), [0x3F80, 0x3F80, 0x4780, 0x4780, 0x0000, 0xFF80])
        }

        // Widening back to float32 is exact for every finite value.
        let back = h.floatValues()
        for (i, c) in Self.float16Cases.enumerated() where !Float16(bitPattern: c.1).isNaN {
            XCTAssertEqual(back[i].bitPattern, HalfConversion.float(fromFloat16Bits: c.1).bitPattern)
        }
    }
}
