/// Element-type conversion, with ONNX `Cast` semantics: float to integer truncates toward zero
/// (out-of-range values wrap as the C cast would saturate is undefined in ONNX; we clamp to the
/// target range so results are deterministic), any nonzero value to bool is true, and narrowing
/// to float16/bfloat16 rounds to nearest even (see `HalfConversion`).
extension Tensor {
    /// Reads element `i` as a Double (exact for every type but 64-bit integers beyond 2^53).
    @inline(__always)
    static func readDouble(_ p: UnsafeRawPointer, _ i: Int, _ dtype: DType) -> Double {
        switch dtype {
        case .float32: return Double(p.loadUnaligned(fromByteOffset: i * 4, as: Float.self))
        case .float64: return p.loadUnaligned(fromByteOffset: i * 8, as: Double.self)
        case .float16: return Double(HalfConversion.float(fromFloat16Bits: p.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)))
        case .bfloat16: return Double(HalfConversion.float(fromBFloat16Bits: p.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)))
        case .int8: return Double(p.load(fromByteOffset: i, as: Int8.self))
        case .uint8: return Double(p.load(fromByteOffset: i, as: UInt8.self))
        case .bool: return p.load(fromByteOffset: i, as: UInt8.self) != 0 ? 1 : 0
        case .int16: return Double(p.loadUnaligned(fromByteOffset: i * 2, as: Int16.self))
        case .uint16: return Double(p.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))
        case .int32: return Double(p.loadUnaligned(fromByteOffset: i * 4, as: Int32.self))
        case .uint32: return Double(p.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))
        case .int64: return Double(p.loadUnaligned(fromByteOffset: i * 8, as: Int64.self))
        case .uint64: return Double(p.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))
        default: preconditionFailure("no numeric conversion from \(dtype)")
        }
    }

    @inline(__always)
    static func readInt64(_ p: UnsafeRawPointer, _ i: Int, _ dtype: DType) -> Int64 {
        switch dtype {
        case .int64: return p.loadUnaligned(fromByteOffset: i * 8, as: Int64.self)
        case .uint64: return Int64(bitPattern: p.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))
        case .int32: return Int64(p.loadUnaligned(fromByteOffset: i * 4, as: Int32.self))
        case .uint32: return Int64(p.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))
        case .int16: return Int64(p.loadUnaligned(fromByteOffset: i * 2, as: Int16.self))
        case .uint16: return Int64(p.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))
        case .int8: return Int64(p.load(fromByteOffset: i, as: Int8.self))
        case .uint8: return Int64(p.load(fromByteOffset: i, as: UInt8.self))
        case .bool: return p.load(fromByteOffset: i, as: UInt8.self) != 0 ? 1 : 0
        default:
            let d = readDouble(p, i, dtype)
            if d.isNaN { return 0 }
            return Int64(clamping: d, to: Int64.self)
        }
    }

    @inline(__always)
    static func write(_ v: Double, _ p: UnsafeMutableRawPointer, _ i: Int, _ dtype: DType) {
        switch dtype {
        case .float32: p.storeBytes(of: Float(v), toByteOffset: i * 4, as: Float.self)
        case .float64: p.storeBytes(of: v, toByteOffset: i * 8, as: Double.self)
        case .float16: p.storeBytes(of: Float16(v).bitPattern, toByteOffset: i * 2, as: UInt16.self)
        case .bfloat16: p.storeBytes(of: HalfConversion.bfloat16Bits(from: Float(v)), toByteOffset: i * 2, as: UInt16.self)
        case .bool: p.storeBytes(of: v != 0 ? 1 : 0, toByteOffset: i, as: UInt8.self)
        default: writeInt(v.isNaN ? 0 : Int64(clamping: v.rounded(.towardZero), to: Int64.self), p, i, dtype)
        }
    }

    @inline(__always)
    static func writeInt(_ v: Int64, _ p: UnsafeMutableRawPointer, _ i: Int, _ dtype: DType) {
        switch dtype {
        case .int64: p.storeBytes(of: v, toByteOffset: i * 8, as: Int64.self)
        case .uint64: p.storeBytes(of: UInt64(bitPattern: v), toByteOffset: i * 8, as: UInt64.self)
        case .int32: p.storeBytes(of: Int32(truncatingIfNeeded: v), toByteOffset: i * 4, as: Int32.self)
        case .uint32: p.storeBytes(of: UInt32(truncatingIfNeeded: v), toByteOffset: i * 4, as: UInt32.self)
        case .int16: p.storeBytes(of: Int16(truncatingIfNeeded: v), toByteOffset: i * 2, as: Int16.self)
        case .uint16: p.storeBytes(of: UInt16(truncatingIfNeeded: v), toByteOffset: i * 2, as: UInt16.self)
        case .int8: p.storeBytes(of: Int8(truncatingIfNeeded: v), toByteOffset: i, as: Int8.self)
        case .uint8: p.storeBytes(of: UInt8(truncatingIfNeeded: v), toByteOffset: i, as: UInt8.self)
        case .bool: p.storeBytes(of: v != 0 ? 1 : 0, toByteOffset: i, as: UInt8.self)
        default: write(Double(v), p, i, dtype)
        }
    }

    static func isNumeric(_ d: DType) -> Bool {
        switch d {
        case .float32, .float64, .float16, .bfloat16, .int8, .uint8, .bool, .int16, .uint16, .int32, .uint32, .int64, .uint64: return true
        default: return false
        }
    }

    /// This tensor with its elements converted to `target` (a copy; `self` when already `target`).
    public func converted(to target: DType) -> Tensor {
        if target == dtype { return self }
        precondition(Tensor.isNumeric(dtype) && Tensor.isNumeric(target), "cannot convert \(dtype) to \(target)")
        var out = Tensor(uninitialized: target, shape: shape)
        let n = count, src = dtype
        withUnsafeBytes { s in
            out.withUnsafeMutableBytes { d in
                let sp = s.baseAddress!, dp = d.baseAddress!
                if src == .float32 && target == .float16 {
                    for i in 0..<n { dp.storeBytes(of: Float16(sp.loadUnaligned(fromByteOffset: i * 4, as: Float.self)).bitPattern, toByteOffset: i * 2, as: UInt16.self) }
                } else if src == .float32 && target == .bfloat16 {
                    for i in 0..<n { dp.storeBytes(of: HalfConversion.bfloat16Bits(from: sp.loadUnaligned(fromByteOffset: i * 4, as: Float.self)), toByteOffset: i * 2, as: UInt16.self) }
                } else if !src.isFloatingPoint && src != .bool && !target.isFloatingPoint {
                    for i in 0..<n { Tensor.writeInt(Tensor.readInt64(sp, i, src), dp, i, target) }
                } else {
                    for i in 0..<n { Tensor.write(Tensor.readDouble(sp, i, src), dp, i, target) }
                }
            }
        }
        return out
    }

    /// The elements as Float, converting from any numeric dtype.
    public func floatValues() -> [Float] {
        if dtype == .float32 { return scalars(as: Float.self) }
        return converted(to: .float32).scalars(as: Float.self)
    }

    /// The elements as Int64, converting from any numeric dtype (floats truncate toward zero).
    public func int64Values() -> [Int64] {
        if dtype == .int64 { return scalars(as: Int64.self) }
        let n = count
        return withUnsafeBytes { s in (0..<n).map { Tensor.readInt64(s.baseAddress!, $0, dtype) } }
    }

    /// The elements as Double, converting from any numeric dtype.
    public func doubleValues() -> [Double] {
        let n = count
        return withUnsafeBytes { s in (0..<n).map { Tensor.readDouble(s.baseAddress!, $0, dtype) } }
    }
}

extension Int64 {
    @inline(__always)
    init(clamping d: Double, to: Int64.Type) {
        if d >= 9.2233720368547758e18 { self = .max } else if d <= -9.2233720368547758e18 { self = .min } else { self = Int64(d) }
    }
}
