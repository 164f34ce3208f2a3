import ModelIR
import TensorCore

extension StandardOps {
    /// If, Loop and Scan: the bodies run through `KernelContext.runSubgraph` (the executor binds
    /// the body's inputs by name and resolves outer-scope values). Every opset version is
    /// registered; the later ones only widened the types (sequences and optionals, which this
    /// runtime does not model — a body producing one fails in that op's kernel). Scan 8 (batched,
    /// with `sequence_lens`) differs from Scan 9+ and has its own kernel.
    static func registerControlFlow(_ r: OpRegistry) {
        for v in [1, 11, 13, 16, 19, 21, 23, 24, 25] {
            r.register("If", since: v, kernel: ControlFlowOps.ifKernel, infer: ControlFlowOps.ifType)
            r.register("Loop", since: v, kernel: ControlFlowOps.loop, infer: ControlFlowOps.loopType)
        }
        r.register("Scan", since: 8, kernel: ControlFlowOps.scan8, infer: ControlFlowOps.scan8Type)
        for v in [9, 11, 16, 19, 21, 23, 24, 25] {
            r.register("Scan", since: v, kernel: ControlFlowOps.scan, infer: ControlFlowOps.scanType)
        }
    }
}

enum ControlFlowOps {
    static func text(_ s: [Int]) -> String { QuantizationText.shape(s) }

    /// Types a condition may have: bool, or a number read as nonzero = true (ONNX Runtime's
    /// leniency for exporters that emit integer conditions).
    static let conditionTypes: Set<DType> = [.bool, .uint8, .int8, .int16, .uint16, .int32, .int64, .float32, .float64]

    static func body(_ name: String, _ ctx: KernelContext) throws -> Graph {
        guard let g = ctx.node.graph(name) else { throw ctx.error("attribute '\(name)' (a graph) is missing") }
        return g
    }

    static func run(_ g: Graph, _ bound: [String: Tensor], _ ctx: KernelContext) throws -> [Tensor] {
        guard let runSubgraph = ctx.runSubgraph else { throw ctx.error("subgraphs can only run inside the executor") }
        return try runSubgraph(g, bound)
    }

    /// The single boolean of a condition tensor.
    static func condition(_ t: Tensor, _ what: String, _ ctx: KernelContext) throws -> Bool {
        guard t.count == 1 else { throw ctx.error("\(what) must hold one element; got shape \(text(t.shape))") }
        guard conditionTypes.contains(t.dtype) else { throw ctx.error("\(what) is \(t.dtype); expected bool") }
        return t.doubleValues()[0] != 0
    }

    /// Declared fixed types of a body's outputs `range` (nil where one is not fully declared).
    static func declared(_ g: Graph, _ range: Range<Int>) -> [TensorInfo?] {
        range.map { i in
            guard i < g.outputs.count, let t = g.outputs[i].type, let d = t.elementType, let s = t.fixedShape else { return nil }
            return TensorInfo(d, s)
        }
    }

    // MARK: If

    /// Runs `then_branch` when the condition is true, else `else_branch`; the outputs are the
    /// branch's outputs.
    static func ifKernel(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        let c = try condition(try ctx.required(inputs, 0), "the condition", ctx)
        let branch = try body(c ? "then_branch" : "else_branch", ctx)
        let outs = try run(branch, [:], ctx)
        guard outs.count >= ctx.node.outputs.count else {
            throw ctx.error("\(c ? "then" : "else") branch yields \(outs.count) outputs; the node has \(ctx.node.outputs.count)")
        }
        return outs
    }

    /// Types from the branch a constant condition selects, or from both branches when they
    /// declare the same fixed types; otherwise the types depend on data.
    static func ifType(_ types: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        let thenG = try body("then_branch", ctx), elseG = try body("else_branch", ctx)
        let n = ctx.node.outputs.count
        if let v = values.first ?? nil {
            let g = try condition(v, "the condition", ctx) ? thenG : elseG
            let d = declared(g, 0..<n)
            if d.allSatisfy({ $0 != nil }) { return d.map { $0! } }
            throw ctx.error("the selected branch does not declare fixed output types; run the model to know them")
        }
        let a = declared(thenG, 0..<n), b = declared(elseG, 0..<n)
        guard a.allSatisfy({ $0 != nil }), a == b else {
            throw ctx.error("output types depend on a condition only known at run time (the branches do not declare the same fixed types)")
        }
        return a.map { $0! }
    }

    // MARK: Loop

    /// Concatenates equally shaped tensors along a new axis `axis` (0 ≤ axis ≤ rank).
    static func stack(_ parts: [Tensor], axis: Int, what: String, _ ctx: KernelContext) throws -> Tensor {
        let first = parts[0]
        guard first.dtype.size > 0 else { throw ctx.error("\(what) is \(first.dtype), which cannot be concatenated here") }
        for (i, p) in parts.enumerated() where p.shape != first.shape || p.dtype != first.dtype {
            throw ctx.error("\(what) changes from \(first.dtype)\(text(first.shape)) to \(p.dtype)\(text(p.shape)) at iteration \(i)")
        }
        var shape = first.shape
        shape.insert(parts.count, at: axis)
        let outer = first.shape[..<axis].reduce(1, *)
        let inner = first.shape[axis...].reduce(1, *) * first.dtype.size
        var out = Tensor(uninitialized: first.dtype, shape: shape)
        out.withUnsafeMutableBytes { dst in
            guard inner > 0, let base = dst.baseAddress else { return }
            for (t, p) in parts.enumerated() {
                p.withUnsafeBytes { src in
                    for o in 0..<outer {
                        (base + (o * parts.count + t) * inner).copyMemory(from: src.baseAddress! + o * inner, byteCount: inner)
                    }
                }
            }
        }
        return out
    }

    /// An empty scan output (zero iterations): `[0] + declared element shape`.
    static func emptyScanOutput(_ g: Graph, _ i: Int, axis: Int = 0) -> Tensor {
        let t = i < g.outputs.count ? g.outputs[i].type : nil
        var shape = t?.fixedShape ?? []
        shape.insert(0, at: min(axis, shape.count))
        return Tensor(dtype: t?.elementType ?? .float32, shape: shape)
    }

    /// Loop: runs the body while `i < M` and `cond` hold. Body inputs: (iteration number int64,
    /// condition, carried…); body outputs: (condition, carried…, scan elements…). The node's
    /// outputs are the final carried values and each scan element stacked along a new axis 0.
    static func loop(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        let g = try body("body", ctx)
        let m: Int64? = try (inputs.first ?? nil).map { t in
            guard t.count == 1 else { throw ctx.error("M must hold one element; got shape \(text(t.shape))") }
            return t.int64Values()[0]
        }
        var keepGoing = try (inputs.count > 1 ? inputs[1] : nil).map { try condition($0, "cond", ctx) }
        guard m != nil || keepGoing != nil else {
            throw ctx.error("neither M nor cond is given, so the loop never ends (ONNX Loop spec)")
        }
        var carried: [Tensor] = []
        for i in 2..<max(inputs.count, 2) {
            guard let t = inputs[i] else { throw ctx.error("loop-carried input \(i) is omitted (optional values are not supported)") }
            carried.append(t)
        }
        let n = carried.count
        guard g.inputs.count == n + 2 else {
            throw ctx.error("the body takes \(g.inputs.count) inputs; expected \(n + 2) (iteration number, condition and \(n) carried)")
        }
        guard g.outputs.count >= n + 1 else {
            throw ctx.error("the body yields \(g.outputs.count) outputs; expected at least \(n + 1) (condition and \(n) carried)")
        }
        let k = g.outputs.count - 1 - n
        var scans = Array(repeating: [Tensor](), count: k)
        var i: Int64 = 0
        while (m.map { i < $0 } ?? true) && (keepGoing ?? true) {
            var bound: [String: Tensor] = [g.inputs[0].name: Tensor(scalar: i), g.inputs[1].name: Tensor(scalar: keepGoing ?? true)]
            for (j, t) in carried.enumerated() { bound[g.inputs[j + 2].name] = t }
            let outs = try run(g, bound, ctx)
            if keepGoing != nil { keepGoing = try condition(outs[0], "the body's condition output", ctx) }
            carried = Array(outs[1...n])
            for j in 0..<k { scans[j].append(outs[1 + n + j]) }
            i += 1
        }
        var results = carried
        for j in 0..<k {
            results.append(scans[j].isEmpty ? emptyScanOutput(g, 1 + n + j)
                                            : try stack(scans[j], axis: 0, what: "scan output \(j)", ctx))
        }
        return results
    }

    /// Loop output types are known when the trip count is (constant M, no condition or a
    /// constant true one the body passes through unchanged) and the body declares fixed output
    /// types; otherwise they depend on data.
    static func loopType(_ types: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        let g = try body("body", ctx)
        let n = max(types.count - 2, 0), k = g.outputs.count - 1 - n
        guard k >= 0 else { throw ctx.error("the body yields \(g.outputs.count) outputs; expected at least \(n + 1)") }
        var result: [TensorInfo] = []
        let carried = declared(g, 1..<(1 + n))
        for (j, d) in carried.enumerated() {
            guard let d else { throw ctx.error("loop-carried output \(j) has no declared fixed type in the body; run the model to know it") }
            result.append(d)
        }
        if k == 0 { return result }
        guard let mValue = values.first ?? nil, mValue.count == 1 else {
            throw ctx.error("the trip count M is not known ahead of time, so the scan outputs' length depends on data")
        }
        let condIn = types.count > 1 ? types[1] : nil
        let condValue = values.count > 1 ? values[1] : nil
        let passesCondition = g.outputs[0].name == g.inputs[1].name
            || g.nodes.contains { $0.opType == "Identity" && $0.inputs == [g.inputs[1].name] && $0.outputs == [g.outputs[0].name] }
        if condIn != nil {
            guard let c = condValue, try condition(c, "cond", ctx), passesCondition else {
                throw ctx.error("the loop condition is computed at run time, so the scan outputs' length depends on data")
            }
        }
        let trips = max(0, Int(mValue.int64Values()[0]))
        for (j, d) in declared(g, (1 + n)..<g.outputs.count).enumerated() {
            guard let d else { throw ctx.error("scan output \(j) has no declared fixed type in the body; run the model to know it") }
            result.append(TensorInfo(d.dtype, [trips] + d.shape))
        }
        return result
    }

    // MARK: Scan

    struct ScanAttributes {
        var states: Int, scanInputs: Int, scanOutputs: Int
        var inputAxes: [Int], inputReverse: [Bool]
        var outputAxes: [Int], outputReverse: [Bool]
    }

    /// Reads Scan-9+ attributes with axes normalized against the given ranks.
    static func scanAttributes(_ inputRanks: [Int], _ g: Graph, _ ctx: KernelContext) throws -> ScanAttributes {
        guard let m64 = ctx.node.int("num_scan_inputs") else { throw ctx.error("attribute num_scan_inputs is missing") }
        let m = Int(m64), n = inputRanks.count - m
        guard m >= 1, n >= 0 else { throw ctx.error("num_scan_inputs \(m) does not fit the \(inputRanks.count) inputs") }
        guard g.inputs.count == n + m else { throw ctx.error("the body takes \(g.inputs.count) inputs; expected \(n + m) (\(n) states, \(m) scan elements)") }
        let k = g.outputs.count - n
        guard k >= 0 else { throw ctx.error("the body yields \(g.outputs.count) outputs; expected at least \(n) states") }
        func list(_ name: String, _ count: Int, _ dflt: Int) throws -> [Int] {
            let v = ctx.node.ints(name)?.map { Int($0) } ?? Array(repeating: dflt, count: count)
            guard v.count == count else { throw ctx.error("\(name) has \(v.count) values; expected \(count)") }
            return v
        }
        var inAxes = try list("scan_input_axes", m, 0)
        for j in 0..<m {
            let r = inputRanks[n + j]
            if inAxes[j] < 0 { inAxes[j] += r }
            guard inAxes[j] >= 0 && inAxes[j] < r else { throw ctx.error("scan_input_axes[\(j)] is out of range for rank \(r)") }
        }
        let outAxes = try list("scan_output_axes", k, 0)
        let inDir = try list("scan_input_directions", m, 0), outDir = try list("scan_output_directions", k, 0)
        return ScanAttributes(states: n, scanInputs: m, scanOutputs: k, inputAxes: inAxes, inputReverse: inDir.map { $0 != 0 },
                              outputAxes: outAxes, outputReverse: outDir.map { $0 != 0 })
    }

    /// Element `t` of `x` along `axis`, with that axis removed.
    static func slice(_ x: Tensor, _ t: Int, axis: Int) -> Tensor {
        var shape = x.shape
        shape.remove(at: axis)
        return x.selecting([t], alongAxis: axis).reshaped(shape)
    }

    /// Runs the Scan-9 recurrence over `states` and `scanInputs` for `length` steps.
    static func scanLoop(_ g: Graph, states initial: [Tensor], scanInputs: [Tensor], length: Int, a: ScanAttributes,
                         _ ctx: KernelContext) throws -> [Tensor] {
        var states = initial
        var scans = Array(repeating: [Tensor](), count: a.scanOutputs)
        for t in 0..<length {
            var bound: [String: Tensor] = [:]
            for (j, s) in states.enumerated() { bound[g.inputs[j].name] = s }
            for (j, x) in scanInputs.enumerated() {
                bound[g.inputs[a.states + j].name] = slice(x, a.inputReverse[j] ? length - 1 - t : t, axis: a.inputAxes[j])
            }
            let outs = try run(g, bound, ctx)
            guard outs.count == a.states + a.scanOutputs else { throw ctx.error("the body yielded \(outs.count) outputs") }
            states = Array(outs[..<a.states])
            for j in 0..<a.scanOutputs { scans[j].append(outs[a.states + j]) }
        }
        var results = states
        for j in 0..<a.scanOutputs {
            guard !scans[j].isEmpty else { results.append(emptyScanOutput(g, a.states + j)); continue }
            let rank = scans[j][0].rank + 1
            var axis = a.outputAxes[j]
            if axis < 0 { axis += rank }
            guard axis >= 0 && axis < rank else { throw ctx.error("scan_output_axes[\(j)] is out of range for rank \(rank)") }
            let parts = a.outputReverse[j] ? scans[j].reversed() : scans[j]
            results.append(try stack(parts, axis: axis, what: "scan output \(j)", ctx))
        }
        return results
    }

    /// The common length of the scan inputs along their scan axes.
    static func scanLength(_ shapes: [[Int]], _ a: ScanAttributes, _ ctx: KernelContext) throws -> Int {
        let lengths = (0..<a.scanInputs).map { shapes[a.states + $0][a.inputAxes[$0]] }
        guard let first = lengths.first, lengths.allSatisfy({ $0 == first }) else {
            throw ctx.error("scan inputs have different lengths \(lengths) along their scan axes")
        }
        return first
    }

    /// Scan (opset 9+): states carried through the body, scan inputs sliced along their axes
    /// (reversed per `scan_input_directions`), scan outputs stacked along `scan_output_axes`.
    static func scan(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        let g = try body("body", ctx)
        let xs = try inputs.enumerated().map { i, t -> Tensor in
            guard let t else { throw ctx.error("input \(i) is omitted") }
            return t
        }
        let a = try scanAttributes(xs.map(\.rank), g, ctx)
        let length = try scanLength(xs.map(\.shape), a, ctx)
        return try scanLoop(g, states: Array(xs[..<a.states]), scanInputs: Array(xs[a.states...]), length: length, a: a, ctx)
    }

    static func scanType(_ types: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        let g = try body("body", ctx)
        let ts = try types.enumerated().map { i, t -> TensorInfo in
            guard let t else { throw ctx.error("input \(i) is omitted") }
            return t
        }
        let a = try scanAttributes(ts.map { $0.shape.count }, g, ctx)
        let length = try scanLength(ts.map(\.shape), a, ctx)
        var result = Array(ts[..<a.states])
        for (j, d) in declared(g, a.states..<(a.states + a.scanOutputs)).enumerated() {
            guard let d else { throw ctx.error("scan output \(j) has no declared fixed type in the body; run the model to know it") }
            var axis = a.outputAxes[j]
            if axis < 0 { axis += d.shape.count + 1 }
            guard axis >= 0 && axis <= d.shape.count else { throw ctx.error("scan_output_axes[\(j)] is out of range") }
            var shape = d.shape
            shape.insert(length, at: axis)
            result.append(TensorInfo(d.dtype, shape))
        }
        return result
    }

    /// Scan-8 attributes: inputs are (sequence_lens?, states…, scan inputs…), all with a leading
    /// batch axis; the scan axis is 1 and `directions` reverses scan inputs.
    static func scan8Attributes(_ inputs: Int, _ g: Graph, _ ctx: KernelContext) throws -> ScanAttributes {
        guard let m64 = ctx.node.int("num_scan_inputs") else { throw ctx.error("attribute num_scan_inputs is missing") }
        let m = Int(m64), n = inputs - 1 - m
        guard m >= 1, n >= 0 else { throw ctx.error("num_scan_inputs \(m) does not fit the \(inputs) inputs") }
        guard g.inputs.count == n + m, g.outputs.count >= n else {
            throw ctx.error("the body takes \(g.inputs.count) inputs and yields \(g.outputs.count); expected \(n + m) inputs and at least \(n) outputs")
        }
        let dirs = ctx.node.ints("directions")?.map { $0 != 0 } ?? Array(repeating: false, count: m)
        guard dirs.count == m else { throw ctx.error("directions has \(dirs.count) values; expected \(m)") }
        let k = g.outputs.count - n
        return ScanAttributes(states: n, scanInputs: m, scanOutputs: k, inputAxes: Array(repeating: 0, count: m), inputReverse: dirs,
                              outputAxes: Array(repeating: 0, count: k), outputReverse: Array(repeating: false, count: k))
    }

    /// Scan (opset 8): each batch row runs the Scan-9 recurrence over its first
    /// `sequence_lens[b]` steps (all steps when omitted); shorter rows' scan outputs are
    /// zero-padded to the full length.
    static func scan8(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        let g = try body("body", ctx)
        let a = try scan8Attributes(inputs.count, g, ctx)
        let xs = try (1..<inputs.count).map { i -> Tensor in
            guard let t = inputs[i] else { throw ctx.error("input \(i) is omitted") }
            guard t.rank >= (i > a.states ? 2 : 1) else { throw ctx.error("input \(i) has shape \(text(t.shape)); expected a batch axis") }
            return t
        }
        let batch = xs[0].shape[0]
        guard xs.allSatisfy({ $0.shape[0] == batch }) else { throw ctx.error("inputs disagree on the batch size") }
        let full = try scanLength(xs.map { Array($0.shape.dropFirst()) }, a, ctx)
        var lengths = Array(repeating: full, count: batch)
        if let s = inputs[0] {
            lengths = s.int64Values().map { Int($0) }
            guard lengths.count == batch, lengths.allSatisfy({ $0 >= 0 && $0 <= full }) else {
                throw ctx.error("sequence_lens \(lengths) must hold \(batch) values in 0...\(full)")
            }
        }
        var perBatch: [[Tensor]] = []
        for b in 0..<batch {
            let rows = xs.map { slice($0, b, axis: 0) }
            let scanInputs = rows[a.states...].map { $0.selecting(Array(0..<lengths[b]), alongAxis: 0) }
            var outs = try scanLoop(g, states: Array(rows[..<a.states]), scanInputs: Array(scanInputs), length: lengths[b], a: a, ctx)
            for j in 0..<a.scanOutputs where lengths[b] < full {
                // Zero-pad to the full length along the scan axis.
                let o = outs[a.states + j]
                var shape = o.shape
                shape[0] = full
                var padded = Tensor(dtype: o.dtype, shape: shape)
                padded.withUnsafeMutableBytes { d in o.withUnsafeBytes { s in if s.count > 0 { d.baseAddress!.copyMemory(from: s.baseAddress!, byteCount: s.count) } } }
                outs[a.states + j] = padded
            }
            perBatch.append(outs)
        }
        return try (0..<(a.states + a.scanOutputs)).map { j in try stack(perBatch.map { $0[j] }, axis: 0, what: "output \(j)", ctx) }
    }

    static func scan8Type(_ types: [TensorInfo?], _ values: [Tensor?], _ ctx: KernelContext) throws -> [TensorInfo] {
        let g = try body("body", ctx)
        let a = try scan8Attributes(types.count, g, ctx)
        let ts = try (1..<types.count).map { i -> TensorInfo in
            guard let t = types[i] else { throw ctx.error("input \(i) is omitted") }
            return t
        }
        guard let batch = ts.first?.shape.first else { throw ctx.error("inputs need a batch axis") }
        let length = try scanLength(ts.map { Array($0.shape.dropFirst()) }, a, ctx)
        var result = Array(ts[..<a.states])
        for (j, d) in declared(g, a.states..<(a.states + a.scanOutputs)).enumerated() {
            guard let d else { throw ctx.error("scan output \(j) has no declared fixed type in the body; run the model to know it") }
            result.append(TensorInfo(d.dtype, [batch, length] + d.shape))
        }
        return result
    }
}
