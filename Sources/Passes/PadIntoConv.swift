import ModelIR
import TensorCore

/// Folds a zero `Pad` on spatial axes into the padding of the Conv it feeds.
///
/// Before: `p = Pad(x, pads = [0, 0, t, l, 0, 0, b, r])`, `y = Conv(p, W, pads = [t0, l0, b0, r0])`.
/// After: `y = Conv(x, W, pads = [t0 + t, l0 + l, b0 + b, r0 + r])`.
/// Pad's `pads` list every axis's begins then every axis's ends; Conv's list the spatial axes'
/// begins then ends, so spatial axis i takes `pads[2 + i]` and `pads[rank + 2 + i]`. A Conv pads
/// with zeros, so this is exact.
/// Does not apply when: the mode is not `constant`; the fill value is not 0 (or not a constant);
/// `pads` is not a constant (an initializer, a Constant node, or the opset-2 attribute) or pads
/// (or crops, negative) the batch or channel axis or crops any axis; Pad-18's `axes` input is
/// given; the Pad output has a reader other than the Conv's input 0, or is a graph output; the
/// Conv uses `auto_pad` other than NOTSET.
public struct PadIntoConv: GraphPass {
    public let name = "PadIntoConv"
    public init() {}

    public func apply(to graph: inout Graph) throws -> PassResult {
        var result = PassResult()
        let index = UseDefIndex(graph)
        var drop = Set<Int>()
        for (pi, pad) in graph.nodes.enumerated() where pad.isDefaultDomain && pad.opType == "Pad" {
            guard pad.outputs.count == 1, let p = pad.outputs.first, !p.isEmpty, let x = pad.inputs.first, !x.isEmpty,
                  let use = index.hasSingleDirectReader(p), use.slot == 0 else { continue }
            var conv = graph.nodes[use.node]
            guard conv.isDefaultDomain, conv.opType == "Conv", (conv.string("auto_pad") ?? "NOTSET") == "NOTSET",
                  (pad.string("mode") ?? "constant") == "constant",
                  let pads = Self.pads(pad, graph, index), pads.count % 2 == 0, pads.count >= 6, pads.allSatisfy({ $0 >= 0 }),
                  Self.fillIsZero(pad, graph, index) else { continue }
            let rank = pads.count / 2, spatial = rank - 2
            guard pads[0] == 0, pads[1] == 0, pads[rank] == 0, pads[rank + 1] == 0 else { continue }
            var convPads = conv.ints("pads") ?? [Int64](repeating: 0, count: 2 * spatial)
            guard convPads.count == 2 * spatial else { continue }
            for i in 0..<spatial {
                convPads[i] += pads[2 + i]
                convPads[spatial + i] += pads[rank + 2 + i]
            }
            conv[attribute: "pads"] = .ints(convPads)
            conv.inputs[0] = x
            graph.nodes[use.node] = conv
            drop.insert(pi)
            result.removedValues[p] = "folded into \(conv.reportLabel) as padding"
        }
        graph.removeNodes(at: drop)
        result.rewrites = drop.count
        return result
    }

    /// The pads of a Pad node: the `pads` input (Pad-11+) or attribute (Pad-2); nil when not
    /// constant or when Pad-18's `axes` is given.
    static func pads(_ pad: Node, _ graph: Graph, _ index: UseDefIndex) -> [Int64]? {
        if pad.inputs.count >= 4, !pad.inputs[3].isEmpty { return nil }
        if pad.inputs.count >= 2, !pad.inputs[1].isEmpty {
            guard let t = ConstantValue.tensor(pad.inputs[1], graph, index), t.dtype == .int64 else { return nil }
            return t.scalars(as: Int64.self)
        }
        return pad.ints("pads")
    }

    static func fillIsZero(_ pad: Node, _ graph: Graph, _ index: UseDefIndex) -> Bool {
        if pad.inputs.count >= 3, !pad.inputs[2].isEmpty {
            guard let t = ConstantValue.tensor(pad.inputs[2], graph, index), t.count <= 1 else { return false }
            return t.count == 0 || t.floatValues()[0] == 0
        }
        return (pad.float("value") ?? 0) == 0
    }
}

/// Constant values as a pass finds them: an initializer, or the output of a Constant node.
enum ConstantValue {
    static func tensor(_ name: String, _ graph: Graph, _ index: UseDefIndex) -> Tensor? {
        if let i = graph.initializer(named: name) { return i.tensor }
        if let p = index.producer(of: name) { return ConstantToInitializer.value(of: graph.nodes[p]) }
        return nil
    }

    /// A one-element float32 constant, as Clip's bounds are.
    static func scalar(_ name: String, _ graph: Graph, _ index: UseDefIndex) -> Float? {
        guard let t = tensor(name, graph, index), t.count == 1, t.dtype == .float32 else { return nil }
        return t.scalars(as: Float.self)[0]
    }
}
