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
        let r = graph.cleanup()
        return PassResult(rewrites: r.nodes + r.initializers.count + r.valueInfo.count)
    }
}
