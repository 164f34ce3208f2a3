import ModelIR
import TensorCore

// Operators that change only the shape or the order of elements: Flatten, Reshape, Transpose,
// Squeeze, Unsqueeze, Expand, DepthToSpace, SpaceToDepth, and the metadata readers Shape and Size.
// Every output shape is computed by one function shared by the kernel and the shape function.

extension StandardOps {
    static func registerShapeOps(_ r: OpRegistry) {
        // Flatten-1…25: axis in [−r, r] (negative since 11); [∏ d[..<axis], ∏ d[axis...]].
        r.register("Flatten", since: 1, kernel: { inputs, ctx in
            let x = try ctx.required(inputs, 0)
            return [x.reshaped(try ShapeRules.flatten(x.shape, ctx))]
        }, infer: { inputs, _, ctx in
            let x = try ctx.required(inputs, 0)
            return [TensorInfo(x.dtype, try ShapeRules.flatten(x.shape, ctx))]
        })

        // Reshape-1 takes the shape as an attribute; Reshape-5 as input 1; Reshape-14 adds allowzero.
        for since in [1, 5, 14] {
            r.register("Reshape", since: since, kernel: { inputs, ctx in
                let x = try ctx.required(inputs, 0)
                let spec = since == 1 ? (ctx.node.ints("shape") ?? []).map(Int.init) : try TensorOperands.ints(ctx.required(inputs, 1), "shape", ctx)
                return [x.reshaped(try ShapeRules.reshape(x.shape, spec, allowZero: since >= 14 && ctx.node.int("allowzero") == 1, ctx))]
            }, infer: { inputs, values, ctx in
                let x = try ctx.required(inputs, 0)
                let spec = since == 1 ? (ctx.node.ints("shape") ?? []).map(Int.init)
                    : try TensorOperands.ints(TensorOperands.known(values, 1, "input 'shape'", ctx), "shape", ctx)
                return [TensorInfo(x.dtype, try ShapeRules.reshape(x.shape, spec, allowZero: since >= 14 && ctx.node.int("allowzero") == 1, ctx))]
            })
        }

        // Transpose-1…25: perm defaults to the reversed axes.
        r.register("Transpose", since: 1, kernel: { inputs, ctx in
            let x = try ctx.required(inputs, 0)
            let perm = try ShapeRules.permutation(rank: x.rank, ctx)
            if perm == Array(0..<x.rank) { return [x] }
            return [try Movement.transpose(x, perm: perm)]
        }, infer: { inputs, _, ctx in
            let x = try ctx.required(inputs, 0)
            let perm = try ShapeRules.permutation(rank: x.shape.count, ctx)
            return [TensorInfo(x.dtype, perm.map { x.shape[$0] })]
        })

        // Squeeze-1/11 take axes as an attribute, Squeeze-13 as optional input 1.
        for since in [1, 13] {
            r.register("Squeeze", since: since, kernel: { inputs, ctx in
                let x = try ctx.required(inputs, 0)
                let axes = since < 13 ? ctx.node.ints("axes").map { $0.map(Int.init) } : try TensorOperands.optionalInts(inputs, 1, "axes", ctx)
                return [x.reshaped(try ShapeRules.squeeze(x.shape, axes, ctx))]
            }, infer: { inputs, values, ctx in
                let x = try ctx.required(inputs, 0)
                let axes = since < 13 ? ctx.node.ints("axes").map { $0.map(Int.init) }
                    : try TensorOperands.knownOptional(inputs, values, 1, "input 'axes'", ctx).map { try TensorOperands.ints($0, "axes", ctx) }
                return [TensorInfo(x.dtype, try ShapeRules.squeeze(x.shape, axes, ctx))]
            })
        }

        // Unsqueeze-1/11 take axes as an attribute, Unsqueeze-13 as input 1; axes count in the
        // output's rank.
        for since in [1, 13] {
            r.register("Unsqueeze", since: since, kernel: { inputs, ctx in
                let x = try ctx.required(inputs, 0)
                let axes = since < 13 ? (ctx.node.ints("axes") ?? []).map(Int.init) : try TensorOperands.ints(ctx.required(inputs, 1), "axes", ctx)
                return [x.reshaped(try ShapeRules.unsqueeze(x.shape, axes, ctx))]
            }, infer: { inputs, values, ctx in
                let x = try ctx.required(inputs, 0)
                let axes = since < 13 ? (ctx.node.ints("axes") ?? []).map(Int.init)
                    : try TensorOperands.ints(TensorOperands.known(values, 1, "input 'axes'", ctx), "axes", ctx)
                return [TensorInfo(x.dtype, try ShapeRules.unsqueeze(x.shape, axes, ctx))]
            })
        }

        // Expand-8/13: bidirectional broadcast of the input against `shape`.
        r.register("Expand", since: 8, kernel: { inputs, ctx in
            let x = try ctx.required(inputs, 0)
            let out = try ShapeRules.expand(x.shape, TensorOperands.ints(ctx.required(inputs, 1), "shape", ctx), ctx)
            if out == x.shape { return [x] }
            return [try Movement.broadcast(x, to: out)]
        }, infer: { inputs, values, ctx in
            let x = try ctx.required(inputs, 0)
            let spec = try TensorOperands.ints(TensorOperands.known(values, 1, "input 'shape'", ctx), "shape", ctx)
            return [TensorInfo(x.dtype, try ShapeRules.expand(x.shape, spec, ctx))]
        })

        // DepthToSpace-1 is DCR only; DepthToSpace-11 adds mode CRD. SpaceToDepth-1/13.
        r.register("DepthToSpace", since: 1, kernel: { inputs, ctx in
            let x = try ctx.required(inputs, 0)
            let (view, out) = try ShapeRules.depthToSpace(x.shape, ctx)
            return [try Movement.transpose(x.reshaped(view.shape), perm: view.perm).reshaped(out)]
        }, infer: { inputs, _, ctx in
            let x = try ctx.required(inputs, 0)
            return [TensorInfo(x.dtype, try ShapeRules.depthToSpace(x.shape, ctx).1)]
        })
        r.register("SpaceToDepth", since: 1, kernel: { inputs, ctx in
            let x = try ctx.required(inputs, 0)
            let (view, out) = try ShapeRules.spaceToDepth(x.shape, ctx)
            return [try Movement.transpose(x.reshaped(view.shape), perm: view.perm).reshaped(out)]
        }, infer: { inputs, _, ctx in
            let x = try ctx.required(inputs, 0)
            return [TensorInfo(x.dtype, try ShapeRules.spaceToDepth(x.shape, ctx).1)]
        })

        // Shape-1/13; Shape-15 adds start/end (clamped like Python slicing without step).
        r.register("Shape", since: 1, kernel: { inputs, ctx in
            let x = try ctx.required(inputs, 0)
            return [try StandardOps.metadataValue(ctx.node, opset: ctx.opset, input: TensorInfo(x))!]
        }, infer: { inputs, _, ctx in
            let x = try ctx.required(inputs, 0)
            return [TensorInfo(try StandardOps.metadataValue(ctx.node, opset: ctx.opset, input: x)!)]
        })
        r.register("Size", since: 1, kernel: { inputs, ctx in
            let x = try ctx.required(inputs, 0)
            return [Tensor(scalar: Int64(x.count))]
        }, infer: { _, _, _ in [TensorInfo(.int64, [])] })
    }

    /// The value of a Shape or Size node, which depends only on its input's type; nil for any
    /// other node. Shape inference uses it to fold `Shape → Gather → Concat → Reshape` chains
    /// whose input is not a constant.
    static func metadataValue(_ node: Node, opset: Int, input: TensorInfo) throws -> Tensor? {
        guard node.isDefaultDomain else { return nil }
        switch node.opType {
        case "Size": return Tensor(scalar: Int64(input.count))
        case "Shape":
            let r = input.shape.count
            var start = 0, end = r
            if opset >= 15 {
                func clamp(_ v: Int64) -> Int { let i = v < 0 ? Int(v) + r : Int(v); return min(max(i, 0), r) }
                start = clamp(node.int("start") ?? 0)
                end = node.int("end").map(clamp) ?? r
            }
            let dims = start < end ? input.shape[start..<end].map { Int64($0) } : []
            return Tensor(shape: [dims.count], scalars: dims)
        default: return nil
        }
    }
}

/// Output shapes of the shape operators (ONNX operator specs, sections named by op).
private enum ShapeRules {
    static func flatten(_ shape: [Int], _ ctx: KernelContext) throws -> [Int] {
        let axis = try TensorOperands.axis(ctx.node.int("axis") ?? 1, rank: shape.count, ctx, inclusive: true)
        return [shape[..<axis].reduce(1, *), shape[axis...].reduce(1, *)]
    }

    /// Reshape's target: 0 copies the input dimension at the same index (a literal 0 with
    /// allowzero), −1 takes the remaining element count; at most one −1.
    static func reshape(_ input: [Int], _ spec: [Int], allowZero: Bool, _ ctx: KernelContext) throws -> [Int] {
        var out = spec
        var inferred: Int?
        for (i, d) in spec.enumerated() {
            switch d {
            case -1:
                guard inferred == nil else { throw ctx.error("shape \(spec) has more than one -1") }
                inferred = i
            case 0 where !allowZero:
                guard i < input.count else { throw ctx.error("shape \(spec) copies dimension \(i) (0), but the input \(input) has rank \(input.count)") }
                out[i] = input[i]
            default:
                guard d >= 0 else { throw ctx.error("shape \(spec) has a negative dimension \(d)") }
            }
        }
        let total = input.reduce(1, *)
        // Products with overflow detection: the spec comes from tensor contents.
        func product(_ dims: [Int]) -> Int? {
            var n = 1
            for d in dims {
                let (r, o) = n.multipliedReportingOverflow(by: d)
                if o { return nil }
                n = r
            }
            return n
        }
        if let i = inferred {
            if allowZero && spec.contains(0) { throw ctx.error("shape \(spec) has both 0 and -1 with allowzero=1") }
            var rest = out
            rest.remove(at: i)
            guard let known = product(rest), known > 0, total % known == 0 else { throw ctx.error("cannot reshape \(input) (\(total) elements) to \(spec)") }
            out[i] = total / known
        }
        guard product(out) == total else { throw ctx.error("cannot reshape \(input) (\(total) elements) to \(spec)") }
        return out
    }

    static func permutation(rank: Int, _ ctx: KernelContext) throws -> [Int] {
        guard let p = ctx.node.ints("perm") else { return Array((0..<rank).reversed()) }
        let perm = p.map(Int.init)
        guard perm.count == rank, Set(perm) == Set(0..<rank) else { throw ctx.error("perm \(p) is not a permutation of 0..<\(rank)") }
        return perm
    }

    static func squeeze(_ shape: [Int], _ axes: [Int]?, _ ctx: KernelContext) throws -> [Int] {
        guard let axes, !axes.isEmpty else { return shape.filter { $0 != 1 } }
        let drop = try TensorOperands.axes(axes.map(Int64.init), rank: shape.count, ctx)
        for a in drop where shape[a] != 1 { throw ctx.error("cannot squeeze axis \(a) of shape \(shape): its size is \(shape[a]), not 1") }
        return shape.enumerated().filter { !drop.contains($0.offset) }.map(\.element)
    }

    static func unsqueeze(_ shape: [Int], _ axes: [Int], _ ctx: KernelContext) throws -> [Int] {
        let rank = shape.count + axes.count
        let insert = Set(try TensorOperands.axes(axes.map(Int64.init), rank: rank, ctx))
        var out: [Int] = []
        var next = shape.makeIterator()
        for i in 0..<rank { out.append(insert.contains(i) ? 1 : next.next()!) }
        return out
    }

    static func expand(_ shape: [Int], _ spec: [Int], _ ctx: KernelContext) throws -> [Int] {
        guard spec.allSatisfy({ $0 >= 0 }) else { throw ctx.error("shape \(spec) has a negative dimension") }
        guard let out = Broadcast.shape(shape, spec) else { throw ctx.error("input of shape \(shape) cannot be expanded to \(spec)") }
        return try TensorOperands.checkedShape(out, ctx)
    }

    /// DepthToSpace as reshape + transpose + reshape (ONNX DepthToSpace-13 spec):
    /// DCR views [N, b, b, C/b², H, W] with perm [0, 3, 4, 1, 5, 2]; CRD views [N, C/b², b, b, H, W]
    /// with perm [0, 1, 4, 2, 5, 3]; the output is [N, C/b², H·b, W·b].
    static func depthToSpace(_ s: [Int], _ ctx: KernelContext) throws -> ((shape: [Int], perm: [Int]), [Int]) {
        guard s.count == 4 else { throw ctx.error("input must be 4-D [N, C, H, W], got \(s)") }
        let b = Int(ctx.node.int("blocksize") ?? 0)
        guard b > 0, s[1] % (b * b) == 0 else { throw ctx.error("channels \(s[1]) are not divisible by blocksize² (blocksize \(b))") }
        let (n, c, h, w) = (s[0], s[1] / (b * b), s[2], s[3])
        let mode = ctx.opset >= 11 ? (ctx.node.string("mode") ?? "DCR") : "DCR"
        let view: (shape: [Int], perm: [Int])
        switch mode {
        case "DCR": view = ([n, b, b, c, h, w], [0, 3, 4, 1, 5, 2])
        case "CRD": view = ([n, c, b, b, h, w], [0, 1, 4, 2, 5, 3])
        default: throw ctx.error("mode '\(mode)' is not DCR or CRD")
        }
        return (view, [n, c, h * b, w * b])
    }

    /// SpaceToDepth: view [N, C, H/b, b, W/b, b], perm [0, 3, 5, 1, 2, 4], output [N, C·b², H/b, W/b].
    static func spaceToDepth(_ s: [Int], _ ctx: KernelContext) throws -> ((shape: [Int], perm: [Int]), [Int]) {
        guard s.count == 4 else { throw ctx.error("input must be 4-D [N, C, H, W], got \(s)") }
        let b = Int(ctx.node.int("blocksize") ?? 0)
        guard b > 0, s[2] % b == 0, s[3] % b == 0 else { throw ctx.error("spatial size \(s[2])x\(s[3]) is not divisible by blocksize \(b)") }
        let (n, c, h, w) = (s[0], s[1], s[2] / b, s[3] / b)
        return (([n, c, h, b, w, b], [0, 3, 5, 1, 2, 4]), [n, c * b * b, h, w])
    }
}
