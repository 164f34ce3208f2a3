import Foundation
import ModelIR
import TensorCore

// Unary math and activations. Each function is a small struct generic over the element type, so
// one definition serves float32 and float64 (float16 and bfloat16 are computed in float32 and
// rounded once); formulas and defaults are those of the ONNX operator specs
// (https://onnx.ai/onnx/operators/), checked by the backend node tests in
// Tests/Interop/test_elementwise_ops.py.

/// A function of one floating-point value.
protocol FloatFunction {
    func callAsFunction<T: FloatingScalar>(_ x: T) -> T
}

/// `F` at one element type, as TensorCore's loops take it.
struct FloatLift<F: FloatFunction, T: FloatingScalar>: UnaryElementFunction {
    let f: F
    @inline(__always) func callAsFunction(_ x: T) -> T { f(x) }
}

struct NumericLift<F: NumericFunction, T: ArithmeticScalar>: UnaryElementFunction {
    let f: F
    @inline(__always) func callAsFunction(_ x: T) -> T { f(x) }
}

/// A function of one value of any arithmetic type (integers included).
protocol NumericFunction {
    func callAsFunction<T: ArithmeticScalar>(_ x: T) -> T
}

private struct NumericVisit<F: NumericFunction>: ArithmeticTypeVisitor {
    let x: Tensor, f: F
    func visit<T: ArithmeticScalar>(_: T.Type) throws -> Tensor { x.mapped(NumericLift<F, T>(f: f), into: x.dtype) }
}

enum UnaryMap {
    /// `f` over a floating tensor: float32 and float64 natively; float16 and bfloat16 through
    /// float32, rounded once to nearest even.
    static func float<F: FloatFunction>(_ x: Tensor, _ f: F, _ ctx: KernelContext) throws -> Tensor {
        switch x.dtype {
        case .float32: return x.mapped(FloatLift<F, Float>(f: f), into: .float32)
        case .float64: return x.mapped(FloatLift<F, Double>(f: f), into: .float64)
        case .float16, .bfloat16: return x.converted(to: .float32).mapped(FloatLift<F, Float>(f: f), into: .float32).converted(to: x.dtype)
        default: throw ctx.unsupportedElementType(x.dtype)
        }
    }

    /// `f` over a tensor of any arithmetic type (floats as in `float`).
    static func numeric<F: NumericFunction>(_ x: Tensor, _ f: F, _ ctx: KernelContext) throws -> Tensor {
        if x.dtype == .float16 || x.dtype == .bfloat16 {
            return x.converted(to: .float32).mapped(NumericLift<F, Float>(f: f), into: .float32).converted(to: x.dtype)
        }
        guard let y = try ElementDispatch.arithmetic(x.dtype, NumericVisit(x: x, f: f)) else { throw ctx.unsupportedElementType(x.dtype) }
        return y
    }
}

// MARK: - Functions

/// e^x
struct ExpFunction: FloatFunction { func callAsFunction<T: FloatingScalar>(_ x: T) -> T { T.exp(x) } }
/// ln x (NaN for x < 0, -inf at 0)
struct LogFunction: FloatFunction { func callAsFunction<T: FloatingScalar>(_ x: T) -> T { T.log(x) } }
/// √x (NaN for x < 0; √-0 = -0)
struct SqrtFunction: FloatFunction { func callAsFunction<T: FloatingScalar>(_ x: T) -> T { T.sqrt(x) } }
/// 1 / x (±inf at ±0)
struct ReciprocalFunction: FloatFunction { func callAsFunction<T: FloatingScalar>(_ x: T) -> T { 1 / x } }
struct FloorFunction: FloatFunction { func callAsFunction<T: FloatingScalar>(_ x: T) -> T { x.rounded(.down) } }
struct CeilFunction: FloatFunction { func callAsFunction<T: FloatingScalar>(_ x: T) -> T { x.rounded(.up) } }
/// Round half to even (ONNX Round: 2.5 → 2, -1.5 → -2).
struct RoundFunction: FloatFunction { func callAsFunction<T: FloatingScalar>(_ x: T) -> T { x.rounded(.toNearestOrEven) } }
struct ErfFunction: FloatFunction { func callAsFunction<T: FloatingScalar>(_ x: T) -> T { T.erf(x) } }
struct TanhFunction: FloatFunction { func callAsFunction<T: FloatingScalar>(_ x: T) -> T { T.tanh(x) } }

/// σ(x) = 1 / (1 + e^-x), evaluated with e = e^-|x| as 1 / (1 + e) for x ≥ 0 and e / (1 + e)
/// for x < 0, so the exponential never overflows (and the select keeps the loop vectorizable).
struct SigmoidFunction: FloatFunction {
    func callAsFunction<T: FloatingScalar>(_ x: T) -> T {
        let e = T.exp(-Swift.abs(x))
        let r = 1 / (1 + e)
        return x >= 0 ? r : e * r
    }
}

/// softplus(x) = ln(1 + e^x), as x + ln(1 + e^-x) for x > 0 (no overflow for large x).
struct SoftplusFunction: FloatFunction {
    func callAsFunction<T: FloatingScalar>(_ x: T) -> T { x > 0 ? x + T.log1p(T.exp(-x)) : T.log1p(T.exp(x)) }
}

/// softsign(x) = x / (1 + |x|)
struct SoftsignFunction: FloatFunction {
    func callAsFunction<T: FloatingScalar>(_ x: T) -> T { x / (1 + Swift.abs(x)) }
}

/// mish(x) = x · tanh(softplus(x))
struct MishFunction: FloatFunction {
    func callAsFunction<T: FloatingScalar>(_ x: T) -> T { x * T.tanh(SoftplusFunction()(x)) }
}

/// Trigonometric and hyperbolic functions, computed in Double and rounded to the element type.
struct DoubleFunction: FloatFunction {
    let f: (Double) -> Double
    func callAsFunction<T: FloatingScalar>(_ x: T) -> T { T(f(Double(x))) }
}

/// relu(x) = max(0, x); NaN stays NaN (NumPy `maximum`, as the reference evaluator).
struct ReluFunction: NumericFunction {
    func callAsFunction<T: ArithmeticScalar>(_ x: T) -> T { x < T.zero ? T.zero : x }
}

struct AbsFunction: NumericFunction { func callAsFunction<T: ArithmeticScalar>(_ x: T) -> T { T.absolute(x) } }
struct NegFunction: NumericFunction { func callAsFunction<T: ArithmeticScalar>(_ x: T) -> T { T.negate(x) } }
struct SignFunction: NumericFunction { func callAsFunction<T: ArithmeticScalar>(_ x: T) -> T { T.signum(x) } }

/// leaky_relu(x) = x for x ≥ 0, α·x otherwise (α default 0.01).
struct LeakyReluFunction: FloatFunction {
    let alpha: Float
    func callAsFunction<T: FloatingScalar>(_ x: T) -> T { x < 0 ? T(alpha) * x : x }
}

/// elu(x) = x for x ≥ 0, α·(e^x − 1) otherwise (α default 1).
struct EluFunction: FloatFunction {
    let alpha: Float
    func callAsFunction<T: FloatingScalar>(_ x: T) -> T { x < 0 ? T(alpha) * T.expm1(x) : x }
}

/// celu(x) = max(0, x) + min(0, α·(e^(x/α) − 1)) (α default 1).
struct CeluFunction: FloatFunction {
    let alpha: Float
    func callAsFunction<T: FloatingScalar>(_ x: T) -> T { x < 0 ? T(alpha) * T.expm1(x / T(alpha)) : x }
}

/// selu(x) = γ·x for x > 0, γ·α·(e^x − 1) otherwise, with the defaults of the SELU paper
/// (α = 1.67326319217681884765625, γ = 1.05070102214813232421875, float32 values).
struct SeluFunction: FloatFunction {
    let alpha: Float, gamma: Float
    func callAsFunction<T: FloatingScalar>(_ x: T) -> T { x > 0 ? T(gamma) * x : T(gamma) * T(alpha) * T.expm1(x) }
}

/// hard_sigmoid(x) = max(0, min(1, α·x + β)) (α default 0.2, β default 0.5).
struct HardSigmoidFunction: FloatFunction {
    let alpha: Float, beta: Float
    func callAsFunction<T: FloatingScalar>(_ x: T) -> T {
        let y = T(alpha) * x + T(beta)
        return y.isNaN ? y : Swift.max(0, Swift.min(1, y))
    }
}

/// hard_swish(x) = x · max(0, min(1, x/6 + 1/2))
struct HardSwishFunction: FloatFunction {
    func callAsFunction<T: FloatingScalar>(_ x: T) -> T {
        let y = x / 6 + T(0.5)
        return y.isNaN ? y : x * Swift.max(0, Swift.min(1, y))
    }
}

/// gelu(x) = x·Φ(x) = ½x(1 + erf(x/√2)); with approximate = "tanh",
/// ½x(1 + tanh(√(2/π)·(x + 0.044715x³))) (Hendrycks & Gimpel 2016; ONNX Gelu-20).
struct GeluFunction: FloatFunction {
    let tanhApproximation: Bool
    func callAsFunction<T: FloatingScalar>(_ x: T) -> T {
        if tanhApproximation {
            let k = T(0.7978845608028654)  // √(2/π)
            return T(0.5) * x * (1 + T.tanh(k * (x + T(0.044715) * x * x * x)))
        }
        return T(0.5) * x * (1 + T.erf(x * T(0.7071067811865476)))
    }
}

/// thresholded_relu(x) = x for x > α, 0 otherwise (α default 1).
struct ThresholdedReluFunction: FloatFunction {
    let alpha: Float
    func callAsFunction<T: FloatingScalar>(_ x: T) -> T { x > T(alpha) ? x : (x.isNaN ? x : 0) }
}

/// shrink(x) = x + bias for x < −λ, x − bias for x > λ, else 0 (λ default 0.5, bias 0).
struct ShrinkFunction: NumericFunction {
    let lambda: Float, bias: Float
    func callAsFunction<T: ArithmeticScalar>(_ x: T) -> T {
        let d = x.doubleValue, l = Double(lambda), b = Double(bias)
        if d < -l { return T(fromDouble: d + b) }
        if d > l { return T(fromDouble: d - b) }
        return T.zero
    }
}

// MARK: - Registration

extension StandardOps {
    static func registerUnaryMath(_ r: OpRegistry) {
        floatUnary(r, "Exp", vectorized: .exp) { _ in ExpFunction() }
        floatUnary(r, "Log") { _ in LogFunction() }
        floatUnary(r, "Sqrt") { _ in SqrtFunction() }
        floatUnary(r, "Reciprocal") { _ in ReciprocalFunction() }
        floatUnary(r, "Floor") { _ in FloorFunction() }
        floatUnary(r, "Ceil") { _ in CeilFunction() }
        floatUnary(r, "Round", since: 11) { _ in RoundFunction() }
        floatUnary(r, "Erf", since: 9, vectorized: .erf) { _ in ErfFunction() }
        floatUnary(r, "Tanh", vectorized: .tanh) { _ in TanhFunction() }
        floatUnary(r, "Sin", since: 7) { _ in DoubleFunction(f: Foundation.sin) }
        floatUnary(r, "Cos", since: 7) { _ in DoubleFunction(f: Foundation.cos) }
        floatUnary(r, "Tan", since: 7) { _ in DoubleFunction(f: Foundation.tan) }
        floatUnary(r, "Asin", since: 7) { _ in DoubleFunction(f: Foundation.asin) }
        floatUnary(r, "Acos", since: 7) { _ in DoubleFunction(f: Foundation.acos) }
        floatUnary(r, "Atan", since: 7) { _ in DoubleFunction(f: Foundation.atan) }
        floatUnary(r, "Sinh", since: 9) { _ in DoubleFunction(f: Foundation.sinh) }
        floatUnary(r, "Cosh", since: 9) { _ in DoubleFunction(f: Foundation.cosh) }
        floatUnary(r, "Asinh", since: 9) { _ in DoubleFunction(f: Foundation.asinh) }
        floatUnary(r, "Acosh", since: 9) { _ in DoubleFunction(f: Foundation.acosh) }
        floatUnary(r, "Atanh", since: 9) { _ in DoubleFunction(f: Foundation.atanh) }
        numericUnary(r, "Abs") { _ in AbsFunction() }
        numericUnary(r, "Neg") { _ in NegFunction() }
        numericUnary(r, "Sign", since: 9) { _ in SignFunction() }
        numericUnary(r, "Shrink", since: 9) { ShrinkFunction(lambda: $0.floatAttribute("lambd", default: 0.5), bias: $0.floatAttribute("bias", default: 0)) }

        // Not: logical negation of a bool tensor.
        r.register("Not", kernel: { inputs, ctx in
            let x = try ctx.required(inputs, 0)
            guard x.dtype == .bool else { throw ctx.unsupportedElementType(x.dtype) }
            return [x.mapped(UInt8.self, into: .bool, UInt8.self) { $0 == 0 ? 1 : 0 }]
        }, infer: ElementwiseShapes.same(.bool))

        // IsNaN / IsInf: bool masks of a floating tensor.
        r.register("IsNaN", since: 9, kernel: { inputs, ctx in
            let x = try floatingInput(inputs, ctx)
            return [x.dtype == .float64 ? x.mapped(Double.self, into: .bool, Bool.self) { $0.isNaN }
                                        : x.mapped(Float.self, into: .bool, Bool.self) { $0.isNaN }]
        }, infer: ElementwiseShapes.same(.bool))
        r.register("IsInf", since: 10, kernel: { inputs, ctx in
            let x = try floatingInput(inputs, ctx)
            let pos = ctx.intAttribute("detect_positive", default: 1) != 0, neg = ctx.intAttribute("detect_negative", default: 1) != 0
            func test<T: FloatingScalar>(_ v: T) -> Bool { v.isInfinite && (v > 0 ? pos : neg) }
            return [x.dtype == .float64 ? x.mapped(Double.self, into: .bool, Bool.self, test)
                                        : x.mapped(Float.self, into: .bool, Bool.self, test)]
        }, infer: ElementwiseShapes.same(.bool))
    }

    static func registerActivations(_ r: OpRegistry) {
        numericUnary(r, "Relu") { _ in ReluFunction() }
        floatUnary(r, "Sigmoid", vectorized: .sigmoid) { _ in SigmoidFunction() }
        floatUnary(r, "Softplus") { _ in SoftplusFunction() }
        floatUnary(r, "Softsign") { _ in SoftsignFunction() }
        floatUnary(r, "Mish", since: 18) { _ in MishFunction() }
        floatUnary(r, "LeakyRelu") { LeakyReluFunction(alpha: $0.floatAttribute("alpha", default: 0.01)) }
        floatUnary(r, "Elu") { EluFunction(alpha: $0.floatAttribute("alpha", default: 1)) }
        floatUnary(r, "Celu", since: 12) { CeluFunction(alpha: $0.floatAttribute("alpha", default: 1)) }
        floatUnary(r, "Selu") {
            SeluFunction(alpha: $0.floatAttribute("alpha", default: 1.67326319217681884765625),
                         gamma: $0.floatAttribute("gamma", default: 1.05070102214813232421875))
        }
        floatUnary(r, "HardSigmoid", vectorizedWith: {
            .hardSigmoid(alpha: $0.floatAttribute("alpha", default: 0.2), beta: $0.floatAttribute("beta", default: 0.5))
        }) {
            HardSigmoidFunction(alpha: $0.floatAttribute("alpha", default: 0.2), beta: $0.floatAttribute("beta", default: 0.5))
        }
        floatUnary(r, "HardSwish", since: 14, vectorized: .hardSwish) { _ in HardSwishFunction() }
        floatUnary(r, "ThresholdedRelu", since: 10) { ThresholdedReluFunction(alpha: $0.floatAttribute("alpha", default: 1)) }
        floatUnary(r, "Gelu", since: 20) { ctx in
            let mode = ctx.node.string("approximate") ?? "none"
            guard mode == "none" || mode == "tanh" else { throw ctx.error("approximate must be \"none\" or \"tanh\", got \"\(mode)\"") }
            return GeluFunction(tanhApproximation: mode == "tanh")
        }
    }

    /// Registers a unary op over floating tensors; `make` reads the node's attributes once per run.
    /// - Parameter vectorized: a C kernel for float32 (`KernelActivation`), used instead of `make`'s
    ///   function at that type; `vectorizedWith` the same made from the node's attributes.
    static func floatUnary<F: FloatFunction>(_ r: OpRegistry, _ op: String, since: Int = 1, vectorized: KernelActivation? = nil,
                                             vectorizedWith: ((KernelContext) -> KernelActivation)? = nil,
                                             _ make: @escaping (KernelContext) throws -> F) {
        r.register(op, since: since, kernel: { inputs, ctx in
            let x = try ctx.required(inputs, 0)
            if x.dtype == .float32, let vectorized = vectorized ?? vectorizedWith?(ctx) {
                var y = Tensor(uninitialized: .float32, shape: x.shape)
                x.withUnsafeBufferPointer(as: Float.self) { xp in
                    y.withUnsafeMutableBufferPointer(as: Float.self) { yp in
                        if let xb = xp.baseAddress, let yb = yp.baseAddress { vectorized.apply(xb, into: yb, count: xp.count) }
                    }
                }
                return [y]
            }
            return [try UnaryMap.float(x, try make(ctx), ctx)]
        }, infer: { inputs, _, ctx in
            let x = try ctx.required(inputs, 0)
            guard x.dtype.isFloatingPoint else { throw ctx.unsupportedElementType(x.dtype) }
            return [x]
        })
    }

    /// Registers a unary op over tensors of any arithmetic type.
    static func numericUnary<F: NumericFunction>(_ r: OpRegistry, _ op: String, since: Int = 1,
                                                 _ make: @escaping (KernelContext) throws -> F) {
        r.register(op, since: since, kernel: { inputs, ctx in
            let x = try ctx.required(inputs, 0)
            return [try UnaryMap.numeric(x, try make(ctx), ctx)]
        }, infer: ElementwiseShapes.same())
    }

    /// Input 0 as float32 or float64 (float16/bfloat16 widened to float32).
    static func floatingInput(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.required(inputs, 0)
        switch x.dtype {
        case .float32, .float64: return x
        case .float16, .bfloat16: return x.converted(to: .float32)
        default: throw ctx.unsupportedElementType(x.dtype)
        }
    }
}
