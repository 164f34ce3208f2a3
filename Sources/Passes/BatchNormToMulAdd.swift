import ModelIR
import TensorCore

/// Rewrites an inference-mode BatchNormalization that nothing could absorb (after an Add or a
/// Concat, at a graph input: no Conv/ConvTranspose/Gemm before it) as the per-channel affine
/// map it computes, one Mul and one Add that any runtime runs and that later passes or runtimes
/// can fuse further (a following Conv, an elementwise chain).
///
/// Before: `y = BN(x, γ, β, mean, var)`, x of rank r ≥ 2 (N, C, …).
/// After: `y = Add(Mul(x, S), T)` with `S[c] = γ[c] / sqrt(var[c] + ε)`, `T[c] = β[c] − mean[c]·S[c]`,
/// in Double, rounded to float32 once, shaped `[C, 1, …, 1]` (r − 2 ones) so they broadcast over
/// NCHW (`[C]` for r = 2).
/// Runs after the passes that fold a BN into its producer; a BN after a Conv, ConvTranspose,
/// Gemm or MatMul that one of them left alone (a guard) is not rewritten here either.
/// Does not apply when (the BN is listed in `leftAlone`): the BN's own guards
/// (`BatchNormAffine`: training mode, optional outputs used, non-constant parameters); x's rank
/// or element type is not declared (value_info, a graph input) or x is not float32.
public struct BatchNormToMulAdd: GraphPass {
    public let name = "BatchNormToMulAdd"
    public init() {}

    public func apply(to graph: inout Graph) throws -> PassResult {
        var result = PassResult()
        var names = NameAllocator(graph)
        var out: [Node] = []
        out.reserveCapacity(graph.nodes.count + 8)
        var newInits: [Initializer] = []
        let index = UseDefIndex(graph)
        for bn in graph.nodes {
            guard bn.isDefaultDomain, bn.opType == "BatchNormalization" else { out.append(bn); continue }
            // A BN after a Conv/ConvTranspose/Gemm/MatMul that its folding pass left alone stays
            // as it is (listed there): only BNs with nothing to fold into are rewritten.
            if let p = index.producer(of: bn.inputs.first ?? ""), graph.nodes[p].isDefaultDomain,
               ["Conv", "ConvTranspose", "Gemm", "MatMul"].contains(graph.nodes[p].opType) { out.append(bn); continue }
            if let why = BatchNormAffine.refusal(bn, graph) {
                result.leftAlone[bn.reportLabel] = result.leftAlone[bn.reportLabel] ?? why
                out.append(bn); continue
            }
            let x = bn.inputs[0]
            guard let type = graph.type(of: x), let rank = type.shape?.count, rank >= 2, type.elementType == .float32,
                  let affine = BatchNormAffine(bn, graph) else {
                result.leftAlone[bn.reportLabel] = result.leftAlone[bn.reportLabel] ?? "the rank of its float32 input is not declared"
                out.append(bn); continue
            }
            let shape = [affine.channels] + [Int](repeating: 1, count: rank - 2)
            let sName = names.fresh(bn.label + "#scale"), tName = names.fresh(bn.label + "#shift")
            let mid = names.fresh(bn.label + "#scaled")
            newInits.append(Initializer(name: sName, tensor: Tensor(shape: shape, scalars: affine.scale.map { Float($0) })))
            newInits.append(Initializer(name: tName, tensor: Tensor(shape: shape, scalars: affine.shift.map { Float($0) })))
            let base = bn.name.isEmpty ? "" : bn.name
            out.append(Node(name: base.isEmpty ? "" : names.fresh(base + "#mul"), opType: "Mul", inputs: [x, sName], outputs: [mid]))
            out.append(Node(name: base.isEmpty ? "" : names.fresh(base + "#add"), opType: "Add", inputs: [mid, tName], outputs: [bn.outputs[0]]))
            result.leftAlone[bn.reportLabel] = nil
            result.rewrites += 1
        }
        guard result.rewrites > 0 else { return result }
        graph.nodes = out
        for i in newInits { graph.addInitializer(i) }
        return result
    }
}
