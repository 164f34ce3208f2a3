import Foundation

// Elementwise compute loops: map over one tensor, zip two or three broadcast tensors.
//
// The element function is a value of a type conforming to `UnaryElementFunction` /
// `BinaryElementFunction` rather than a closure: the loops are generic and `@inlinable`, so a
// caller's function type is specialized into a plain pointer loop that the compiler inlines
// and vectorizes (a closure captured by another closure is not reliably inlined). The same-shape
// and scalar/channel-broadcast cases are tight inner loops over contiguous rows (see
// `BroadcastLoop`); large outputs are split across threads with `Parallel`. Nothing is
// allocated per element.

/// A function applied to each element by `Tensor.mapped(_:into:)`.
public protocol UnaryElementFunction {
    associatedtype Input
    associatedtype Output
    func callAsFunction(_ x: Input) -> Output
}

/// A function applied to each pair of broadcast elements by `Tensor.broadcasting(_:_:_:into:)`.
public protocol BinaryElementFunction {
    associatedtype Left
    associatedtype Right
    associatedtype Output
    func callAsFunction(_ a: Left, _ b: Right) -> Output
}

/// A closure as an element function (for code off the hot path; closures are not inlined).
public struct UnaryClosure<Input, Output>: UnaryElementFunction {
    public let body: (Input) -> Output
    @inlinable public init(_ body: @escaping (Input) -> Output) { self.body = body }
    @inlinable public func callAsFunction(_ x: Input) -> Output { body(x) }
}

public struct BinaryClosure<Left, Right, Output>: BinaryElementFunction {
    public let body: (Left, Right) -> Output
    @inlinable public init(_ body: @escaping (Left, Right) -> Output) { self.body = body }
    @inlinable public func callAsFunction(_ a: Left, _ b: Right) -> Output { body(a, b) }
}

/// Work (elements) below which a loop runs on the calling thread.
@usableFromInline let elementwiseParallelThreshold = 1 << 16

extension Tensor {
    /// A tensor of this shape whose element i is `f(self[i])`; `F.Input` must match this
    /// tensor's element size and `F.Output` that of `dtype`.
    @inlinable
    public func mapped<F: UnaryElementFunction>(_ f: F, into dtype: DType) -> Tensor {
        var out = Tensor(uninitialized: dtype, shape: shape)
        let n = count
        withUnsafeBufferPointer(as: F.Input.self) { src in
            out.withUnsafeMutableBufferPointer(as: F.Output.self) { dst in
                let s = src.baseAddress!, d = dst.baseAddress!
                Parallel.forRanges(count: n, minimumWork: elementwiseParallelThreshold) { r in
                    for i in r { d[i] = f(s[i]) }
                }
            }
        }
        return out
    }

    /// A tensor of this shape whose element i is `f(self[i])` (closure form).
    @inlinable
    public func mapped<T, R>(_: T.Type, into dtype: DType, _: R.Type, _ f: @escaping (T) -> R) -> Tensor {
        mapped(UnaryClosure(f), into: dtype)
    }

    /// `f(a, b)` over the broadcast shape of `a` and `b` (NumPy multidirectional broadcasting).
    /// - Throws: `BroadcastError` when the shapes do not broadcast.
    @inlinable
    public static func broadcasting<F: BinaryElementFunction>(_ a: Tensor, _ b: Tensor, _ f: F, into dtype: DType) throws -> Tensor {
        let shape = a.shape == b.shape ? a.shape : try Broadcast.checkedShape([a.shape, b.shape])
        var out = Tensor(uninitialized: dtype, shape: shape)
        let loop = BroadcastLoop(outShape: shape, operands: [a.shape, b.shape])
        let (sa, sb, _) = loop.steps
        a.withUnsafeBufferPointer(as: F.Left.self) { pa in
            b.withUnsafeBufferPointer(as: F.Right.self) { pb in
                out.withUnsafeMutableBufferPointer(as: F.Output.self) { po in
                    let x = pa.baseAddress!, y = pb.baseAddress!, z = po.baseAddress!
                    Parallel.forRanges(count: loop.count, minimumWork: elementwiseParallelThreshold) { range in
                        var it = loop.segments(range)
                        while let seg = it.next() {
                            let xs = x + seg.offsets.0, ys = y + seg.offsets.1, zs = z + seg.out, n = seg.n
                            if sa == 1 && sb == 1 {
                                for i in 0..<n { zs[i] = f(xs[i], ys[i]) }
                            } else if sa == 1 {
                                let v = ys[0]
                                for i in 0..<n { zs[i] = f(xs[i], v) }
                            } else if sb == 1 {
                                let u = xs[0]
                                for i in 0..<n { zs[i] = f(u, ys[i]) }
                            } else {
                                let r = f(xs[0], ys[0])
                                for i in 0..<n { zs[i] = r }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// `f(a, b)` over the broadcast shape (closure form).
    @inlinable
    public static func broadcasting<A, B, R>(_ a: Tensor, _ b: Tensor, _: A.Type, _: B.Type, into dtype: DType, _: R.Type,
                                             _ f: @escaping (A, B) -> R) throws -> Tensor {
        try broadcasting(a, b, BinaryClosure(f), into: dtype)
    }

    /// `f(a, b, c)` over the broadcast shape of three tensors.
    @inlinable
    public static func broadcasting<A, B, C, R>(_ a: Tensor, _ b: Tensor, _ c: Tensor, _: A.Type, _: B.Type, _: C.Type,
                                                into dtype: DType, _: R.Type, _ f: (A, B, C) -> R) throws -> Tensor {
        let shape = try Broadcast.checkedShape([a.shape, b.shape, c.shape])
        var out = Tensor(uninitialized: dtype, shape: shape)
        let loop = BroadcastLoop(outShape: shape, operands: [a.shape, b.shape, c.shape])
        let st = loop.steps
        a.withUnsafeBufferPointer(as: A.self) { pa in
            b.withUnsafeBufferPointer(as: B.self) { pb in
                c.withUnsafeBufferPointer(as: C.self) { pc in
                    out.withUnsafeMutableBufferPointer(as: R.self) { po in
                        let x = pa.baseAddress!, y = pb.baseAddress!, w = pc.baseAddress!, z = po.baseAddress!
                        Parallel.forRanges(count: loop.count, minimumWork: elementwiseParallelThreshold) { range in
                            var it = loop.segments(range)
                            while let seg = it.next() {
                                let xs = x + seg.offsets.0, ys = y + seg.offsets.1, ws = w + seg.offsets.2, zs = z + seg.out
                                for i in 0..<seg.n { zs[i] = f(xs[i &* st.0], ys[i &* st.1], ws[i &* st.2]) }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// NumPy's `where(condition, a, b)`: element-wise choice between two tensors of one dtype,
    /// over the broadcast shape of all three. Works on the bytes, so any byte-sized dtype is
    /// supported. `condition` must be bool.
    public static func selecting(_ condition: Tensor, _ a: Tensor, _ b: Tensor) throws -> Tensor {
        precondition(condition.dtype == .bool && a.dtype == b.dtype)
        func run<T>(_: T.Type) throws -> Tensor {
            try broadcasting(condition, a, b, UInt8.self, T.self, T.self, into: a.dtype, T.self) { c, x, y in c != 0 ? x : y }
        }
        switch a.dtype.size {
        case 1: return try run(UInt8.self)
        case 2: return try run(UInt16.self)
        case 4: return try run(UInt32.self)
        case 8: return try run(UInt64.self)
        case 16: return try run(SIMD2<UInt64>.self)
        default: throw ElementTypeError("Where does not support \(a.dtype) tensors")
        }
    }
}

/// An operation that does not support an element type.
public struct ElementTypeError: Error, CustomStringConvertible {
    public let description: String
    public init(_ message: String) { description = message }
}

// MARK: - Scalar arithmetic with ONNX semantics

/// Element types with the arithmetic of ONNX's binary operators.
///
/// Integer semantics follow the ONNX reference (NumPy) and ONNX Runtime: results wrap on
/// overflow; `Div` truncates toward zero (`test_div_int32_trunc`: -3 / 2 = -1); division or
/// remainder by zero gives 0 instead of trapping. Floating types follow IEEE 754.
public protocol ArithmeticScalar: TensorScalar, Comparable {
    static func add(_ a: Self, _ b: Self) -> Self
    static func subtract(_ a: Self, _ b: Self) -> Self
    static func multiply(_ a: Self, _ b: Self) -> Self
    /// a / b; integers truncate toward zero, x / 0 = 0.
    static func divide(_ a: Self, _ b: Self) -> Self
    /// The remainder with the sign of the divisor (Python's `%`, ONNX `Mod` with fmod = 0):
    /// a - floor(a / b)·b.
    static func floorRemainder(_ a: Self, _ b: Self) -> Self
    /// The remainder with the sign of the dividend (C `fmod`, ONNX `Mod` with fmod = 1):
    /// a - trunc(a / b)·b.
    static func truncatingRemainder(_ a: Self, _ b: Self) -> Self
    /// a raised to b; for integers, exact repeated multiplication (wrapping); a negative
    /// exponent gives trunc(1 / a^|b|).
    static func power(_ a: Self, _ b: Self) -> Self
    /// The larger of a and b; NaN if either is NaN (NumPy `maximum`).
    static func maximum(_ a: Self, _ b: Self) -> Self
    /// The smaller of a and b; NaN if either is NaN (NumPy `minimum`).
    static func minimum(_ a: Self, _ b: Self) -> Self
    /// -a (wrapping for integers; unsigned types wrap to 2^n - a).
    static func negate(_ a: Self) -> Self
    /// |a| (wrapping: |Int.min| = Int.min as in NumPy).
    static func absolute(_ a: Self) -> Self
    /// -1, 0 or 1 by the sign of a; NaN stays NaN.
    static func signum(_ a: Self) -> Self
    static var zero: Self { get }
    static var one: Self { get }
    /// The value as a Double (exact for all but 64-bit integers beyond 2^53).
    var doubleValue: Double { get }
    /// A value from a Double: floating types round to nearest, integers truncate toward zero
    /// and wrap modulo 2^n (NaN becomes 0).
    init(fromDouble: Double)
}

extension ArithmeticScalar where Self: FixedWidthInteger {
    @inlinable public static func add(_ a: Self, _ b: Self) -> Self { a &+ b }
    @inlinable public static func subtract(_ a: Self, _ b: Self) -> Self { a &- b }
    @inlinable public static func multiply(_ a: Self, _ b: Self) -> Self { a &* b }
    @inlinable public static func divide(_ a: Self, _ b: Self) -> Self {
        b == 0 ? 0 : a.dividedReportingOverflow(by: b).partialValue
    }
    @inlinable public static func truncatingRemainder(_ a: Self, _ b: Self) -> Self {
        b == 0 ? 0 : a.remainderReportingOverflow(dividingBy: b).partialValue
    }
    @inlinable public static func floorRemainder(_ a: Self, _ b: Self) -> Self {
        let r = truncatingRemainder(a, b)
        return r != 0 && (r < 0) != (b < 0) ? r &+ b : r
    }
    @inlinable public static func power(_ a: Self, _ b: Self) -> Self {
        if b < 0 {
            // trunc(1 / a^|b|): only ±1 have a nonzero result.
            if a == 1 { return 1 }
            if Self.isSigned && a == 0 &- 1 { return b & 1 == 0 ? 1 : a }
            return 0
        }
        var result: Self = 1, base = a, e = b
        while e > 0 {
            if e & 1 == 1 { result = result &* base }
            base = base &* base
            e >>= 1
        }
        return result
    }
    @inlinable public static func maximum(_ a: Self, _ b: Self) -> Self { a > b ? a : b }
    @inlinable public static func minimum(_ a: Self, _ b: Self) -> Self { a < b ? a : b }
    @inlinable public static func negate(_ a: Self) -> Self { 0 &- a }
    @inlinable public static func absolute(_ a: Self) -> Self { a < 0 ? 0 &- a : a }
    @inlinable public static func signum(_ a: Self) -> Self { a > 0 ? 1 : (a < 0 ? 0 &- 1 : 0) }
    @inlinable public static var one: Self { 1 }
    @inlinable public var doubleValue: Double { Double(self) }
    @inlinable public init(fromDouble d: Double) {
        if d.isNaN { self = 0; return }
        let t = d.rounded(.towardZero)
        if t >= -9.2233720368547758e18 && t < 9.2233720368547758e18 {
            self = Self(truncatingIfNeeded: Int64(t))
        } else if t >= 0 && t < 1.8446744073709552e19 {
            self = Self(truncatingIfNeeded: UInt64(t))
        } else {
            self = t > 0 ? Self.max : Self.min
        }
    }
}

/// Floating element types with the elementary functions the activations use, computed in the
/// type itself (float32 ops call the `f`-suffixed C functions).
public protocol FloatingScalar: ArithmeticScalar, BinaryFloatingPoint {
    static func exp(_ x: Self) -> Self
    static func expm1(_ x: Self) -> Self
    static func log(_ x: Self) -> Self
    static func log1p(_ x: Self) -> Self
    static func tanh(_ x: Self) -> Self
    static func erf(_ x: Self) -> Self
    static func sqrt(_ x: Self) -> Self
    static func pow(_ x: Self, _ y: Self) -> Self
    static func fmod(_ x: Self, _ y: Self) -> Self
}

extension ArithmeticScalar where Self: FloatingScalar {
    @inlinable public static func add(_ a: Self, _ b: Self) -> Self { a + b }
    @inlinable public static func subtract(_ a: Self, _ b: Self) -> Self { a - b }
    @inlinable public static func multiply(_ a: Self, _ b: Self) -> Self { a * b }
    @inlinable public static func divide(_ a: Self, _ b: Self) -> Self { a / b }
    @inlinable public static func truncatingRemainder(_ a: Self, _ b: Self) -> Self { fmod(a, b) }
    @inlinable public static func floorRemainder(_ a: Self, _ b: Self) -> Self {
        // NumPy's float mod: fmod, moved into the divisor's sign; a zero result takes b's sign.
        let r = fmod(a, b)
        if r != 0 { return (r < 0) != (b < 0) ? r + b : r }
        return b < 0 ? -0.0 : 0.0
    }
    @inlinable public static func power(_ a: Self, _ b: Self) -> Self { pow(a, b) }
    @inlinable public static func maximum(_ a: Self, _ b: Self) -> Self {
        a.isNaN || b.isNaN ? .nan : (a > b ? a : b)
    }
    @inlinable public static func minimum(_ a: Self, _ b: Self) -> Self {
        a.isNaN || b.isNaN ? .nan : (a < b ? a : b)
    }
    @inlinable public static func negate(_ a: Self) -> Self { -a }
    @inlinable public static func absolute(_ a: Self) -> Self { Swift.abs(a) }
    @inlinable public static func signum(_ a: Self) -> Self { a > 0 ? 1 : (a < 0 ? -1 : (a.isNaN ? a : 0)) }
    @inlinable public static var one: Self { 1 }
    @inlinable public var doubleValue: Double { Double(self) }
    @inlinable public init(fromDouble d: Double) { self.init(d) }
}

extension Float: FloatingScalar {
    @inlinable public static func exp(_ x: Float) -> Float { FloatExp.exp(x) }
    @inlinable public static func expm1(_ x: Float) -> Float { Foundation.expm1f(x) }
    @inlinable public static func log(_ x: Float) -> Float { Foundation.logf(x) }
    @inlinable public static func log1p(_ x: Float) -> Float { Foundation.log1pf(x) }
    @inlinable public static func tanh(_ x: Float) -> Float { Foundation.tanhf(x) }
    @inlinable public static func erf(_ x: Float) -> Float { Foundation.erff(x) }
    @inlinable public static func sqrt(_ x: Float) -> Float { x.squareRoot() }
    @inlinable public static func pow(_ x: Float, _ y: Float) -> Float { Foundation.powf(x, y) }
    @inlinable public static func fmod(_ x: Float, _ y: Float) -> Float { Foundation.fmodf(x, y) }
}

extension Double: FloatingScalar {
    @inlinable public static func exp(_ x: Double) -> Double { Foundation.exp(x) }
    @inlinable public static func expm1(_ x: Double) -> Double { Foundation.expm1(x) }
    @inlinable public static func log(_ x: Double) -> Double { Foundation.log(x) }
    @inlinable public static func log1p(_ x: Double) -> Double { Foundation.log1p(x) }
    @inlinable public static func tanh(_ x: Double) -> Double { Foundation.tanh(x) }
    @inlinable public static func erf(_ x: Double) -> Double { Foundation.erf(x) }
    @inlinable public static func sqrt(_ x: Double) -> Double { x.squareRoot() }
    @inlinable public static func pow(_ x: Double, _ y: Double) -> Double { Foundation.pow(x, y) }
    @inlinable public static func fmod(_ x: Double, _ y: Double) -> Double { Foundation.fmod(x, y) }
}

/// float16 arithmetic rounds each result from float32, which is exact for +, -, ·, / (float32
/// holds more than twice float16's precision, so the double rounding is innocuous).
extension Float16: FloatingScalar {
    @inlinable public static func exp(_ x: Float16) -> Float16 { Float16(Foundation.expf(Float(x))) }
    @inlinable public static func expm1(_ x: Float16) -> Float16 { Float16(Foundation.expm1f(Float(x))) }
    @inlinable public static func log(_ x: Float16) -> Float16 { Float16(Foundation.logf(Float(x))) }
    @inlinable public static func log1p(_ x: Float16) -> Float16 { Float16(Foundation.log1pf(Float(x))) }
    @inlinable public static func tanh(_ x: Float16) -> Float16 { Float16(Foundation.tanhf(Float(x))) }
    @inlinable public static func erf(_ x: Float16) -> Float16 { Float16(Foundation.erff(Float(x))) }
    @inlinable public static func sqrt(_ x: Float16) -> Float16 { Float16(Float(x).squareRoot()) }
    @inlinable public static func pow(_ x: Float16, _ y: Float16) -> Float16 { Float16(Foundation.powf(Float(x), Float(y))) }
    @inlinable public static func fmod(_ x: Float16, _ y: Float16) -> Float16 { Float16(Foundation.fmodf(Float(x), Float(y))) }
}

extension Int8: ArithmeticScalar {}
extension UInt8: ArithmeticScalar {}
extension Int16: ArithmeticScalar {}
extension UInt16: ArithmeticScalar {}
extension Int32: ArithmeticScalar {}
extension UInt32: ArithmeticScalar {}
extension Int64: ArithmeticScalar {}
extension UInt64: ArithmeticScalar {}

/// e^x for float32 without a libm call, so loops over it vectorize (Cephes `expf`, the method
/// MLAS and Eigen use): x = n·ln 2 + r with |r| ≤ ln 2 / 2 (ln 2 split in two parts so n·ln 2
/// is exact), e^r by its degree-7 Taylor-like minimax polynomial, then scaling by 2^n in two
/// steps so results between 2^-149 and 2^-126 come out subnormal rather than zero.
/// Relative error ≤ 2 ulp over the whole range (checked against Double `exp` in
/// ElementwiseTests); e^x overflows to +inf above ≈ 88.72 and is 0 below ≈ -103.97; NaN stays NaN.
public enum FloatExp {
    @inlinable @inline(__always)
    public static func exp(_ x: Float) -> Float {
        let isNaN = x != x
        var v = isNaN ? 0 : x
        v = v < -104 ? -104 : v
        v = v > 89 ? 89 : v
        // Round to nearest by adding and subtracting 1.5·2^23 (|v·log2 e| < 2^22): `rounded()`
        // becomes a libm call on baseline x86-64 (no SSE4.1 roundps) and stops vectorization.
        let magic: Float = 12_582_912
        let n = (v * 1.44269504088896341 + magic) - magic
        let r = (v - n * 0.693359375) - n * -2.12194440e-4
        var p: Float = 1.9875691500e-4
        p = p * r + 1.3981999507e-3
        p = p * r + 8.3334519073e-3
        p = p * r + 4.1665795894e-2
        p = p * r + 1.6666665459e-1
        p = p * r + 5.0000001201e-1
        let er = p * r * r + r + 1
        let k = Int32(n)
        let k1 = k >> 1, k2 = k - (k >> 1)
        let s1 = Float(bitPattern: UInt32(bitPattern: (k1 + 127) << 23))
        let s2 = Float(bitPattern: UInt32(bitPattern: (k2 + 127) << 23))
        let y = er * s1 * s2
        return isNaN ? x : y
    }
}
