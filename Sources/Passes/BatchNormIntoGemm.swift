import ModelIR
import TensorCore

/// Folds an inference-mode BatchNormalization into the Gemm, or the MatMul with a constant
/// 2-D weight, that feeds it (a BN after a Linear layer: BatchNorm1d on `[N, M]`).
///
/// Before: `y = BN(Gemm(A, B, C; α, β, transA, transB))` or `y = BN(MatMul(A, B))` with A 2-D.
/// After: `y = Gemm(A, B', C'; α, β = 1, transA, transB)`. The BN acts on axis 1 of the 2-D
/// output, the columns j of the product, so with `s = γ / sqrt(var + ε)`:
/// `B'[k, j] = s[j] · B[k, j]` (transB = 0; `B'[j, k]` when transB = 1),
/// `C'[j] = s[j] · (β·C[j] − mean[j]) + β_BN[j]` (C = 0 when absent; α stays, it multiplies B'),
/// in Double, rounded to float32 once. A MatMul becomes a Gemm with α = β = 1, transB = 0.
/// Does not apply when (the BN is listed in `leftAlone`): the BN's own guards
/// (`BatchNormAffine`); the producer's output has another reader or is a graph output; B is not
/// a 2-D float32 initializer with the BN's channel count as its column count; C is not a float32
/// initializer of 1 or M elements (a per-row `[N, M]` C is left alone); for MatMul, A is not
/// known to be 2-D (its declared type; a batched MatMul's axis 1 is not the column axis).
public struct BatchNormIntoGemm: GraphPass {
    public let name = "BatchNormIntoGemm"
    public init() {}

    public func apply(to graph: inout Graph) throws -> PassResult {
        var result = PassResult()
        let index = UseDefIndex(graph)
        var names = NameAllocator(graph)
        var drop = Set<Int>()
        for site in BatchNormFoldSite.find(in: graph, index, producers: ["Gemm", "MatMul"], result: &result) {
            let bn = graph.nodes[site.bn], p = graph.nodes[site.producer]
            let m = site.affine.channels
            let isGemm = p.opType == "Gemm"
            let transB = isGemm && (p.int("transB") ?? 0) != 0
            func refuse(_ why: String) { result.leftAlone[bn.reportLabel] = "\(p.reportLabel) " + why }
            guard p.inputs.count >= 2, let b = graph.initializer(named: p.inputs[1])?.tensor, b.dtype == .float32, b.rank == 2,
                  (transB ? b.shape[0] : b.shape[1]) == m else {
                refuse("weight is not a 2-D float32 constant with \(m) columns"); continue
            }
            if !isGemm {
                guard graph.type(of: p.inputs[0])?.shape?.count == 2 else { refuse("input is not known to be 2-D"); continue }
            }
            var c = [Double](repeating: 0, count: m)
            if isGemm, p.inputs.count >= 3, !p.inputs[2].isEmpty {
                guard let v = doubles(p.inputs[2], graph), v.count == 1 || v.count == m,
                      (graph.initializer(named: p.inputs[2])?.tensor.shape.dropLast().allSatisfy { $0 == 1 } ?? false) else {
                    refuse("C is not a float32 constant of 1 or \(m) elements"); continue
                }
                let beta = Double(p.float("beta") ?? 1)
                c = (0..<m).map { beta * v[v.count == 1 ? 0 : $0] }
            }
            let s = site.affine.scale, t = site.affine.shift
            var folded = Tensor(uninitialized: .float32, shape: b.shape)
            let rows = b.shape[0], cols = b.shape[1]
            b.withUnsafeBufferPointer(as: Float.self) { src in
                folded.withUnsafeMutableBufferPointer(as: Float.self) { dst in
                    for r in 0..<rows {
                        for k in 0..<cols { dst[r * cols + k] = Float(Double(src[r * cols + k]) * s[transB ? r : k]) }
                    }
                }
            }
            let newC = (0..<m).map { Float(s[$0] * c[$0] + t[$0]) }
            var node = isGemm ? p : Node(name: p.name, opType: "Gemm", inputs: [], outputs: [])
            node[attribute: "beta"] = nil
            site.replace(in: &graph, names: &names, with: node, weightOf: p.inputs[1], weight: folded, bias: newC, drop: &drop, result: &result)
        }
        BatchNormFoldSite.finish(&graph, drop: drop, result: &result)
        return result
    }
}
