import ModelIR
import Runtime
import TensorCore

extension GraphWalker {
    /// If, Loop and Scan: each body is profiled with its own shape inference (formal inputs
    /// bound to the outer types, outer-scope values it reads declared as inputs or, when known,
    /// as constants) and listed after the control node.
    ///
    /// - If: both branches are listed; a constant condition keeps only the taken branch in the
    ///   totals, otherwise the totals count the costlier branch (by FLOPs) — an upper bound.
    /// - Loop: the body is multiplied by the trip count M when it is a constant; otherwise it is
    ///   counted once and a warning says so. A loop-carried condition may end the loop early, so
    ///   M is an upper bound.
    /// - Scan: the body is multiplied by the scan length (the first scan input's scan axis).
    mutating func controlFlow(_ n: Node, rowIndex: Int, scope: String, inference: ShapeInference, inner: OuterScope, repeats: Int) {
        let types = inference.types
        let prefix = (scope.isEmpty ? "" : scope + "/") + n.label
        func info(_ name: String?) -> TensorInfo? { name.flatMap { $0.isEmpty ? nil : types[$0] } }
        switch n.opType {
        case "If":
            var ranges: [(String, Range<Int>, Int)] = []
            for attr in ["then_branch", "else_branch"] {
                guard let body = n.graph(attr) else { continue }
                let start = nodes.count
                walkBody(body, formal: [], scope: prefix + "/" + attr, inner: inner, repeats: repeats)
                let r = start..<nodes.count
                ranges.append((attr, r, nodes[r].filter(\.inTotal).reduce(0) { $0 + $1.flops }))
            }
            guard ranges.count == 2 else { return }
            var keep: Int
            let cond = n.inputs.first.flatMap { inference.values[$0] }
            if let c = cond, c.count == 1, c.dtype == .bool {
                keep = (c.withUnsafeBytes { $0.first ?? 0 } != 0) ? 0 : 1
                nodes[rowIndex].note = "If: condition is constant; the totals count the \(ranges[keep].0) (both branches listed)"
            } else {
                keep = ranges[0].2 >= ranges[1].2 ? 0 : 1
                nodes[rowIndex].note = "If: both branches listed; the totals count the costlier, \(ranges[keep].0)"
            }
            for i in ranges[1 - keep].1 { nodes[i].inTotal = false }
        case "Loop":
            guard let body = n.graph("body") else { return }
            var trip: Int?
            if let m = n.inputs.first, !m.isEmpty, let t = inference.values[m], t.count == 1 {
                trip = t.int64Values().first.map { Int($0) }
            }
            if trip == nil {
                warnings.append("Loop '\(n.label)': trip count is not a constant; its body is counted once")
                nodes[rowIndex].note = "Loop: trip count unknown, body counted once"
            } else {
                nodes[rowIndex].note = "Loop: body counted × \(trip!) (trip count; an upper bound if the condition ends it early)"
            }
            var formal: [TensorInfo?] = [TensorInfo(.int64, []), TensorInfo(.bool, [])]
            formal += n.inputs.dropFirst(2).map { info($0) }
            walkBody(body, formal: formal, scope: prefix + "/body", inner: inner, repeats: repeats * max(trip ?? 1, 0))
        case "Scan":
            guard let body = n.graph("body") else { return }
            let scanCount = Int(n.int("num_scan_inputs") ?? 0)
            let stateCount = n.inputs.count - scanCount
            let axes = n.ints("scan_input_axes")?.map(Int.init) ?? Array(repeating: 0, count: scanCount)
            var formal: [TensorInfo?] = n.inputs.prefix(max(stateCount, 0)).map { info($0) }
            var length: Int?
            for (j, name) in n.inputs.dropFirst(max(stateCount, 0)).enumerated() {
                guard var t = info(name) else { formal.append(nil); continue }
                var axis = j < axes.count ? axes[j] : 0
                if axis < 0 { axis += t.shape.count }
                guard axis >= 0 && axis < t.shape.count else { formal.append(nil); continue }
                if length == nil { length = t.shape[axis] }
                t.shape.remove(at: axis)
                formal.append(t)
            }
            if length == nil {
                warnings.append("Scan '\(n.label)': scan length unknown; its body is counted once")
            }
            nodes[rowIndex].note = "Scan: body counted × \(length.map(String.init) ?? "1 (length unknown)")"
            walkBody(body, formal: formal, scope: prefix + "/body", inner: inner, repeats: repeats * (length ?? 1))
        default:
            return
        }
    }

    /// Profiles one subgraph body as a model of its own.
    mutating func walkBody(_ body: Graph, formal: [TensorInfo?], scope: String, inner: OuterScope, repeats: Int) {
        var g = body
        for (i, t) in formal.enumerated() where i < g.inputs.count {
            if let t { g.inputs[i] = ValueInfo(g.inputs[i].name, t.dtype, t.shape.map { .fixed($0) }) }
        }
        // Outer-scope values the body (or a body nested in it) reads, declared to its inference.
        for name in body.outerReads().sorted() {
            if let v = inner.values[name] {
                g.addInitializer(Initializer(name: name, tensor: v))
            } else if let t = inner.types[name] {
                g.inputs.append(ValueInfo(name, t.dtype, t.shape.map { .fixed($0) }))
            }
        }
        let sub = Model(graph: g, opsetImports: model.opsetImports, irVersion: model.irVersion)
        do {
            let si = try ShapeInference(model: sub, strict: false)
            walk(g, scope: scope, inference: si, outer: inner, repeats: repeats)
        } catch {
            warnings.append("subgraph \(scope): shapes could not be inferred (\(error)); its nodes are not counted")
            for n in body.nodes {
                var row = NodeProfile(name: n.label, opType: n.opType, domain: n.domain, scope: scope)
                row.status = .unresolved
                row.note = "shape unknown: the subgraph's inputs could not be typed"
                row.repeats = repeats
                nodes.append(row)
            }
        }
    }
}
