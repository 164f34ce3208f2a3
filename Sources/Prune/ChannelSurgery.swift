import ModelIR
import Runtime
import TensorCore

/// Applies a plan: every constant a group indexes loses the removed channels' entries (weights,
/// biases, BN parameters, Gemm columns), depthwise convolutions get their new `group`, and
/// declared value_info shapes are brought in line with the new channel counts.
public enum ChannelSurgery {
    /// The pruned copy of `model` (the model itself is not changed), and notes on where the
    /// constants removed channels emitted could not be folded exactly (`RemovedChannelFold`).
    /// - Parameters:
    ///   - pins: the `--input` pins, to re-infer shapes for value_info and run the fold.
    ///   - foldRemoved: fold removed channels' constant outputs into the next layers' biases.
    /// - Throws: `GraphError` when a constant named by the plan is missing.
    public static func apply(_ plan: PrunePlan, to model: Model, pins: [String: [Int]] = [:],
                             foldRemoved: Bool = true) throws -> (model: Model, notes: [String]) {
        var m = model
        let fold: (corrections: [RemovedChannelFold.Correction], notes: [String]) =
            foldRemoved ? try RemovedChannelFold.corrections(plan, model: model, pins: pins) : ([], [])
        var removals: [String: [Int: Set<Int>]] = [:]
        var depthwise = Set<String>()
        for d in plan.decisions where !d.removed.isEmpty {
            for s in d.group.slices { removals[s.tensor, default: [:]][s.axis, default: []].formUnion(s.indices(removing: d.removed)) }
            depthwise.formUnion(d.group.depthwiseNodes)
        }
        guard !removals.isEmpty else { return (m, []) }
        for (name, axes) in removals.sorted(by: { $0.key < $1.key }) {
            guard var t = m.graph.constantTensor(named: name) else { throw GraphError.noSuchValue(name) }
            for (axis, gone) in axes.sorted(by: { $0.key < $1.key }) {
                t = t.selecting((0..<t.shape[axis]).filter { !gone.contains($0) }, alongAxis: axis)
            }
            try m.graph.replaceConstant(named: name, with: t)
        }
        // Channel-axis Splits get the sizes of what they now cut.
        var removedByGroup: [Int: Set<Int>] = [:]
        for d in plan.decisions where !d.removed.isEmpty { removedByGroup[d.group.id] = Set(d.removed) }
        for split in plan.splits {
            let sizes = split.sizes(removing: removedByGroup)
            guard sizes != split.sizes(removing: [:]) else { continue }
            var node = m.graph.nodes[split.node]
            let value = Tensor(shape: [sizes.count], scalars: sizes.map(Int64.init))
            if node.ints("split") != nil || (m.opset(for: "") ?? 13) < 13 {
                node[attribute: "split"] = .ints(sizes.map(Int64.init))
            } else if node.inputs.count > 1, !node.inputs[1].isEmpty, let src = m.graph.constantSource(of: node.inputs[1]) {
                try m.graph.replaceConstant(named: src.name, with: value)
            } else {
                // Equal parts (num_outputs or none given) are no longer equal: give the sizes.
                let name = m.graph.uniqueName(node.label + ".split_sizes")
                m.graph.addInitializer(Initializer(name: name, tensor: value))
                node[attribute: "num_outputs"] = nil
                while node.inputs.count < 2 { node.inputs.append("") }
                node.inputs[1] = name
            }
            m.graph.nodes[split.node] = node
        }
        for out in depthwise {
            guard let p = m.graph.producer(of: out), let w = m.graph.constantSource(of: m.graph.nodes[p].inputs[1])?.tensor else {
                throw GraphError.noSuchValue(out)
            }
            m.graph.nodes[p][attribute: "group"] = .int(Int64(w.shape[0]))
        }
        var kept: [String: [Int]] = [:]
        for d in plan.decisions where !d.removed.isEmpty {
            let gone = Set(d.removed)
            for s in d.group.slices where s.role == .output && s.start == 0 {
                kept[s.node] = (0..<d.group.channels).filter { !gone.contains($0) }
            }
        }
        try RemovedChannelFold.apply(fold.corrections, to: &m, kept: kept)
        try refreshValueInfo(&m, pins: pins)
        return (m, fold.notes)
    }

    /// Re-infers shapes and rewrites every declared fixed dimension that changed; dynamic
    /// dimensions (symbolic, unknown, paddle2onnx's -1) stay as the exporter wrote them.
    static func refreshValueInfo(_ m: inout Model, pins: [String: [Int]]) throws {
        let shapes = try ShapeInference(model: m, pins: pins)
        for i in m.graph.valueInfo.indices {
            guard var t = m.graph.valueInfo[i].type, var dims = t.shape, let now = shapes.types[m.graph.valueInfo[i].name]?.shape,
                  now.count == dims.count else { continue }
            var changed = false
            for k in dims.indices {
                if let f = dims[k].value, f != now[k] { dims[k] = .fixed(now[k]); changed = true }
            }
            if changed { t.shape = dims; m.graph.valueInfo[i].type = t }
        }
    }
}
