import ModelIR
import TensorCore

// Binary and variadic elementwise operators with NumPy multidirectional broadcasting (ONNX
// Broadcasting.md): arithmetic (Add Sub Mul Div Mod Pow, Max Min Sum Mean, PRelu), comparison
// (Equal Greater GreaterOrEqual Less LessOrEqual), logic (And Or Xor) and Where. Integer
// arithmetic has NumPy's semantics (see `ArithmeticScalar`).

/// A function of two values of one arithmetic type.
protocol ArithmeticFunction {
    func callAsFunction<T: ArithmeticScalar>(_ a: T, _ b: T) -> T
}

struct AddFunction: ArithmeticFunction { func callAsFunction<T: ArithmeticScalar>(_ a: T, _ b: T) -> T { T.add(a, b) } }
struct SubFunction: ArithmeticFunction { func callAsFunction<T: ArithmeticScalar>(_ a: T, _ b: T) -> T { T.subtract(a, b) } }
struct MulFunction: ArithmeticFunction { func callAsFunction<T: ArithmeticScalar>(_ a: T, _ b: T) -> T { T.multiply(a, b) } }
struct DivFunction: ArithmeticFunction { func callAsFunction<T: ArithmeticScalar>(_ a: T, _ b: T) -> T { T.divide(a, b) } }
struct PowFunction: ArithmeticFunction { func callAsFunction<T: ArithmeticScalar>(_ a: T, _ b: T) -> T { T.power(a, b) } }
struct MaxFunction: ArithmeticFunction { func callAsFunction<T: ArithmeticScalar>(_ a: T, _ b: T) -> T { T.maximum(a, b) } }
struct MinFunction: ArithmeticFunction { func callAsFunction<T: ArithmeticScalar>(_ a: T, _ b: T) -> T { T.minimum(a, b) } }

/// Mod: fmod = 0 takes the divisor's sign (Python `%`), fmod = 1 the dividend's (C `fmod`).
struct ModFunction: ArithmeticFunction {
    let fmod: Bool
    func callAsFunction<T: ArithmeticScalar>(_ a: T, _ b: T) -> T {
        fmod ? T.truncatingRemainder(a, b) : T.floorRemainder(a, b)
    }
}

/// prelu(x, slope) = x for x ≥ 0, slope·x otherwise.
struct PReluFunction: ArithmeticFunction {
    func callAsFunction<T: ArithmeticScalar>(_ a: T, _ b: T) -> T { a < T.zero ? T.multiply(a, b) : a }
}

/// `F` at one element type, as TensorCore's loops take it.
struct ArithmeticLift<F: ArithmeticFunction, T: ArithmeticScalar>: BinaryElementFunction {
    let f: F
    @inline(__always) func callAsFunction(_ a: T, _ b: T) -> T { f(a, b) }
}

/// A predicate on two values of one comparable type.
protocol ComparisonFunction {
    func callAsFunction<T: Comparable>(_ a: T, _ b: T) -> Bool
}

struct EqualFunction: ComparisonFunction { func callAsFunction<T: Comparable>(_ a: T, _ b: T) -> Bool { a == b } }
struct GreaterFunction: ComparisonFunction { func callAsFunction<T: Comparable>(_ a: T, _ b: T) -> Bool { a > b } }
struct GreaterOrEqualFunction: ComparisonFunction { func callAsFunction<T: Comparable>(_ a: T, _ b: T) -> Bool { a >= b } }
struct LessFunction: ComparisonFunction { func callAsFunction<T: Comparable>(_ a: T, _ b: T) -> Bool { a < b } }
struct LessOrEqualFunction: ComparisonFunction { func callAsFunction<T: Comparable>(_ a: T, _ b: T) -> Bool { a <= b } }

private struct ArithmeticVisit<F: ArithmeticFunction>: ArithmeticTypeVisitor {
    let a: Tensor, b: Tensor, f: F
    func visit<T: ArithmeticScalar>(_: T.Type) throws -> Tensor { try Tensor.broadcasting(a, b, ArithmeticLift<F, T>(f: f), into: a.dtype) }
}

private struct ComparisonVisit<F: ComparisonFunction>: ComparableTypeVisitor {
    let a: Tensor, b: Tensor, f: F
    func visit<T: TensorScalar & Comparable>(_: T.Type, dtype: DType) throws -> Tensor {
        try Tensor.broadcasting(a, b, ComparisonLift<F, T>(f: f), into: .bool)
    }
}

struct ComparisonLift<F: ComparisonFunction, T: Comparable>: BinaryElementFunction {
    let f: F
    @inline(__always) func callAsFunction(_ a: T, _ b: T) -> Bool { f(a, b) }
}

enum BinaryMap {
    /// `f(a, b)` over the broadcast shape; both inputs must have one dtype, which the result keeps.
    static func arithmetic<F: ArithmeticFunction>(_ a: Tensor, _ b: Tensor, _ f: F, _ ctx: KernelContext) throws -> Tensor {
        guard a.dtype == b.dtype else {
            throw ctx.error("inputs have different element types (\(a.dtype) and \(b.dtype))")
        }
        if ElementDispatch.widens(a.dtype) {
            return try arithmetic(a.converted(to: .float32), b.converted(to: .float32), f, ctx).converted(to: a.dtype)
        }
        guard let y = try ElementDispatch.arithmetic(a.dtype, ArithmeticVisit(a: a, b: b, f: f)) else { throw ctx.unsupportedElementType(a.dtype) }
        return y
    }

    /// The bool tensor `f(a, b)` over the broadcast shape (bool inputs compare as 0/1).
    static func comparison<F: ComparisonFunction>(_ a: Tensor, _ b: Tensor, _ f: F, _ ctx: KernelContext) throws -> Tensor {
        guard a.dtype == b.dtype else {
            throw ctx.error("inputs have different element types (\(a.dtype) and \(b.dtype))")
        }
        if ElementDispatch.widens(a.dtype) { return try comparison(a.converted(to: .float32), b.converted(to: .float32), f, ctx) }
        guard let y = try ElementDispatch.comparable(a.dtype, ComparisonVisit(a: a, b: b, f: f)) else { throw ctx.unsupportedElementType(a.dtype) }
        return y
    }

    /// Logic on two bool tensors.
    static func logic(_ a: Tensor, _ b: Tensor, _ ctx: KernelContext, _ f: @escaping (Bool, Bool) -> Bool) throws -> Tensor {
        guard a.dtype == .bool else { throw ctx.unsupportedElementType(a.dtype, input: 0) }
        guard b.dtype == .bool else { throw ctx.unsupportedElementType(b.dtype, input: 1) }
        return try Tensor.broadcasting(a, b, UInt8.self, UInt8.self, into: .bool, Bool.self) { f($0 != 0, $1 != 0) }
    }

    /// `a · b` as ONNX Mul computes it: squeeze-and-excitation's x[N, C, H, W] · s[N, C, 1, 1]
    /// (either order) as vectorized rows, anything else through the broadcast loop.
    static func multiply(_ a: Tensor, _ b: Tensor, _ ctx: KernelContext) throws -> Tensor {
        if let y = Tensor.rowScaled(a, b) { return y }
        return try arithmetic(a, b, MulFunction(), ctx)
    }

    /// Inputs 0 and 1, with B aligned for legacy (opset < 7) broadcasting.
    static func operands(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> (Tensor, Tensor) {
        let a = try ctx.required(inputs, 0), b = try ctx.required(inputs, 1)
        return (a, LegacyBroadcast.aligned(b, against: a, ctx))
    }
}

extension StandardOps {
    static func registerBinaryArithmetic(_ r: OpRegistry) {
        // Opset 1–6 broadcast only with the `broadcast`/`axis` attributes; 7 on is NumPy's rule.
        for since in [1, 7] {
            arithmetic(r, "Add", since: since) { _ in AddFunction() }
            arithmetic(r, "Sub", since: since) { _ in SubFunction() }
            r.register("Mul", since: since, kernel: { inputs, ctx in
                let (a, b) = try BinaryMap.operands(inputs, ctx)
                return [try BinaryMap.multiply(a, b, ctx)]
            }, infer: ElementwiseShapes.broadcast())
            arithmetic(r, "Div", since: since) { _ in DivFunction() }
        }
        arithmetic(r, "Mod", since: 10) { ModFunction(fmod: $0.intAttribute("fmod", default: 0) != 0) }

        // Pow: the result has the base's type. Opset 12 on, the exponent may have another numeric
        // type: a floating base takes the exponent converted to its type; an integer base with a
        // floating exponent is computed in float64 and truncated back (NumPy
        // `power(a, b).astype(a.dtype)`, as the reference evaluator).
        for since in [1, 7] {
            r.register("Pow", since: since, kernel: { inputs, ctx in
                let (x, y) = try BinaryMap.operands(inputs, ctx)
                if x.dtype == y.dtype { return [try BinaryMap.arithmetic(x, y, PowFunction(), ctx)] }
                guard Tensor.isNumericType(x.dtype) else { throw ctx.unsupportedElementType(x.dtype) }
                guard Tensor.isNumericType(y.dtype) else { throw ctx.unsupportedElementType(y.dtype, input: 1) }
                if x.dtype.isFloatingPoint || !y.dtype.isFloatingPoint {
                    return [try BinaryMap.arithmetic(x, y.converted(to: x.dtype), PowFunction(), ctx)]
                }
                let z = try BinaryMap.arithmetic(x.converted(to: .float64), y.converted(to: .float64), PowFunction(), ctx)
                return [z.converted(to: x.dtype)]
            }, infer: ElementwiseShapes.broadcast())
        }

        // PRelu: slope broadcasts to X in one direction (opset 7 on); before, a 1-D slope of C
        // values is per channel (axis 1).
        r.register("PRelu", kernel: { inputs, ctx in
            let x = try ctx.required(inputs, 0)
            var slope = try ctx.required(inputs, 1)
            if !Broadcast.isUnidirectional(slope.shape, to: x.shape), slope.rank == 1, x.rank >= 2, slope.count == x.shape[1] {
                slope = slope.reshaped([slope.count] + Array(repeating: 1, count: x.rank - 2))
            }
            guard Broadcast.isUnidirectional(slope.shape, to: x.shape) else {
                throw ctx.error("slope of shape \(slope.shape) does not broadcast to the input's shape \(x.shape)")
            }
            return [try BinaryMap.arithmetic(x, slope, PReluFunction(), ctx)]
        }, infer: ElementwiseShapes.same())

        // Variadic, with broadcasting from opset 8 (same shapes before, which broadcasting accepts).
        variadic(r, "Max") { a, b, ctx in try BinaryMap.arithmetic(a, b, MaxFunction(), ctx) }
        variadic(r, "Min") { a, b, ctx in try BinaryMap.arithmetic(a, b, MinFunction(), ctx) }
        variadic(r, "Sum") { a, b, ctx in try BinaryMap.arithmetic(a, b, AddFunction(), ctx) }
        r.register("Mean", kernel: { inputs, ctx in
            let xs = inputs.compactMap { $0 }
            guard var sum = xs.first else { throw ctx.error("Mean needs at least one input") }
            for x in xs.dropFirst() { sum = try BinaryMap.arithmetic(sum, x, AddFunction(), ctx) }
            guard xs.count > 1 else { return [sum] }
            let n = Tensor(scalar: Double(xs.count)).converted(to: sum.dtype)
            return [try BinaryMap.arithmetic(sum, n, DivFunction(), ctx)]
        }, infer: ElementwiseShapes.broadcast())
    }

    static func registerComparisonAndLogic(_ r: OpRegistry) {
        for since in [1, 7] {
            comparison(r, "Equal", since: since, EqualFunction())
            comparison(r, "Greater", since: since, GreaterFunction())
            comparison(r, "Less", since: since, LessFunction())
            logic(r, "And", since: since) { $0 && $1 }
            logic(r, "Or", since: since) { $0 || $1 }
            logic(r, "Xor", since: since) { $0 != $1 }
        }
        comparison(r, "GreaterOrEqual", since: 12, GreaterOrEqualFunction())
        comparison(r, "LessOrEqual", since: 12, LessOrEqualFunction())

        // Where(condition, X, Y): X where condition is true, else Y, over the broadcast shape of all three.
        r.register("Where", since: 9, kernel: { inputs, ctx in
            let c = try ctx.required(inputs, 0), x = try ctx.required(inputs, 1), y = try ctx.required(inputs, 2)
            guard c.dtype == .bool else { throw ctx.unsupportedElementType(c.dtype, input: 0) }
            guard x.dtype == y.dtype else { throw ctx.error("X and Y have different element types (\(x.dtype) and \(y.dtype))") }
            guard x.dtype.size > 0 else { throw ctx.unsupportedElementType(x.dtype, input: 1) }
            return [try Tensor.selecting(c, x, y)]
        }, infer: { inputs, _, ctx in
            let c = try ctx.required(inputs, 0), x = try ctx.required(inputs, 1), y = try ctx.required(inputs, 2)
            let shapes = [c.shape, x.shape, y.shape]
            guard let s = Broadcast.shape(shapes) else { throw ctx.error(BroadcastError(shapes: shapes).description) }
            return [TensorInfo(x.dtype, s)]
        })
    }

    static func arithmetic<F: ArithmeticFunction>(_ r: OpRegistry, _ op: String, since: Int, _ make: @escaping (KernelContext) -> F) {
        r.register(op, since: since, kernel: { inputs, ctx in
            let (a, b) = try BinaryMap.operands(inputs, ctx)
            return [try BinaryMap.arithmetic(a, b, make(ctx), ctx)]
        }, infer: ElementwiseShapes.broadcast())
    }

    static func comparison<F: ComparisonFunction>(_ r: OpRegistry, _ op: String, since: Int, _ f: F) {
        r.register(op, since: since, kernel: { inputs, ctx in
            let (a, b) = try BinaryMap.operands(inputs, ctx)
            return [try BinaryMap.comparison(a, b, f, ctx)]
        }, infer: ElementwiseShapes.broadcast(.bool))
    }

    static func logic(_ r: OpRegistry, _ op: String, since: Int, _ f: @escaping (Bool, Bool) -> Bool) {
        r.register(op, since: since, kernel: { inputs, ctx in
            let (a, b) = try BinaryMap.operands(inputs, ctx)
            return [try BinaryMap.logic(a, b, ctx, f)]
        }, infer: ElementwiseShapes.broadcast(.bool))
    }

    /// A variadic op folded left to right over its inputs with broadcasting.
    static func variadic(_ r: OpRegistry, _ op: String, _ combine: @escaping (Tensor, Tensor, KernelContext) throws -> Tensor) {
        r.register(op, kernel: { inputs, ctx in
            let xs = inputs.compactMap { $0 }
            guard var acc = xs.first else { throw ctx.error("\(op) needs at least one input") }
            for x in xs.dropFirst() { acc = try combine(acc, x, ctx) }
            return [acc]
        }, infer: ElementwiseShapes.broadcast())
    }
}

extension Tensor {
    /// Whether `dtype` has numeric elements that `converted(to:)` handles.
    static func isNumericType(_ dtype: DType) -> Bool {
        switch dtype {
        case .float32, .float64, .float16, .bfloat16, .int8, .uint8, .bool, .int16, .uint16, .int32, .uint32, .int64, .uint64: return true
        default: return false
        }
    }
}
