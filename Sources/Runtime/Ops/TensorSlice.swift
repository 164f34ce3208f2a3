import ModelIR
import TensorCore

// Operators that cut, join, repeat or pad tensors: Concat, Split, Slice, Tile, Pad.

extension StandardOps {
    static func registerSliceOps(_ r: OpRegistry) {
        // Concat-1 defaults axis to 1; from Concat-4 it is required (negative since 11).
        r.register("Concat", since: 1, kernel: { inputs, ctx in
            let parts = inputs.compactMap { $0 }
            let (axis, _) = try SliceRules.concat(parts.map(TensorInfo.init), ctx)
            if parts.count == 1 { return [parts[0]] }
            return [try Movement.concat(parts, axis: axis)]
        }, infer: { inputs, _, ctx in
            let (_, out) = try SliceRules.concat(inputs.compactMap { $0 }, ctx)
            return [out]
        })

        // Split-1/2/11 take `split` as an attribute (Split-1 also as input 1), Split-13 as input 1;
        // Split-18 adds num_outputs (ceil-sized chunks, the last smaller).
        for since in [1, 13] {
            r.register("Split", since: since, kernel: { inputs, ctx in
                let x = try ctx.required(inputs, 0)
                let split = since < 13 ? try ctx.node.ints("split").map { $0.map(Int.init) } ?? TensorOperands.optionalInts(inputs, 1, "split", ctx)
                    : try TensorOperands.optionalInts(inputs, 1, "split", ctx)
                let (axis, sizes) = try SliceRules.split(x.shape, split, ctx)
                var start = 0
                return try sizes.map { n in
                    defer { start += n }
                    return try Movement.narrow(x, axis: axis, start: start, length: n)
                }
            }, infer: { inputs, values, ctx in
                let x = try ctx.required(inputs, 0)
                let known = try TensorOperands.knownOptional(inputs, values, 1, "input 'split'", ctx).map { try TensorOperands.ints($0, "split", ctx) }
                let split = since < 13 ? ctx.node.ints("split").map { $0.map(Int.init) } ?? known : known
                let (axis, sizes) = try SliceRules.split(x.shape, split, ctx)
                return sizes.map { n in var s = x.shape; s[axis] = n; return TensorInfo(x.dtype, s) }
            })
        }

        // Slice-1 takes starts/ends/axes as attributes; Slice-10 takes them (and steps) as inputs.
        for since in [1, 10] {
            r.register("Slice", since: since, kernel: { inputs, ctx in
                let x = try ctx.required(inputs, 0)
                let args = try since < 10 ? SliceRules.sliceAttributes(ctx)
                    : (try TensorOperands.ints(ctx.required(inputs, 1), "starts", ctx), try TensorOperands.ints(ctx.required(inputs, 2), "ends", ctx),
                       try TensorOperands.optionalInts(inputs, 3, "axes", ctx), try TensorOperands.optionalInts(inputs, 4, "steps", ctx))
                let view = try SliceRules.slice(x.shape, starts: args.0, ends: args.1, axes: args.2, steps: args.3, ctx)
                if view.shape == x.shape && view.strides == Movement.strides(x.shape) { return [x] }
                return [try Movement.copyView(x, shape: view.shape, strides: view.strides, offset: view.offset)]
            }, infer: { inputs, values, ctx in
                let x = try ctx.required(inputs, 0)
                let args: ([Int], [Int], [Int]?, [Int]?)
                if since < 10 {
                    args = try SliceRules.sliceAttributes(ctx)
                } else {
                    func list(_ i: Int, _ name: String) throws -> [Int]? {
                        try TensorOperands.knownOptional(inputs, values, i, "input '\(name)'", ctx).map { try TensorOperands.ints($0, name, ctx) }
                    }
                    guard let starts = try list(1, "starts"), let ends = try list(2, "ends") else { throw ctx.error("inputs 'starts' and 'ends' are required") }
                    args = (starts, ends, try list(3, "axes"), try list(4, "steps"))
                }
                let view = try SliceRules.slice(x.shape, starts: args.0, ends: args.1, axes: args.2, steps: args.3, ctx)
                return [TensorInfo(x.dtype, view.shape)]
            })
        }

        // Tile-1 repeats one axis (inputs tiles, axis); Tile-6 takes one repeat count per axis.
        for since in [1, 6] {
            r.register("Tile", since: since, kernel: { inputs, ctx in
                let x = try ctx.required(inputs, 0)
                let repeats = try SliceRules.repeats(x.shape, since: since, inputs, ctx)
                if repeats.allSatisfy({ $0 == 1 }) { return [x] }
                return [try Movement.tile(x, repeats: repeats)]
            }, infer: { inputs, values, ctx in
                let x = try ctx.required(inputs, 0)
                let known = try (1..<inputs.count).map { try TensorOperands.known(values, $0, "input \($0)", ctx) }
                let repeats = try SliceRules.repeats(x.shape, since: since, [nil] + known, ctx)
                return [TensorInfo(x.dtype, zip(x.shape, repeats).map { $0 * $1 })]
            })
        }

        // Pad-1 (paddings, value attributes), Pad-2 (pads, value), Pad-11 (pads, constant_value
        // inputs), Pad-18 (axes input), Pad-19 (wrap mode).
        for since in [1, 2, 11] {
            r.register("Pad", since: since, kernel: { inputs, ctx in
                let x = try ctx.required(inputs, 0)
                let p = try SliceRules.padding(x.shape, since: since, inputs, ctx)
                if p.begin.allSatisfy({ $0 == 0 }) && p.end.allSatisfy({ $0 == 0 }) { return [x] }
                var fill: [UInt8]?
                if p.mode == "constant" {
                    if since >= 11, inputs.count > 2, let v = inputs[2], v.count > 0 {
                        guard v.dtype == x.dtype else { throw ctx.error("constant_value is \(v.dtype) but the data is \(x.dtype)") }
                        fill = v.withUnsafeBytes { Array($0.prefix(x.dtype.size)) }
                    } else {
                        fill = try TensorOperands.elementBytes(Double(ctx.node.float("value") ?? 0), x.dtype, ctx)
                    }
                }
                return [try Movement.gather(x, maps: try SliceRules.padMaps(x.shape, p, ctx), fill: fill)]
            }, infer: { inputs, values, ctx in
                let x = try ctx.required(inputs, 0)
                var known: [Tensor?] = [nil]
                if since >= 11 {
                    known.append(try TensorOperands.known(values, 1, "input 'pads'", ctx))
                    known.append(nil)
                    known.append(try TensorOperands.knownOptional(inputs, values, 3, "input 'axes'", ctx))
                }
                let p = try SliceRules.padding(x.shape, since: since, known, ctx)
                return [TensorInfo(x.dtype, (0..<x.shape.count).map { x.shape[$0] + p.begin[$0] + p.end[$0] })]
            })
        }
    }
}

/// Argument decoding and output shapes for the slicing operators.
private enum SliceRules {
    static func concat(_ parts: [TensorInfo], _ ctx: KernelContext) throws -> (Int, TensorInfo) {
        guard let first = parts.first else { throw ctx.error("needs at least one input") }
        guard first.shape.count > 0 else { throw ctx.error("cannot concatenate scalars") }
        guard let a = ctx.node.int("axis") ?? (ctx.opset < 4 ? 1 : nil) else { throw ctx.error("attribute 'axis' is required") }
        let axis = try TensorOperands.axis(a, rank: first.shape.count, ctx)
        var shape = first.shape
        shape[axis] = 0
        for p in parts {
            guard p.dtype == first.dtype else { throw ctx.error("inputs mix \(first.dtype) and \(p.dtype)") }
            guard p.shape.count == first.shape.count,
                  (0..<shape.count).allSatisfy({ $0 == axis || p.shape[$0] == first.shape[$0] }) else {
                throw ctx.error("input shapes \(parts.map(\.shape)) differ outside axis \(axis)")
            }
            shape[axis] += p.shape[axis]
        }
        return (axis, TensorInfo(first.dtype, shape))
    }

    /// The axis and the part sizes: `split` when given (summing to the axis length), else
    /// num_outputs (Split-18) or the node's output count, in equal parts of ⌈d/n⌉ with a smaller
    /// last part.
    static func split(_ shape: [Int], _ split: [Int]?, _ ctx: KernelContext) throws -> (Int, [Int]) {
        guard !shape.isEmpty else { throw ctx.error("cannot split a scalar") }
        let axis = try TensorOperands.axis(ctx.node.int("axis") ?? 0, rank: shape.count, ctx)
        let d = shape[axis]
        let outputs = ctx.node.outputs.count
        if let split, !split.isEmpty {
            guard split.count == outputs, split.allSatisfy({ $0 >= 0 }), split.reduce(0, +) == d else {
                throw ctx.error("split \(split) does not divide axis \(axis) of length \(d) into \(outputs) outputs")
            }
            return (axis, split)
        }
        let n = ctx.opset >= 18 ? Int(ctx.node.int("num_outputs") ?? Int64(outputs)) : outputs
        guard n > 0, n == outputs else { throw ctx.error("num_outputs \(n) does not match the node's \(outputs) outputs") }
        let chunk = (d + n - 1) / n
        let sizes = (0..<n).map { i in max(0, min(chunk, d - i * chunk)) }
        if ctx.opset < 18 && d % n != 0 { throw ctx.error("axis \(axis) of length \(d) cannot be split into \(n) equal parts") }
        guard sizes.reduce(0, +) == d, sizes.last! > 0 || d == 0 else {
            throw ctx.error("axis \(axis) of length \(d) cannot be split into \(n) parts of \(chunk)")
        }
        return (axis, sizes)
    }

    static func sliceAttributes(_ ctx: KernelContext) throws -> ([Int], [Int], [Int]?, [Int]?) {
        guard let starts = ctx.node.ints("starts"), let ends = ctx.node.ints("ends") else {
            throw ctx.error("attributes 'starts' and 'ends' are required")
        }
        let axes = ctx.node.ints("axes").flatMap { $0.isEmpty ? nil : $0.map(Int.init) }
        return (starts.map(Int.init), ends.map(Int.init), axes, nil)
    }

    /// The strided view a slice selects (ONNX Slice-13): per axis, negative starts/ends count
    /// from the back, then starts and ends are clamped to [0, d] for a positive step and to
    /// [0, d−1] / [−1, d−1] for a negative step; the length is ⌈(end − start)/step⌉ (at least 0).
    static func slice(_ shape: [Int], starts: [Int], ends: [Int], axes: [Int]?, steps: [Int]?, _ ctx: KernelContext) throws
        -> (shape: [Int], strides: [Int], offset: Int) {
        let r = shape.count
        guard starts.count == ends.count else { throw ctx.error("starts \(starts) and ends \(ends) differ in length") }
        let ax = try TensorOperands.axes((axes ?? Array(0..<starts.count)).map(Int64.init), rank: r, ctx)
        guard ax.count == starts.count else { throw ctx.error("axes \(ax) and starts \(starts) differ in length") }
        let st = steps ?? [Int](repeating: 1, count: starts.count)
        guard st.count == starts.count else { throw ctx.error("steps \(st) and starts \(starts) differ in length") }
        let base = Movement.strides(shape)
        var outShape = shape, strides = base, offset = 0
        for (k, a) in ax.enumerated() {
            let d = shape[a], step = st[k]
            guard step != 0 else { throw ctx.error("slice step is 0 on axis \(a)") }
            var s = starts[k] < 0 ? starts[k] &+ d : starts[k]
            var e = ends[k] < 0 ? ends[k] &+ d : ends[k]
            let n: Int
            if step > 0 {
                s = min(max(s, 0), d)
                e = min(max(e, 0), d)
                n = e > s ? (e - s + step - 1) / step : 0
            } else {
                s = min(max(s, 0), d - 1)
                e = min(max(e, -1), d - 1)
                n = s > e ? (s - e - step - 1) / -step : 0
            }
            outShape[a] = n
            strides[a] = base[a] * step
            if n > 0 { offset += s * base[a] }
        }
        return (outShape, strides, offset)
    }

    /// Tile's repeat count per axis (Tile-6 `repeats`; Tile-1 `tiles` on one `axis`), checked so
    /// the output size `dₖ·rₖ` stays within `TensorOperands.maxElements`.
    static func repeats(_ shape: [Int], since: Int, _ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Int] {
        guard inputs.count > 1, let rep = inputs[1] else { throw ctx.error("input 'repeats' is required") }
        var r: [Int]
        if since < 6 {
            guard inputs.count > 2, let axisT = inputs[2] else { throw ctx.error("input 'axis' is required") }
            let tiles = try TensorOperands.ints(rep, "tiles", ctx), axis = try TensorOperands.ints(axisT, "axis", ctx)
            guard tiles.count == 1, axis.count == 1 else { throw ctx.error("tiles and axis must be scalars") }
            r = [Int](repeating: 1, count: shape.count)
            r[try TensorOperands.axis(Int64(axis[0]), rank: shape.count, ctx)] = tiles[0]
        } else {
            r = try TensorOperands.ints(rep, "repeats", ctx)
        }
        guard r.count == shape.count, r.allSatisfy({ $0 >= 0 }) else {
            throw ctx.error("repeats \(r) must hold one non-negative count per axis of the input \(shape)")
        }
        _ = try TensorOperands.checkedShape(zip(shape, r).map { d, k in
            let (v, overflow) = d.multipliedReportingOverflow(by: k)
            return overflow ? Int.max : v
        }, ctx)
        return r
    }

    struct Padding {
        var begin: [Int]
        var end: [Int]
        var mode: String
    }

    /// Pad amounts per axis (negative amounts crop) and the mode.
    static func padding(_ shape: [Int], since: Int, _ inputs: [Tensor?], _ ctx: KernelContext) throws -> Padding {
        let r = shape.count
        let mode = ctx.node.string("mode") ?? "constant"
        guard ["constant", "reflect", "edge", "wrap"].contains(mode) else { throw ctx.error("mode '\(mode)' is not constant, reflect, edge or wrap") }
        var raw: [Int]
        var axes = Array(0..<r)
        if since < 11 {
            guard let p = ctx.node.ints(since == 1 ? "paddings" : "pads") else { throw ctx.error("attribute '\(since == 1 ? "paddings" : "pads")' is required") }
            raw = p.map(Int.init)
        } else {
            guard inputs.count > 1, let p = inputs[1] else { throw ctx.error("input 'pads' is required") }
            raw = try TensorOperands.ints(p, "pads", ctx)
            if ctx.opset >= 18, inputs.count > 3, let a = inputs[3] {
                axes = try TensorOperands.axes(TensorOperands.ints(a, "axes", ctx).map(Int64.init), rank: r, ctx)
            }
        }
        guard raw.count == 2 * axes.count else { throw ctx.error("pads \(raw) must hold 2 values per padded axis (\(axes.count) axes)") }
        var p = Padding(begin: [Int](repeating: 0, count: r), end: [Int](repeating: 0, count: r), mode: mode)
        for (i, a) in axes.enumerated() {
            p.begin[a] = raw[i]
            p.end[a] = raw[axes.count + i]
            guard abs(p.begin[a]) <= TensorOperands.maxElements, abs(p.end[a]) <= TensorOperands.maxElements else { throw ctx.error("pads \(raw) are too large") }
            guard shape[a] + p.begin[a] + p.end[a] >= 0 else { throw ctx.error("pads \(raw) crop axis \(a) of length \(shape[a]) below zero") }
        }
        _ = try TensorOperands.checkedShape((0..<r).map { shape[$0] + p.begin[$0] + p.end[$0] }, ctx)
        return p
    }

    /// Per axis, the source index of each output index: numpy.pad's rules for edge (clamp),
    /// reflect (mirror without repeating the edge, period 2(d−1)) and wrap (modulo d); −1 for a
    /// constant fill.
    static func padMaps(_ shape: [Int], _ p: Padding, _ ctx: KernelContext) throws -> [[Int]] {
        try (0..<shape.count).map { a in
            let d = shape[a]
            let m = d + p.begin[a] + p.end[a]
            if p.mode != "constant" && d == 0 && m > 0 { throw ctx.error("cannot \(p.mode)-pad axis \(a) of length 0") }
            return (0..<m).map { i in
                let j = i - p.begin[a]
                if j >= 0 && j < d { return j }
                switch p.mode {
                case "edge": return min(max(j, 0), d - 1)
                case "wrap": return ((j % d) + d) % d
                case "reflect":
                    if d == 1 { return 0 }
                    let period = 2 * (d - 1)
                    let k = ((j % period) + period) % period
                    return k < d ? k : period - k
                default: return -1
                }
            }
        }
    }
}
