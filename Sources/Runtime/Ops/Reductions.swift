import Foundation
import ModelIR
import TensorCore

// Reduce* (ONNX ReduceSum … ReduceLogSumExp), ArgMax/ArgMin. Softmax, LogSoftmax, Hardmax and
// CumSum are in ReductionsAlongAxis.swift.
//
// Every reduction reads lanes (see `LaneLayout`): the elements that map to one output element.
// Floating inputs accumulate in float64 and round once to the output type; integer inputs
// accumulate in Int64 (wrapping), as NumPy does for sums and products.

/// How a Reduce* op folds one lane. Empty lanes give the identity of the fold: 0 for sums and
/// norms, 1 for products, -inf for max and LogSumExp, +inf for min (for integer types the
/// smallest and largest values) — the values of the `*_empty_set` backend tests.
enum ReduceKind: String {
    case sum, mean, max, min, prod, l1, l2, sumSquare, logSum, logSumExp

    /// The fold of a lane of floating values, in float64.
    @inline(__always)
    func lane<T: FloatingScalar>(_ p: UnsafePointer<T>, _ n: Int, _ s: Int) -> Double {
        switch self {
        case .sum, .mean, .logSum:
            let acc = Reduce.sum(p, count: n, stride: s) { $0 }
            switch self {
            case .mean: return acc / Double(n)
            case .logSum: return Foundation.log(acc)
            default: return acc
            }
        case .sumSquare, .l2:
            let acc = Reduce.sum(p, count: n, stride: s) { $0 * $0 }
            return self == .l2 ? acc.squareRoot() : acc
        case .l1:
            return Reduce.sum(p, count: n, stride: s) { Swift.abs($0) }
        case .prod:
            var acc = 1.0
            for r in 0..<n { acc *= Double(p[r * s]) }
            return acc
        case .max, .min, .logSumExp:
            var m = self == .min ? Double.infinity : -Double.infinity
            for r in 0..<n {
                let v = Double(p[r * s])
                if v.isNaN { return v }
                if self == .min ? v < m : v > m { m = v }
            }
            guard self == .logSumExp else { return m }
            // log Σ eˣ = m + log Σ e^(x−m): stable for large x; an all -inf (or empty) lane stays -inf.
            if !m.isFinite { return m }
            let acc = Reduce.sum(p, count: n, stride: s) { Foundation.exp($0 - m) }
            return m + Foundation.log(acc)
        }
    }

    /// The fold of a lane of integers, in Int64 with wrapping arithmetic. Only the kinds that are
    /// exact on integers; the others go through float64.
    @inline(__always)
    func integerLane<T: ArithmeticScalar & FixedWidthInteger>(_ p: UnsafePointer<T>, _ n: Int, _ s: Int) -> T {
        switch self {
        case .max:
            var m = T.min
            for r in 0..<n where p[r * s] > m { m = p[r * s] }
            return m
        case .min:
            var m = T.max
            for r in 0..<n where p[r * s] < m { m = p[r * s] }
            return m
        case .prod:
            var acc: Int64 = 1
            for r in 0..<n { acc = acc &* Int64(truncatingIfNeeded: p[r * s]) }
            return T(truncatingIfNeeded: acc)
        default:
            var acc: Int64 = 0
            for r in 0..<n {
                let v = Int64(truncatingIfNeeded: p[r * s])
                switch self {
                case .sumSquare: acc = acc &+ v &* v
                case .l1: acc = acc &+ (v < 0 ? 0 &- v : v)
                default: acc = acc &+ v
                }
            }
            if self == .mean { return n == 0 ? 0 : T(truncatingIfNeeded: acc / Int64(n)) }
            return T(truncatingIfNeeded: acc)
        }
    }

    var exactOnIntegers: Bool { self != .l2 && self != .logSum && self != .logSumExp }
}

extension StandardOps {
    static func registerReductions(_ r: OpRegistry) {
        // The `axes` attribute became an input in opset 13 for ReduceSum and in opset 18 for the
        // others; `noop_with_empty_axes` arrived with the input.
        let ops: [(String, ReduceKind, Int)] = [
            ("ReduceSum", .sum, 13), ("ReduceMean", .mean, 18), ("ReduceMax", .max, 18), ("ReduceMin", .min, 18),
            ("ReduceProd", .prod, 18), ("ReduceL1", .l1, 18), ("ReduceL2", .l2, 18), ("ReduceSumSquare", .sumSquare, 18),
            ("ReduceLogSum", .logSum, 18), ("ReduceLogSumExp", .logSumExp, 18),
        ]
        for (op, kind, inputSince) in ops {
            for since in [1, inputSince] {
                let axesFromInput = since == inputSince
                r.register(op, since: since, kernel: { inputs, ctx in
                    let x = try ctx.required(inputs, 0)
                    let plan = try ReducePlan(ctx, rank: x.rank, axesInput: axesFromInput ? (inputs.count > 1 ? inputs[1] : nil) : nil,
                                              axesFromInput: axesFromInput, hasAxesInput: axesFromInput && inputs.count > 1 && inputs[1] != nil)
                    return [try reduce(x, kind, plan, ctx)]
                }, infer: { inputs, values, ctx in
                    let x = try ctx.required(inputs, 0)
                    let hasAxes = axesFromInput && inputs.count > 1 && inputs[1] != nil
                    let axesValue = hasAxes ? (values.count > 1 ? values[1] : nil) : nil
                    if hasAxes && axesValue == nil { throw ctx.error("axes is not a constant, so the output shape is unknown") }
                    let plan = try ReducePlan(ctx, rank: x.shape.count, axesInput: axesValue, axesFromInput: axesFromInput, hasAxesInput: hasAxes)
                    return [TensorInfo(x.dtype, plan.outputShape(x.shape))]
                })
            }
        }

        // ArgMax/ArgMin: int64 indices along one axis; select_last_index (opset 12) picks the last
        // of equal extremes. NaN counts as the extreme (NumPy argmax/argmin).
        for (op, isMax) in [("ArgMax", true), ("ArgMin", false)] {
            for since in [1, 12] {
                r.register(op, since: since, kernel: { inputs, ctx in
                    let x = try ctx.required(inputs, 0)
                    let (axis, keep, last) = try argOptions(ctx, rank: x.rank)
                    return [try argExtreme(x, axis: axis, keepDims: keep, last: last, isMax: isMax, ctx)]
                }, infer: { inputs, _, ctx in
                    let x = try ctx.required(inputs, 0)
                    let (axis, keep, _) = try argOptions(ctx, rank: x.shape.count)
                    return [TensorInfo(.int64, Reduce.shape(x.shape, axes: [axis], keepDims: keep))]
                })
            }
        }

        registerAlongAxis(r)
    }

    static func argOptions(_ ctx: KernelContext, rank: Int) throws -> (Int, Bool, Bool) {
        let axis = try ctx.normalizedAxisIndex(ctx.intAttribute("axis", default: 0), rank: rank)
        return (axis, ctx.intAttribute("keepdims", default: 1) != 0, ctx.opset >= 12 && ctx.intAttribute("select_last_index", default: 0) != 0)
    }

    static func reduce(_ x: Tensor, _ kind: ReduceKind, _ plan: ReducePlan, _ ctx: KernelContext) throws -> Tensor {
        if plan.isNoop { return x }
        let axes = plan.axes, keep = plan.keepDims
        switch x.dtype {
        case .float32:
            return try x.reducingLanes(axes: axes, keepDims: keep, Float.self, into: .float32, Float.self) { Float(kind.lane($0, $1, $2)) }
        case .float64:
            return try x.reducingLanes(axes: axes, keepDims: keep, Double.self, into: .float64, Double.self) { kind.lane($0, $1, $2) }
        case .float16, .bfloat16:
            return try reduce(x.converted(to: .float32), kind, plan, ctx).converted(to: x.dtype)
        case .bool where kind == .max || kind == .min:
            return try x.reducingLanes(axes: axes, keepDims: keep, UInt8.self, into: .bool, UInt8.self) {
                kind.integerLane($0, $1, $2) != 0 ? 1 : 0
            }
        default:
            struct Visit: ArithmeticTypeVisitor {
                let x: Tensor, kind: ReduceKind, axes: [Int], keep: Bool
                func visit<T: ArithmeticScalar>(_: T.Type) throws -> Tensor {
                    try StandardOps.integerReduce(x, kind, axes, keep, T.self)
                }
            }
            guard x.dtype != .bool, let y = try ElementDispatch.arithmetic(x.dtype, Visit(x: x, kind: kind, axes: axes, keep: keep)) else {
                throw ctx.unsupportedElementType(x.dtype)
            }
            return y
        }
    }

    /// Integer reductions: exact kinds in Int64, the others in float64 truncated back.
    static func integerReduce<T: ArithmeticScalar>(_ x: Tensor, _ kind: ReduceKind, _ axes: [Int], _ keep: Bool, _: T.Type) throws -> Tensor {
        func exact<I: ArithmeticScalar & FixedWidthInteger>(_: I.Type) throws -> Tensor {
            try x.reducingLanes(axes: axes, keepDims: keep, I.self, into: x.dtype, I.self) { kind.integerLane($0, $1, $2) }
        }
        if kind.exactOnIntegers {
            switch x.dtype {
            case .int8: return try exact(Int8.self)
            case .uint8: return try exact(UInt8.self)
            case .int16: return try exact(Int16.self)
            case .uint16: return try exact(UInt16.self)
            case .int32: return try exact(Int32.self)
            case .uint32: return try exact(UInt32.self)
            case .int64: return try exact(Int64.self)
            case .uint64: return try exact(UInt64.self)
            default: break
            }
        }
        return try x.converted(to: .float64).reducingLanes(axes: axes, keepDims: keep, Double.self, into: .float64, Double.self) {
            kind.lane($0, $1, $2)
        }.converted(to: x.dtype)
    }

    /// ArgMax/ArgMin along `axis` as int64 indices.
    static func argExtreme(_ x: Tensor, axis: Int, keepDims: Bool, last: Bool, isMax: Bool, _ ctx: KernelContext) throws -> Tensor {
        guard x.rank == 0 || x.shape[axis] > 0 else { throw ctx.error("cannot take \(ctx.node.opType) over an empty axis") }
        struct Visit: ComparableTypeVisitor {
            let x: Tensor, axis: Int, keepDims: Bool, last: Bool, isMax: Bool
            func visit<T: TensorScalar & Comparable>(_: T.Type, dtype: DType) throws -> Tensor {
                try x.reducingLanes(axes: x.rank == 0 ? [] : [axis], keepDims: keepDims, T.self, into: .int64, Int64.self) { p, n, s in
                    var best = 0
                    var bv = p[0]
                    if bv != bv { return 0 }  // NaN is the extreme: first NaN wins
                    for r in 1..<max(n, 1) {
                        let v = p[r * s]
                        if v != v { return Int64(r) }
                        let better = isMax ? (last ? v >= bv : v > bv) : (last ? v <= bv : v < bv)
                        if better { best = r; bv = v }
                    }
                    return Int64(best)
                }
            }
        }
        let src = ElementDispatch.widens(x.dtype) ? x.converted(to: .float32) : x
        guard let y = try ElementDispatch.comparable(src.dtype, Visit(x: src, axis: axis, keepDims: keepDims, last: last, isMax: isMax)) else {
            throw ctx.unsupportedElementType(x.dtype)
        }
        return y
    }
}

/// The axes a Reduce* node reduces, from its attribute (before opset 13/18) or input.
struct ReducePlan {
    /// Normalized, sorted, unique.
    var axes: [Int]
    var keepDims: Bool
    /// noop_with_empty_axes with no axes: the output is the input.
    var isNoop: Bool

    init(_ ctx: KernelContext, rank: Int, axesInput: Tensor?, axesFromInput: Bool, hasAxesInput: Bool) throws {
        keepDims = ctx.intAttribute("keepdims", default: 1) != 0
        var raw: [Int]
        if axesFromInput {
            if hasAxesInput {
                guard let t = axesInput else { throw ctx.error("axes input has no value") }
                guard t.dtype == .int64 || t.dtype == .int32 else { throw ctx.error("axes must be int64, got \(t.dtype)") }
                raw = t.int64Values().map { Int($0) }
            } else {
                raw = []
            }
        } else {
            raw = (ctx.node.ints("axes") ?? []).map { Int($0) }
        }
        isNoop = raw.isEmpty && axesFromInput && ctx.intAttribute("noop_with_empty_axes", default: 0) != 0
        if raw.isEmpty { raw = Array(0..<rank) }
        var seen = Set<Int>()
        for a in raw {
            let n = try ctx.normalizedAxisIndex(a, rank: rank, name: "axes entry")
            guard seen.insert(n).inserted else { throw ctx.error("axes lists axis \(a) twice") }
        }
        axes = seen.sorted()
        if rank == 0 { axes = [] }
    }

    func outputShape(_ shape: [Int]) -> [Int] { isNoop ? shape : Reduce.shape(shape, axes: axes, keepDims: keepDims) }
}
