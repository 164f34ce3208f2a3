import Foundation
import ModelIR
import TensorCore

// Operators that transform every lane along an axis: Softmax, LogSoftmax, Hardmax, CumSum.
//
// Softmax family axis rule (ONNX Softmax-1/11 vs Softmax-13): before opset 13 the input is
// coerced to 2-D [∏ dims before axis, ∏ dims from axis] (default axis 1) and the function is
// taken over each row; from opset 13 it is taken along the single axis (default -1).

enum SoftmaxKind { case softmax, logSoftmax, hardmax }

extension StandardOps {
    static func registerAlongAxis(_ r: OpRegistry) {
        for (op, kind) in [("Softmax", SoftmaxKind.softmax), ("LogSoftmax", .logSoftmax), ("Hardmax", .hardmax)] {
            for since in [1, 13] {
                r.register(op, since: since, kernel: { inputs, ctx in
                    let x = try ctx.required(inputs, 0)
                    return [try softmax(x, kind, block: try softmaxBlock(ctx, rank: x.rank, coerce2D: since < 13), ctx)]
                }, infer: { inputs, _, ctx in
                    let x = try ctx.required(inputs, 0)
                    _ = try softmaxBlock(ctx, rank: x.shape.count, coerce2D: since < 13)
                    guard x.dtype.isFloatingPoint else { throw ctx.unsupportedElementType(x.dtype) }
                    return [x]
                })
            }
        }

        // CumSum(x, axis): running sums along axis; `exclusive` leaves out the element itself,
        // `reverse` sums from the end.
        r.register("CumSum", since: 11, kernel: { inputs, ctx in
            let x = try ctx.required(inputs, 0), a = try ctx.required(inputs, 1)
            guard a.count == 1, a.dtype == .int64 || a.dtype == .int32 else {
                throw ctx.error("axis must be a scalar int32 or int64 tensor, got \(a.dtype)\(a.shape)")
            }
            let axis = try ctx.normalizedAxisIndex(Int(a.int64Values()[0]), rank: x.rank)
            return [try cumulativeSum(x, axis: axis, exclusive: ctx.intAttribute("exclusive", default: 0) != 0,
                                      reverse: ctx.intAttribute("reverse", default: 0) != 0, ctx)]
        }, infer: ElementwiseShapes.same())
    }

    /// The axes the function runs over: axis..<rank (coerced 2-D) or axis..<axis+1.
    static func softmaxBlock(_ ctx: KernelContext, rank: Int, coerce2D: Bool) throws -> Range<Int> {
        let axis = try ctx.normalizedAxisIndex(ctx.intAttribute("axis", default: coerce2D ? 1 : -1), rank: rank)
        if rank == 0 { return 0..<0 }
        return coerce2D ? axis..<rank : axis..<(axis + 1)
    }

    /// Softmax: y = e^(x − m) / Σ e^(x − m) with m the lane maximum (so no exponential
    /// overflows; the sum accumulates in float64). LogSoftmax: y = x − m − log Σ e^(x − m).
    /// Hardmax: 1 at the first maximum, 0 elsewhere.
    static func softmax(_ x: Tensor, _ kind: SoftmaxKind, block: Range<Int>, _ ctx: KernelContext) throws -> Tensor {
        func run<T: FloatingScalar>(_: T.Type) -> Tensor {
            x.transformingLanes(block: block, T.self, into: x.dtype, T.self) { p, o, n, s in
                var m = -T.infinity
                var at = 0
                for r in 0..<n where p[r * s] > m { m = p[r * s]; at = r }
                switch kind {
                case .hardmax:
                    for r in 0..<n { o[r * s] = 0 }
                    if n > 0 { o[at * s] = 1 }
                case .softmax:
                    // Three passes (exponentials, sum, scale) so the first and last vectorize.
                    for r in 0..<n { o[r * s] = T.exp(p[r * s] - m) }
                    let inv = T(1 / Reduce.sum(UnsafePointer(o), count: n, stride: s) { $0 })
                    for r in 0..<n { o[r * s] *= inv }
                case .logSoftmax:
                    for r in 0..<n { o[r * s] = T.exp(p[r * s] - m) }
                    // (x − m) first: x − (m + log Σ) would lose log Σ's digits when |m| is large.
                    let logSum = T(Foundation.log(Reduce.sum(UnsafePointer(o), count: n, stride: s) { $0 }))
                    for r in 0..<n { o[r * s] = (p[r * s] - m) - logSum }
                }
            }
        }
        switch x.dtype {
        case .float32: return run(Float.self)
        case .float64: return run(Double.self)
        case .float16, .bfloat16: return try softmax(x.converted(to: .float32), kind, block: block, ctx).converted(to: x.dtype)
        default: throw ctx.unsupportedElementType(x.dtype)
        }
    }

    /// Inclusive or exclusive running sums along `axis`, forward or reversed.
    static func cumulativeSum(_ x: Tensor, axis: Int, exclusive: Bool, reverse: Bool, _ ctx: KernelContext) throws -> Tensor {
        if ElementDispatch.widens(x.dtype) {
            return try cumulativeSum(x.converted(to: .float32), axis: axis, exclusive: exclusive, reverse: reverse, ctx).converted(to: x.dtype)
        }
        struct Visit: ArithmeticTypeVisitor {
            let x: Tensor, axis: Int, exclusive: Bool, reverse: Bool
            func visit<T: ArithmeticScalar>(_: T.Type) throws -> Tensor {
                let block = x.rank == 0 ? 0..<0 : axis..<(axis + 1)
                return x.transformingLanes(block: block, T.self, into: x.dtype, T.self) { p, o, n, s in
                    var acc = T.zero
                    for k in 0..<n {
                        let r = reverse ? n - 1 - k : k
                        let v = p[r * s]
                        if exclusive { o[r * s] = acc; acc = T.add(acc, v) } else { acc = T.add(acc, v); o[r * s] = acc }
                    }
                }
            }
        }
        guard let y = try ElementDispatch.arithmetic(x.dtype, Visit(x: x, axis: axis, exclusive: exclusive, reverse: reverse)) else {
            throw ctx.unsupportedElementType(x.dtype)
        }
        return y
    }
}
