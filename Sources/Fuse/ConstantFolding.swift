import ModelIR
import Passes
import Runtime
import TensorCore

/// Evaluates, once, every node whose inputs are all constant, with the executor's own kernels
/// (`OpRegistry.standard`), and replaces it by initializers holding its outputs: weights that an
/// exporter computes in the graph (ConstantOfShape, Cast, Reshape or Transpose of an initializer,
/// Unsqueeze of a bias), and — with every input shape known — shape arithmetic.
///
/// Before: `w = Transpose(W0)`, `s = Shape(x)`, `t = Gather(s, 0)`, `y = Reshape(h, Concat(t, -1))`.
/// After: initializer `w = W0ᵀ`; with x's shape known also initializers `s`, `t` and the Concat's
/// output, so `y = Reshape(h, c)` reads a constant.
/// Constants are initializers (an initializer that is also a graph input counts only in IR
/// version < 4, where every initializer had to be listed as an input; from IR 4 on such an input
/// may be fed at run time) and the outputs of nodes folded before it (a single sweep in
/// topological order folds whole chains). `Shape` and `Size` are folded when `types` knows the
/// input's shape: `Fuser` passes the inferred types only when every runtime input's shape is fixed
/// by the model or pinned with `--input`, so a dynamic batch dimension is never baked in.
/// Does not apply to (the node stays): nodes without inputs (Constant: `ConstantToInitializer`),
/// random generators, nodes with a subgraph (If/Loop/Scan), QuantizeLinear/DequantizeLinear
/// (folding would turn int8 weights back into float ones), a node an output of which is a graph
/// output or already an initializer, ops without a kernel here, and a node whose kernel refuses
/// its inputs (the error is left for run time, where it belongs).
/// Folded values may be larger than what produced them (ConstantOfShape, Expand, Tile): the
/// peers (onnxsim, onnxslim) fold them all the same, and so does this pass.
public struct ConstantFolding: GraphPass {
    public let name = "ConstantFolding"
    let model: Model
    let types: [String: TensorInfo]?
    let registry: OpRegistry

    /// - Parameters:
    ///   - model: for its opset imports and IR version (its graph is not read).
    ///   - types: value types for folding Shape/Size of non-constant values; nil folds none.
    public init(model: Model, types: [String: TensorInfo]?, registry: OpRegistry = .standard) {
        var m = model
        m.graph = Graph()
        self.model = m
        self.types = types
        self.registry = registry
    }

    static let excluded: Set<String> = ["QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "Constant"]

    public func apply(to graph: inout Graph) throws -> PassResult {
        var result = PassResult()
        var known: [String: Tensor] = [:]
        let inputNames = Set(graph.inputs.map(\.name))
        for i in graph.initializers where model.irVersion < 4 || !inputNames.contains(i.name) { known[i.name] = i.tensor }
        let outs = Set(graph.outputs.map(\.name))
        var drop = Set<Int>()
        var lifted: [Initializer] = []
        for (k, n) in graph.nodes.enumerated() {
            guard !n.inputs.isEmpty, !n.inputs.allSatisfy(\.isEmpty), !Self.excluded.contains(n.opType),
                  !ShapeInference.nonDeterministic.contains(n.opType),
                  !n.outputs.contains(where: { outs.contains($0) || graph.isInitializer($0) }),
                  !n.attributes.contains(where: { a in
                      if case .graph = a.value { return true }
                      if case .graphs = a.value { return true }
                      return false
                  }) else { continue }
            let opset = model.opset(for: n.domain) ?? 0
            guard let impl = registry.implementation(n.opType, domain: n.domain, opset: opset) else { continue }
            var values: [Tensor]?
            if n.isDefaultDomain, n.opType == "Shape" || n.opType == "Size", let x = n.inputs.first,
               let info = known[x].map(TensorInfo.init) ?? types?[x] {
                values = (try? ShapeInference.metadataValue(of: n, opset: opset, input: info)).map { [$0] }
            } else {
                let ins = n.inputs.map { $0.isEmpty ? nil : known[$0] }
                guard zip(n.inputs, ins).allSatisfy({ $0.0.isEmpty || $0.1 != nil }) else { continue }
                values = try? impl.kernel(ins, KernelContext(node: n, opset: opset))
            }
            guard let vals = values, vals.count >= n.outputs.count, !vals.contains(where: { $0.dtype == .string }) else { continue }
            for (o, t) in zip(n.outputs, vals) where !o.isEmpty {
                known[o] = t
                lifted.append(Initializer(name: o, tensor: t))
            }
            drop.insert(k)
        }
        guard !drop.isEmpty else { return result }
        graph.removeNodes(at: drop)
        for i in lifted { graph.addInitializer(i) }
        result.rewrites = drop.count
        return result
    }
}
