import Foundation
import ModelIR
import TensorCore

/// Computes each value once: initializers with the same type, shape and bytes become one, and a
/// node that repeats an earlier node (same operator, domain, inputs and attributes) is dropped,
/// its readers reading the earlier node's outputs (as ONNX Runtime's and onnxslim's common
/// subexpression elimination do).
///
/// Before: `a = Conv(x, W1)`, `b = Conv(x, W2)` with W1 and W2 equal byte for byte.
/// After: `a = Conv(x, W1)`; readers of b read a.
/// Weights are compared cheaply: first by type, shape and their first 64 bytes (real weights
/// differ there, so their payloads are not read further), then in full.
/// Does not apply to: random generators, nodes with a tensor, graph or opaque attribute (their
/// attribute would need comparing by content: ConstantOfShape's `value`, If/Loop/Scan bodies),
/// nodes without outputs, a node with an output that is a graph output, an initializer that is
/// a graph input (it may be fed) or a graph output.
public struct CommonSubexpressionElimination: GraphPass {
    public let name = "CommonSubexpressionElimination"
    public init() {}

    static let nonDeterministic: Set<String> = ["RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"]

    struct WeightKey: Hashable {
        let dtype: Int32
        let shape: [Int]
        let prefix: [UInt8]
    }

    /// An attribute's value as exact text (floats by their bit patterns; strings as their bytes).
    static func text(_ v: AttributeValue) -> String {
        switch v {
        case .float(let f): return "f\(f.bitPattern)"
        case .int(let i): return "i\(i)"
        case .floats(let fs): return "F" + fs.map { String($0.bitPattern) }.joined(separator: ",")
        case .ints(let xs): return "I" + xs.map(String.init).joined(separator: ",")
        case .string(let d): return "s" + d.base64EncodedString()
        case .strings(let ds): return "S" + ds.map { $0.base64EncodedString() }.joined(separator: ",")
        default: return "?"
        }
    }

    public func apply(to graph: inout Graph) throws -> PassResult {
        var result = PassResult()
        let outs = Set(graph.outputs.map(\.name)), ins = Set(graph.inputs.map(\.name))
        var alias: [String: String] = [:]
        // 1. Equal initializers.
        var groups: [WeightKey: [Tensor]] = [:]
        var groupNames: [WeightKey: [String]] = [:]
        for i in graph.initializers where !outs.contains(i.name) && !ins.contains(i.name) && i.tensor.dtype != .string {
            let t = i.tensor
            let key = WeightKey(dtype: t.dtype.rawValue, shape: t.shape, prefix: t.withUnsafeBytes { Array($0.prefix(64)) })
            if let reps = groups[key] {
                if let j = reps.firstIndex(where: { r in r.byteCount == t.byteCount && r.withUnsafeBytes { a in t.withUnsafeBytes { b in
                    a.count == b.count && (a.count == 0 || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0) } } }) {
                    alias[i.name] = groupNames[key]![j]
                    result.removedValues[i.name] = "equal to initializer '\(groupNames[key]![j])'"
                    result.rewrites += 1
                    continue
                }
            }
            groups[key, default: []].append(t)
            groupNames[key, default: []].append(i.name)
        }
        // 2. Repeated nodes, in order (inputs first read through the aliases found so far).
        var seen: [String: Int] = [:]
        var drop = Set<Int>()
        for k in graph.nodes.indices {
            let n = graph.nodes[k]
            let inputs = n.inputs.map { alias[$0] ?? $0 }
            guard !n.outputs.isEmpty, !n.outputs.contains(where: { $0.isEmpty || outs.contains($0) }), !Self.nonDeterministic.contains(n.opType),
                  !n.attributes.contains(where: { a in
                      switch a.value {
                      case .tensor, .tensors, .graph, .graphs, .opaque: return true
                      default: return false
                      }
                  }) else { continue }
            let attrs = n.attributes.sorted { $0.name < $1.name }.map { "\($0.name)=" + Self.text($0.value) }.joined(separator: ";")
            let key = "\(n.domain)\u{1}\(n.opType)\u{1}\(inputs.joined(separator: "\u{2}"))\u{1}\(n.outputs.count)\u{1}\(attrs)"
            if let j = seen[key] {
                for (a, b) in zip(n.outputs, graph.nodes[j].outputs) {
                    alias[a] = b
                    result.removedValues[a] = "computed again by \(n.reportLabel): read '\(b)' instead"
                }
                drop.insert(k)
                result.rewrites += 1
            } else {
                seen[key] = k
            }
        }
        guard !alias.isEmpty else { return result }
        graph.removeNodes(at: drop)
        graph.redirectReads(alias)
        return result
    }
}
