import ModelIR

/// Removes what no graph output depends on: nodes none of whose outputs is read or is a graph
/// output, initializers nothing reads, and value_info of values that no longer exist
/// (`Graph.cleanup()`).
///
/// Before: `x -> A -> a -> y`, `a -> B -> b` (b unread), initializer `k` unread.
/// After: `x -> A -> a -> y`.
/// Preconditions: none; graph outputs and nodes without outputs are always kept.
public struct DeadCodeElimination: GraphPass {
    public let name = "DeadCodeElimination"
    public init() {}

    public func apply(to graph: inout Graph) throws -> PassResult {
        var before = Set<String>()
        for n in graph.nodes { before.formUnion(n.outputs.filter { !$0.isEmpty }) }
        let r = graph.cleanup()
        var result = PassResult(rewrites: r.nodes + r.initializers.count + r.valueInfo.count)
        guard r.nodes > 0 else { return result }
        for n in graph.nodes { before.subtract(n.outputs) }
        for v in before { result.removedValues[v] = "removed: no graph output depends on it" }
        return result
    }
}
