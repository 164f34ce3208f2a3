import ModelIR
import TensorCore

/// Removes data movement that does nothing: a Reshape to the shape its input already has, a
/// Transpose whose permutation is the identity, and a pair of Transposes that compose to the
/// identity; merges a Transpose of a Transpose into one and a Reshape of a Reshape into one.
///
/// Before: `y = Reshape(x, s)` with x of shape s; `y = Transpose(Transpose(x, p), q)` with
/// `p[q[i]] = i`; `y = Reshape(Reshape(x, a), b)`.
/// After: readers of y read x; `y = Transpose(x, r)` with `r[i] = p[q[i]]` when that is not the
/// identity; `y = Reshape(x, b)`.
/// A no-op node becomes an `Identity` that `IdentityElimination` then removes (so a graph output
/// keeps its name the same way). Shapes are the declared ones (value_info, inputs: `Fuser`
/// records inferred shapes first when every input shape is fixed), never guessed.
/// Does not apply when: a Reshape's input or output shape is not known in full; a Transpose has
/// no `perm` and its input's rank is not declared; the inner node of a pair has another reader
/// or is a graph output (then only an outer node that is itself a no-op goes); the outer Reshape's
/// shape holds a 0 (it would copy a dimension of the inner one's input instead) or is not a
/// constant int64 initializer.
public struct ReshapeTransposeElimination: GraphPass {
    public let name = "ReshapeTransposeElimination"
    public init() {}

    func perm(_ n: Node, _ graph: Graph) -> [Int]? {
        if let p = n.ints("perm") { return p.map(Int.init) }
        guard let r = n.inputs.first.flatMap({ graph.type(of: $0)?.shape?.count }) else { return nil }
        return Array((0..<r).reversed())
    }

    public func apply(to graph: inout Graph) throws -> PassResult {
        var result = PassResult()
        let index = UseDefIndex(graph)
        var rewrites = 0
        var drop = Set<Int>()
        for (k, n) in graph.nodes.enumerated() where n.isDefaultDomain && n.outputs.count == 1 && !n.inputs.isEmpty {
            let x = n.inputs[0], y = n.outputs[0]
            switch n.opType {
            case "Reshape":
                if let s = graph.type(of: x)?.fixedShape, let t = graph.type(of: y)?.fixedShape, s == t {
                    graph.nodes[k] = Node(name: n.name, opType: "Identity", inputs: [x], outputs: [y])
                    rewrites += 1
                } else if let p = index.producer(of: x), !drop.contains(p), graph.nodes[p].isDefaultDomain, graph.nodes[p].opType == "Reshape",
                          index.hasSingleDirectReader(x) != nil, n.inputs.count == 2,
                          let shape = graph.initializer(named: n.inputs[1])?.tensor, shape.dtype == .int64,
                          !shape.scalars(as: Int64.self).contains(0) {
                    graph.nodes[k].inputs[0] = graph.nodes[p].inputs[0]
                    drop.insert(p)
                    result.removedValues[x] = "merged into \(n.reportLabel) (Reshape of a Reshape)"
                    rewrites += 1
                }
            case "Transpose":
                guard let q = perm(n, graph) else { continue }
                if q == Array(0..<q.count) {
                    graph.nodes[k] = Node(name: n.name, opType: "Identity", inputs: [x], outputs: [y])
                    rewrites += 1
                    continue
                }
                guard let pi = index.producer(of: x), !drop.contains(pi), graph.nodes[pi].isDefaultDomain, graph.nodes[pi].opType == "Transpose",
                      let p = perm(graph.nodes[pi], graph), p.count == q.count else { continue }
                let inner = graph.nodes[pi].inputs[0]
                let r = q.map { p[$0] }
                if r == Array(0..<r.count) {
                    graph.nodes[k] = Node(name: n.name, opType: "Identity", inputs: [inner], outputs: [y])
                    rewrites += 1
                } else if index.hasSingleDirectReader(x) != nil {
                    graph.nodes[k].inputs[0] = inner
                    graph.nodes[k][attribute: "perm"] = .ints(r.map(Int64.init))
                    drop.insert(pi)
                    result.removedValues[x] = "merged into \(n.reportLabel) (Transpose of a Transpose)"
                    rewrites += 1
                }
            default: continue
            }
        }
        graph.removeNodes(at: drop)
        guard rewrites > 0 else { return result }
        // The no-ops are Identities now: removed the one way that keeps graph output names.
        let r = try IdentityElimination().apply(to: &graph)
        result.removedValues.merge(r.removedValues) { a, _ in a }
        result.rewrites = rewrites
        return result
    }
}
