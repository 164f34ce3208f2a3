import Foundation
import CKernels

// Linear quantization kernels (ONNX QuantizeLinear / DequantizeLinear and the integer ops built
// on them), plus element access for the low-precision types quantization produces: 16/8/4/2-bit
// integers (4- and 2-bit packed, element 0 in the least significant bits, as the ONNX IR
// specifies) and the float8 / float4 formats of the ONNX "Float stored in 8 bits" spec.

/// How a scale (and zero point) tensor maps onto the elements of the quantized tensor.
///
/// The tensor is viewed as `[outer, dim, inner]` around the quantization axis. Per-tensor uses one
/// parameter; per-axis one per index along the axis (`scale[a]`); blocked quantization (ONNX
/// opset 21) one per `blockSize` consecutive indices along the axis, so the scale has shape
/// `[outer, ceil(dim / blockSize), inner]`.
public struct QuantizationLayout: Equatable, Sendable {
    public enum Granularity: Equatable, Sendable {
        case perTensor
        case perAxis
        case blocked(Int)
    }

    public let outer: Int
    public let dim: Int
    public let inner: Int
    public let granularity: Granularity

    public init(outer: Int, dim: Int, inner: Int, granularity: Granularity) {
        self.outer = outer
        self.dim = dim
        self.inner = inner
        self.granularity = granularity
    }

    /// Per-tensor layout for `count` elements.
    public static func perTensor(count: Int) -> QuantizationLayout {
        QuantizationLayout(outer: 1, dim: 1, inner: count, granularity: .perTensor)
    }

    /// Number of scale / zero-point entries the layout expects.
    public var parameterCount: Int {
        switch granularity {
        case .perTensor: return 1
        case .perAxis: return dim
        case .blocked(let b): return outer * ((dim + b - 1) / b) * inner
        }
    }

    /// Index of the scale entry for element `(o, a, j)` of the `[outer, dim, inner]` view.
    @inline(__always)
    public func parameterIndex(_ o: Int, _ a: Int, _ j: Int) -> Int {
        switch granularity {
        case .perTensor: return 0
        case .perAxis: return a
        case .blocked(let b): return (o * ((dim + b - 1) / b) + a / b) * inner + j
        }
    }

    /// Calls `body(elementIndex, parameterIndex)` for every element in row-major order.
    @inline(__always)
    public func forEach(_ body: (Int, Int) -> Void) {
        var i = 0
        for o in 0..<outer {
            for a in 0..<dim {
                for j in 0..<inner {
                    body(i, parameterIndex(o, a, j))
                    i += 1
                }
            }
        }
    }
}

/// The arithmetic precision of the `x / scale` division in QuantizeLinear: ONNX makes it the
/// scale's type unless the `precision` attribute says otherwise (opset 23); NumPy's promotion of
/// the reference implementation (float16 / float16 stays float16, int32 / float32 is float64).
public enum DivisionPrecision: Sendable {
    case float16, bfloat16, float32, float64

    /// Rounds a float32 quotient to this precision. A float32 division of two float16 (or
    /// bfloat16) values rounded once more is the correctly rounded narrow result, because float32
    /// carries more than twice the narrow significand plus two bits.
    @inline(__always)
    func narrowed(_ q: Float) -> Float {
        switch self {
        case .float16: return Float(Float16(q))
        case .bfloat16: return HalfConversion.float(fromBFloat16Bits: HalfConversion.bfloat16Bits(from: q))
        case .float32, .float64: return q
        }
    }
}

/// The small float formats of ONNX (float8 E4M3FN, E4M3FNUZ, E5M2, E5M2FNUZ and float4 E2M1):
/// conversion from float32 rounds to nearest, ties to even; out-of-range values saturate to the
/// largest finite value or become NaN/∞ as ONNX's Cast table prescribes. Bit-compatible with
/// ml_dtypes, which ONNX's reference implementation uses.
public struct Minifloat: Sendable {
    public let exponentBits: Int
    public let mantissaBits: Int
    public let bias: Int
    /// Kind of special values: `.fn` has NaN at all ones and no ∞ (E4M3FN); `.ieee` has ∞ and
    /// NaN at the top exponent (E5M2); `.fnuz` has one NaN at 0x80 and no −0; `.none` has
    /// neither NaN nor ∞ (E2M1).
    public enum Specials: Sendable { case fn, ieee, fnuz, none }
    public let specials: Specials

    public static let e4m3fn = Minifloat(exponentBits: 4, mantissaBits: 3, bias: 7, specials: .fn)
    public static let e4m3fnuz = Minifloat(exponentBits: 4, mantissaBits: 3, bias: 8, specials: .fnuz)
    public static let e5m2 = Minifloat(exponentBits: 5, mantissaBits: 2, bias: 15, specials: .ieee)
    public static let e5m2fnuz = Minifloat(exponentBits: 5, mantissaBits: 2, bias: 16, specials: .fnuz)
    public static let e2m1 = Minifloat(exponentBits: 2, mantissaBits: 1, bias: 1, specials: .none)

    /// The format of `dtype`, if it is one of the small float types.
    public static func format(of dtype: DType) -> Minifloat? {
        switch dtype {
        case .float8e4m3fn: return .e4m3fn
        case .float8e4m3fnuz: return .e4m3fnuz
        case .float8e5m2: return .e5m2
        case .float8e5m2fnuz: return .e5m2fnuz
        case .float4e2m1: return .e2m1
        default: return nil
        }
    }

    var signBit: UInt8 { UInt8(1 << (exponentBits + mantissaBits)) }
    var exponentMask: Int { (1 << exponentBits) - 1 }

    /// Largest finite magnitude (448 for E4M3FN, 57344 for E5M2, 240 for E4M3FNUZ, 6 for E2M1).
    public var maxFinite: Double {
        let topExponent: Int, topMantissa: Int
        switch specials {
        case .fn: topExponent = exponentMask; topMantissa = (1 << mantissaBits) - 2
        case .ieee: topExponent = exponentMask - 1; topMantissa = (1 << mantissaBits) - 1
        case .fnuz, .none: topExponent = exponentMask; topMantissa = (1 << mantissaBits) - 1
        }
        return (1 + Double(topMantissa) / Double(1 << mantissaBits)) * pow(2, Double(topExponent - bias))
    }

    var nanCode: UInt8 {
        switch specials {
        case .fn: return UInt8((1 << (exponentBits + mantissaBits)) - 1)
        case .ieee: return UInt8((exponentMask << mantissaBits) | (1 << (mantissaBits - 1)))
        case .fnuz: return 0x80
        case .none: return 0
        }
    }

    var maxCode: UInt8 { encodeMagnitude(maxFinite) }

    /// Bits of a finite magnitude `q` that the format represents exactly.
    func encodeMagnitude(_ q: Double) -> UInt8 {
        if q == 0 { return 0 }
        let minExponent = 1 - bias
        let e = Int(q.exponent)
        if e < minExponent {
            return UInt8(q / pow(2, Double(minExponent - mantissaBits)))
        }
        let mantissa = Int(q / pow(2, Double(e - mantissaBits))) - (1 << mantissaBits)
        return UInt8(((e + bias) << mantissaBits) | mantissa)
    }

    /// Converts a float to the format's bits, per the ONNX Cast spec's saturation table.
    /// - Parameter saturate: out-of-range values, ±∞ included, become ±max finite (the behaviour
    ///   of `onnx.numpy_helper.saturate_cast`, which the backend tests follow for every format);
    ///   otherwise they become NaN, or ∞ for E5M2. E2M1 always saturates. FNUZ formats have no
    ///   −0: a negative value that rounds to zero gives +0, every other negative keeps its sign.
    public func encode(_ x: Float, saturate: Bool = true) -> UInt8 {
        let negative = x.sign == .minus
        let sign: UInt8 = negative ? signBit : 0
        if x.isNaN {
            switch specials {
            case .none: return negative ? signBit : 0
            case .fnuz: return nanCode
            default: return nanCode | sign
            }
        }
        let a = Double(x.magnitude)
        func overflow() -> UInt8 {
            if saturate || specials == .none { return sign | maxCode }
            switch specials {
            case .ieee: return sign | UInt8(exponentMask << mantissaBits)
            case .fnuz: return nanCode
            default: return nanCode | sign
            }
        }
        if x.isInfinite { return overflow() }
        let zero: UInt8 = specials == .fnuz ? 0 : sign
        if a == 0 { return zero }
        let e = max(Int(a.exponent), 1 - bias)
        let quantum = pow(2, Double(e - mantissaBits))
        let q = (a / quantum).rounded(.toNearestOrEven) * quantum
        if q > maxFinite { return overflow() }
        if q == 0 { return zero }
        return sign | encodeMagnitude(q)
    }

    /// The value of a code.
    public func decode(_ code: UInt8) -> Float {
        let width = exponentBits + mantissaBits
        let negative = code & signBit != 0
        let e = Int(code >> UInt8(mantissaBits)) & exponentMask
        let m = Int(code) & ((1 << mantissaBits) - 1)
        switch specials {
        case .fn where e == exponentMask && m == (1 << mantissaBits) - 1: return .nan
        case .ieee where e == exponentMask: return m == 0 ? (negative ? -.infinity : .infinity) : .nan
        case .fnuz where Int(code) == 1 << width: return .nan
        default: break
        }
        let magnitude = e == 0
            ? Double(m) * pow(2, Double(1 - bias - mantissaBits))
            : (1 + Double(m) / Double(1 << mantissaBits)) * pow(2, Double(e - bias))
        return Float(negative ? -magnitude : magnitude)
    }
}

/// Element access and arithmetic for quantized tensors.
public enum Quantization {
    /// Saturation range of an integer quantized type (ONNX QuantizeLinear's table).
    public static func integerRange(of dtype: DType) -> ClosedRange<Int32>? {
        switch dtype {
        case .uint8: return 0...255
        case .int8: return -128...127
        case .uint16: return 0...65535
        case .int16: return -32768...32767
        case .uint4: return 0...15
        case .int4: return -8...7
        case .uint2: return 0...3
        case .int2: return -2...1
        case .int32: return Int32.min...Int32.max
        default: return nil
        }
    }

    /// Whether QuantizeLinear can produce `dtype` (integer or small float).
    public static func isQuantizedType(_ dtype: DType) -> Bool {
        (integerRange(of: dtype) != nil && dtype != .int32) || Minifloat.format(of: dtype) != nil
    }

    /// Element `i` of an integer tensor (8/16/32-bit, or packed 4/2-bit) as Int32.
    @inline(__always)
    public static func loadInt(_ p: UnsafeRawPointer, _ i: Int, _ dtype: DType) -> Int32 {
        switch dtype {
        case .uint8: return Int32(p.load(fromByteOffset: i, as: UInt8.self))
        case .int8: return Int32(p.load(fromByteOffset: i, as: Int8.self))
        case .uint16: return Int32(p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
        case .int16: return Int32(p.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))
        case .int32: return p.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)
        case .uint4, .int4:
            let nibble = Int32(p.load(fromByteOffset: i / 2, as: UInt8.self) >> UInt8((i % 2) * 4)) & 0xF
            return dtype == .int4 && nibble >= 8 ? nibble - 16 : nibble
        case .uint2, .int2:
            let pair = Int32(p.load(fromByteOffset: i / 4, as: UInt8.self) >> UInt8((i % 4) * 2)) & 0x3
            return dtype == .int2 && pair >= 2 ? pair - 4 : pair
        default: preconditionFailure("\(dtype) is not an integer quantized type")
        }
    }

    /// Stores `v` (already in range) as element `i`. Packed types OR their bits in, so the
    /// destination must start zeroed.
    @inline(__always)
    public static func storeInt(_ v: Int32, _ p: UnsafeMutableRawPointer, _ i: Int, _ dtype: DType) {
        switch dtype {
        case .uint8: p.storeBytes(of: UInt8(truncatingIfNeeded: v), toByteOffset: i, as: UInt8.self)
        case .int8: p.storeBytes(of: Int8(truncatingIfNeeded: v), toByteOffset: i, as: Int8.self)
        case .uint16: p.storeBytes(of: UInt16(truncatingIfNeeded: v), toByteOffset: 2 * i, as: UInt16.self)
        case .int16: p.storeBytes(of: Int16(truncatingIfNeeded: v), toByteOffset: 2 * i, as: Int16.self)
        case .int32: p.storeBytes(of: v, toByteOffset: 4 * i, as: Int32.self)
        case .uint4, .int4:
            let old = p.load(fromByteOffset: i / 2, as: UInt8.self)
            p.storeBytes(of: old | (UInt8(truncatingIfNeeded: v) & 0xF) << UInt8((i % 2) * 4), toByteOffset: i / 2, as: UInt8.self)
        case .uint2, .int2:
            let old = p.load(fromByteOffset: i / 4, as: UInt8.self)
            p.storeBytes(of: old | (UInt8(truncatingIfNeeded: v) & 0x3) << UInt8((i % 4) * 2), toByteOffset: i / 4, as: UInt8.self)
        default: preconditionFailure("\(dtype) is not an integer quantized type")
        }
    }

    /// Element `i` of a small-float tensor (float8 or packed float4) as Float.
    @inline(__always)
    static func loadMinifloat(_ p: UnsafeRawPointer, _ i: Int, _ f: Minifloat, packed: Bool) -> Float {
        let code = packed ? (p.load(fromByteOffset: i / 2, as: UInt8.self) >> UInt8((i % 2) * 4)) & 0xF
                          : p.load(fromByteOffset: i, as: UInt8.self)
        return f.decode(code)
    }

    /// Every element of a quantized tensor (integer or small float) as Float. Integers above
    /// 2^24 (int32) round to the nearest float, as `astype(float32)` does.
    public static func floatValues(_ t: Tensor) -> [Float] {
        let n = t.count, d = t.dtype
        return t.withUnsafeBytes { raw in
            guard let p = raw.baseAddress else { return [] }
            if let f = Minifloat.format(of: d) {
                return (0..<n).map { loadMinifloat(p, $0, f, packed: d == .float4e2m1) }
            }
            return (0..<n).map { Float(loadInt(p, $0, d)) }
        }
    }

    /// Every element of an integer tensor (any width, packed included) as Int32.
    public static func intValues(_ t: Tensor) -> [Int32] {
        let n = t.count, d = t.dtype
        return t.withUnsafeBytes { raw in
            guard let p = raw.baseAddress else { return [] }
            return (0..<n).map { loadInt(p, $0, d) }
        }
    }

    /// Rounds to the nearest integer, ties to even (`np.rint`), then adds `zeroPoint` and
    /// saturates to `range`. NaN maps to the zero point.
    @inline(__always)
    public static func saturate(_ q: Double, zeroPoint: Int32, range: ClosedRange<Int32>) -> Int32 {
        if q.isNaN { return min(max(zeroPoint, range.lowerBound), range.upperBound) }
        let v = q.rounded(.toNearestOrEven) + Double(zeroPoint)
        return Int32(min(max(v, Double(range.lowerBound)), Double(range.upperBound)))
    }

    /// QuantizeLinear: `y = saturate(round_half_even(x / scale) + zero_point)` for integer
    /// outputs; for float8 outputs `y = cast(x / scale)` (saturating per `saturate`); for float4
    /// `y = cast(x / scale + zero_point)`.
    ///
    /// - Parameters:
    ///   - x: input values, already widened to Float (exact for float16/bfloat16/float32).
    ///   - xIsWide: x came from int32 (division then runs in float64, as NumPy promotes).
    ///   - scale, zeroPoint: one entry per `layout.parameterCount`; `zeroPoint` holds integer
    ///     values for integer outputs and float values for float4 (empty = zero).
    ///   - precision: the division's arithmetic (see `DivisionPrecision`).
    ///   - output: the quantized element type.
    public static func quantize(_ x: [Float], layout: QuantizationLayout, scale: [Float], zeroPoint: [Float],
                                precision: DivisionPrecision, output: DType, saturate sat: Bool = true,
                                shape: [Int]) -> Tensor {
        if let fast = quantize8(x, layout: layout, scale: scale, zeroPoint: zeroPoint, precision: precision, output: output, shape: shape) {
            return fast
        }
        var out = Tensor(dtype: output, shape: shape)
        let hasZero = !zeroPoint.isEmpty
        @inline(__always) func quotient(_ i: Int, _ k: Int) -> Double {
            if precision == .float64 { return Double(x[i]) / Double(scale[k]) }
            return Double(precision.narrowed(x[i] / scale[k]))
        }
        out.withUnsafeMutableBytes { raw in
            guard let p = raw.baseAddress else { return }
            if let range = integerRange(of: output) {
                layout.forEach { i, k in
                    let z = hasZero ? Int32(zeroPoint[k]) : 0
                    storeInt(saturate(quotient(i, k), zeroPoint: z, range: range), p, i, output)
                }
            } else if let f = Minifloat.format(of: output) {
                let packed = output == .float4e2m1
                layout.forEach { i, k in
                    var q = Float(quotient(i, k))
                    if packed && hasZero { q += zeroPoint[k] }
                    let code = f.encode(q, saturate: sat)
                    if packed {
                        let old = p.load(fromByteOffset: i / 2, as: UInt8.self)
                        p.storeBytes(of: old | (code & 0xF) << UInt8((i % 2) * 4), toByteOffset: i / 2, as: UInt8.self)
                    } else {
                        p.storeBytes(of: code, toByteOffset: i, as: UInt8.self)
                    }
                }
            } else {
                preconditionFailure("\(output) is not a quantized type")
            }
        }
        return out
    }

    /// The common QDQ case of `quantize` without per-element dispatch: float32 division, int8 or
    /// uint8 output, per-tensor or per-axis parameters. The same results: x/scale in Float,
    /// clamped to [qmin − z, qmax − z] and then rounded half to even — equal to rounding then
    /// adding z and saturating, since the bounds are integers — by (t + 1.5·2²³) − 1.5·2²³, exact
    /// for the clamped |t| < 2²²; NaN gives the zero point. nil for any other case.
    static func quantize8(_ x: [Float], layout: QuantizationLayout, scale: [Float], zeroPoint: [Float],
                          precision: DivisionPrecision, output: DType, shape: [Int]) -> Tensor? {
        guard precision == .float32, output == .int8 || output == .uint8, layout.outer * layout.dim * layout.inner == x.count else { return nil }
        let perAxis: Bool
        switch layout.granularity {
        case .perTensor: perAxis = false
        case .perAxis: perAxis = true
        case .blocked: return nil
        }
        let qmin: Float = output == .int8 ? -128 : 0, qmax: Float = output == .int8 ? 127 : 255
        let magic: Float = 12_582_912
        var out = Tensor(dtype: output, shape: shape)
        out.withUnsafeMutableBytes { raw in
            guard let p = raw.baseAddress else { return }
            x.withUnsafeBufferPointer { xv in
                for o in 0..<layout.outer {
                    for a in 0..<layout.dim {
                        let k = perAxis ? a : 0
                        let s = scale[k], z = zeroPoint.isEmpty ? 0 : zeroPoint[k]
                        let lo = qmin - z, hi = qmax - z
                        let base = (o * layout.dim + a) * layout.inner
                        if output == .int8 {
                            let q = p.assumingMemoryBound(to: Int8.self) + base
                            for j in 0..<layout.inner {
                                let v = xv[base + j]
                                let t = v.isNaN ? 0 : Swift.min(Swift.max(v / s, lo), hi)
                                q[j] = Int8(((t + magic) - magic) + z)
                            }
                        } else {
                            let q = p.assumingMemoryBound(to: UInt8.self) + base
                            for j in 0..<layout.inner {
                                let v = xv[base + j]
                                let t = v.isNaN ? 0 : Swift.min(Swift.max(v / s, lo), hi)
                                q[j] = UInt8(((t + magic) - magic) + z)
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// DequantizeLinear: `y = (x - zero_point) * scale`, computed in float32 (float64 for int32
    /// inputs, whose difference NumPy widens), as ONNX's reference implementation does.
    /// - Returns: the values as Float, to be converted to the output type by the caller.
    public static func dequantize(_ x: Tensor, layout: QuantizationLayout, scale: [Float], zeroPoint: [Float]) -> [Float] {
        if x.dtype == .int8 || x.dtype == .uint8, layout.outer * layout.dim * layout.inner == x.count {
            // The common QDQ case, without per-element dispatch (same arithmetic in Float).
            var perAxis = false
            switch layout.granularity {
            case .perTensor: break
            case .perAxis: perAxis = true
            case .blocked: return dequantizeGeneric(x, layout: layout, scale: scale, zeroPoint: zeroPoint)
            }
            var y = [Float](repeating: 0, count: x.count)
            let signed = x.dtype == .int8
            x.withUnsafeBytes { raw in
                guard let p = raw.baseAddress else { return }
                y.withUnsafeMutableBufferPointer { yv in
                    for o in 0..<layout.outer {
                        for a in 0..<layout.dim {
                            let k = perAxis ? a : 0
                            let s = scale[k], z = zeroPoint.isEmpty ? 0 : zeroPoint[k]
                            let base = (o * layout.dim + a) * layout.inner
                            if signed {
                                let q = p.assumingMemoryBound(to: Int8.self) + base
                                for j in 0..<layout.inner { yv[base + j] = (Float(q[j]) - z) * s }
                            } else {
                                let q = p.assumingMemoryBound(to: UInt8.self) + base
                                for j in 0..<layout.inner { yv[base + j] = (Float(q[j]) - z) * s }
                            }
                        }
                    }
                }
            }
            return y
        }
        return dequantizeGeneric(x, layout: layout, scale: scale, zeroPoint: zeroPoint)
    }

    static func dequantizeGeneric(_ x: Tensor, layout: QuantizationLayout, scale: [Float], zeroPoint: [Float]) -> [Float] {
        let xv = floatValues(x)
        var y = [Float](repeating: 0, count: xv.count)
        let hasZero = !zeroPoint.isEmpty
        let wide = x.dtype == .int32
        layout.forEach { i, k in
            let z = hasZero ? zeroPoint[k] : 0
            if wide {
                y[i] = Float((Double(xv[i]) - Double(z)) * Double(scale[k]))
            } else {
                y[i] = (xv[i] - z) * scale[k]
            }
        }
        return y
    }

    /// DynamicQuantizeLinear's parameters for data spanning `[minValue, maxValue]` (uint8):
    /// the range is widened to include 0, `scale = (max - min) / 255` (1 when the range is
    /// empty) and `zero_point = round_half_even(clamp(0 - min / scale, 0, 255))` — the ONNX
    /// operator's formula, in float32.
    public static func dynamicParameters(minValue: Float, maxValue: Float) -> (scale: Float, zeroPoint: UInt8) {
        let hi = max(0, maxValue), lo = min(0, minValue)
        let scale: Float = (hi == lo ? 1 : hi - lo) / 255
        let initial: Float = 0 - lo / scale
        let clamped = min(max(initial, 0), 255)
        return (scale, UInt8(clamped.rounded(.toNearestOrEven)))
    }
}

/// Streaming kernels of calibration and the quality report (CKernels, AVX2 where the CPU has it,
/// the same bits either way).
public enum QuantizationKernels {
    /// QuantizeLinear then DequantizeLinear of `count` floats into `out` (when given): NaN → 0,
    /// round(clamp(x / scale, lo, hi)) · scale, ties to even; returns (Σ x², Σ (x − out)²),
    /// the first count − count % 8 values summed in eight float lanes added in double, then the
    /// rest one by one in double.
    public static func fakeQuantize(_ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>?, count: Int,
                                    scale: Float, lo: Float, hi: Float) -> (signal: Double, noise: Double) {
        var sums: (Double, Double) = (0, 0)
        withUnsafeMutablePointer(to: &sums) { p in
            p.withMemoryRebound(to: Double.self, capacity: 2) { ck_fake_quantize(x, out, count, scale, lo, hi, $0) }
        }
        return sums
    }

    /// The smallest and largest of `count` floats, NaN ignored ((+inf, −inf) when there are none).
    public static func minMax(_ x: UnsafePointer<Float>, count: Int) -> (min: Float, max: Float) {
        var out: (Float, Float) = (0, 0)
        withUnsafeMutablePointer(to: &out) { p in p.withMemoryRebound(to: Float.self, capacity: 2) { ck_min_max(x, count, $0) } }
        return out
    }
}

/// Integer matrix multiply and convolution for MatMulInteger, ConvInteger, QLinearMatMul and
/// QLinearConv: operands are Int32 with their zero points already subtracted, products
/// accumulate in Int32 (wrapping, as the int32 accumulators of ONNX Runtime and NumPy do).
/// Written for exactness, not speed.
public enum IntegerKernels {
    /// C[m×n] = A[m×k] · B[k×n], row-major, contiguous.
    public static func gemm(m: Int, n: Int, k: Int, a: UnsafePointer<Int32>, b: UnsafePointer<Int32>, c: UnsafeMutablePointer<Int32>) {
        for i in 0..<m {
            let row = c + i * n
            for j in 0..<n { row[j] = 0 }
            for p in 0..<k {
                let av = a[i * k + p]
                if av == 0 { continue }
                let brow = b + p * n
                for j in 0..<n { row[j] = row[j] &+ av &* brow[j] }
            }
        }
    }

    /// Y[n, m, out…] = Σ_{c, kpos} X[n, g·C/G + c, in…] · W[m, c, kpos] with zero padding (`WindowGeometry` gives the window positions), as an
    /// im2col over each image and group followed by `gemm`.
    /// - Parameters:
    ///   - x: `[N, C, input…]`; w: `[M, C/group, kernel…]`.
    /// - Returns: `[N, M, output…]` flattened.
    public static func conv(x: [Int32], batch: Int, channels: Int, w: [Int32], outChannels: Int, group: Int, geometry g: WindowGeometry) -> [Int32] {
        let rank = g.input.count
        let inSize = g.input.reduce(1, *), outSize = g.output.reduce(1, *), kSize = g.kernel.reduce(1, *)
        let cPerGroup = channels / group, mPerGroup = outChannels / group
        let rows = cPerGroup * kSize
        var y = [Int32](repeating: 0, count: batch * outChannels * outSize)
        var col = [Int32](repeating: 0, count: rows * outSize)
        // Offsets of every kernel position and output position along each axis.
        var kIndex = [Int](repeating: 0, count: rank), oIndex = [Int](repeating: 0, count: rank)
        for n in 0..<batch {
            for grp in 0..<group {
                // im2col: col[c·kSize + kpos, opos] = X[n, grp·cPerGroup + c, opos·stride − pad + kpos·dilation]
                for c in 0..<cPerGroup {
                    let plane = (n * channels + grp * cPerGroup + c) * inSize
                    for kp in 0..<kSize {
                        var rem = kp
                        for d in stride(from: rank - 1, through: 0, by: -1) { kIndex[d] = rem % g.kernel[d]; rem /= g.kernel[d] }
                        let colRow = (c * kSize + kp) * outSize
                        for op in 0..<outSize {
                            var r = op
                            for d in stride(from: rank - 1, through: 0, by: -1) { oIndex[d] = r % g.output[d]; r /= g.output[d] }
                            var offset = 0, inside = true
                            for d in 0..<rank {
                                let pos = oIndex[d] * g.strides[d] - g.padsBegin[d] + kIndex[d] * g.dilations[d]
                                if pos < 0 || pos >= g.input[d] { inside = false; break }
                                offset = offset * g.input[d] + pos
                            }
                            col[colRow + op] = inside ? x[plane + offset] : 0
                        }
                    }
                }
                w.withUnsafeBufferPointer { wp in
                    col.withUnsafeBufferPointer { cp in
                        y.withUnsafeMutableBufferPointer { yp in
                            gemm(m: mPerGroup, n: outSize, k: rows, a: wp.baseAddress! + grp * mPerGroup * rows,
                                 b: cp.baseAddress!, c: yp.baseAddress! + (n * outChannels + grp * mPerGroup) * outSize)
                        }
                    }
                }
            }
        }
        return y
    }
}
