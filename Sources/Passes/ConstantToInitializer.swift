import ModelIR
import TensorCore

/// Lifts `Constant` nodes into initializers of the same name, so nothing constant runs per
/// sample and later passes find weights and bounds where they look (initializers).
///
/// Before: `Constant(value = T) -> c`, `Conv(x, c)`.
/// After: initializer `c = T`, `Conv(x, c)`.
/// Forms (ONNX Constant-13): `value` (a tensor), `value_float` (a float32 scalar), `value_floats`
/// (1-D float32), `value_int` (an int64 scalar), `value_ints` (1-D int64).
/// Does not apply to: `sparse_value` and `value_string(s)` (not modeled as `Tensor`), a Constant
/// outside the default domain, or one whose output is a graph output (an initializer listed as
/// an output confuses some consumers; the node stays).
public struct ConstantToInitializer: GraphPass {
    public let name = "ConstantToInitializer"
    public init() {}

    /// The tensor a Constant node holds, or nil when it uses a form this pass does not lift.
    public static func value(of n: Node) -> Tensor? {
        guard n.isDefaultDomain, n.opType == "Constant" else { return nil }
        if let t = n.tensor("value") { return t }
        if let f = n.float("value_float") { return Tensor(scalar: f) }
        if let fs = n.floats("value_floats") { return Tensor(shape: [fs.count], scalars: fs) }
        if let i = n.int("value_int") { return Tensor(scalar: i) }
        if let ints = n.ints("value_ints") { return Tensor(shape: [ints.count], scalars: ints) }
        return nil
    }

    public func apply(to graph: inout Graph) throws -> PassResult {
        let outs = Set(graph.outputs.map(\.name))
        var lifted: [Initializer] = []
        var drop = Set<Int>()
        for (i, n) in graph.nodes.enumerated() {
            guard n.outputs.count == 1, let o = n.outputs.first, !o.isEmpty, !outs.contains(o),
                  !graph.isInitializer(o), let t = Self.value(of: n) else { continue }
            lifted.append(Initializer(name: o, tensor: t))
            drop.insert(i)
        }
        guard !drop.isEmpty else { return PassResult() }
        for i in lifted { graph.addInitializer(i) }
        graph.removeNodes(at: drop)
        return PassResult(rewrites: drop.count)
    }
}
