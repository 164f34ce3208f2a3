/// Conversions between float32 and the 16-bit float formats, bit-exact and round-to-nearest-even.
///
/// - float16 (IEEE 754 binary16): Swift's `Float16` already converts with round-to-nearest-even,
///   keeps ±0, ±∞ and NaN, and produces subnormals; these helpers work on bit patterns so they also
///   serve raw buffers.
/// - bfloat16: the upper 16 bits of a float32. Narrowing rounds to nearest, ties to even
///   (add 0x7FFF plus the lowest kept bit, then truncate) — the rule PyTorch, ONNX's reference
///   (`onnx.numpy_helper`) and ml_dtypes use. Any NaN becomes the canonical quiet NaN with its
///   sign (0x7FC0 / 0xFFC0, as ml_dtypes) instead of being rounded (which could carry it to ∞).
/// - float16 NaN payloads follow the hardware conversion (a signaling NaN comes back quiet);
///   only NaN-ness and sign are guaranteed, as numpy keeps the payload bits instead.
public enum HalfConversion {
    @inline(__always)
    public static func float(fromFloat16Bits bits: UInt16) -> Float {
        Float(Float16(bitPattern: bits))
    }

    @inline(__always)
    public static func float16Bits(from value: Float) -> UInt16 {
        Float16(value).bitPattern
    }

    @inline(__always)
    public static func float(fromBFloat16Bits bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    @inline(__always)
    public static func bfloat16Bits(from value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) & 0x8000 | 0x7FC0 }
        let lsb = (bits >> 16) & 1
        let rounded = bits &+ 0x7FFF &+ lsb
        return UInt16(truncatingIfNeeded: rounded >> 16)
    }
}
