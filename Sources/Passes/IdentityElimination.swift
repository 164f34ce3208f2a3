import ModelIR

/// Removes `Identity` nodes (and inference `Dropout`, the same function): their readers read the
/// input instead.
///
/// Before: `W -> Identity -> w1`, `Conv(x, w1)` (exporters write shared weights this way).
/// After: `Conv(x, W)`.
/// A chain of Identities collapses to its first input; reads inside If/Loop/Scan bodies are
/// redirected too. When the Identity's output `y` is a graph output, the output keeps its name:
/// the producer of the input `x` is renamed to write `y` (its other readers read `y`).
/// Does not apply to (the Identity stays): an Identity whose output is a graph output and whose
/// input is a graph input, an initializer, another graph output, or an outer-scope value (no
/// node here produces it) — the output name could only be kept by an Identity.
public struct IdentityElimination: GraphPass {
    public let name = "IdentityElimination"
    public init() {}

    /// An Identity, or an inference Dropout (no training_mode input, or is_test in opsets < 7;
    /// its mask output absent or read by nothing): both pass their input through unchanged at
    /// inference.
    static func isIdentity(_ n: Node, _ index: UseDefIndex) -> Bool {
        guard n.isDefaultDomain, !n.inputs.isEmpty, !n.inputs[0].isEmpty, !n.outputs.isEmpty, !n.outputs[0].isEmpty else { return false }
        switch n.opType {
        case "Identity": return n.inputs.count == 1 && n.outputs.count == 1
        case "Dropout":
            return n.outputs.dropFirst().allSatisfy { $0.isEmpty || !index.isLive($0) } && (n.inputs.count < 3 || n.inputs[2].isEmpty)
                && (n.int("is_test").map { $0 != 0 } ?? true)
        default: return false
        }
    }

    public func apply(to graph: inout Graph) throws -> PassResult {
        var result = PassResult()
        let outs = Set(graph.outputs.map(\.name))
        // 1. Identities whose output is no graph output: one batched redirect.
        var alias: [String: String] = [:]
        var drop = Set<Int>()
        let index = UseDefIndex(graph)
        for (i, n) in graph.nodes.enumerated() where Self.isIdentity(n, index) && !outs.contains(n.outputs[0]) {
            var x = n.inputs[0]
            while let a = alias[x] { x = a }
            alias[n.outputs[0]] = x
            result.removedValues[n.outputs[0]] = "removed with \(n.reportLabel): read '\(x)' instead"
            drop.insert(i)
        }
        if !drop.isEmpty {
            graph.removeNodes(at: drop)
            graph.redirectReads(alias)
            result.rewrites += drop.count
        }
        // 2. Identities writing a graph output: rename the input's producer (one at a time; rare).
        var k = 0
        while k < graph.nodes.count {
            let n = graph.nodes[k]
            guard Self.isIdentity(n, index) else { k += 1; continue }
            let x = n.inputs[0], y = n.outputs[0]
            let isOutput = Set(graph.outputs.map(\.name))
            guard isOutput.contains(y), !isOutput.contains(x), !graph.isInitializer(x),
                  !graph.inputs.contains(where: { $0.name == x }), graph.producer(of: x) != nil else { k += 1; continue }
            graph.nodes.remove(at: k)
            graph.replaceUses(of: y, with: x)  // x's producer now writes y; x's readers read y
            result.removedValues[x] = "renamed to graph output '\(y)' (\(n.reportLabel) removed)"
            result.rewrites += 1
        }
        return result
    }
}
