import ModelIR
import TensorCore

/// Folds an inference-mode BatchNormalization into the ConvTranspose that feeds it.
///
/// Before: `y = BN(ConvTranspose(x, W, b), γ, β, mean, var)`, W of shape `[Cin, Cout/g, k…]`.
/// After: `y = ConvTranspose(x, W', b')`. A ConvTranspose keeps its output channels on weight
/// axis 1, per group: input channel `i` belongs to group `q = i / (Cin/g)`, and `W[i, j, …]`
/// contributes to output channel `o = q·(Cout/g) + j`. So, with `s = γ / sqrt(var + ε)`:
/// `W'[i, j, …] = s[o] · W[i, j, …]`, `b'[o] = s[o] · (b[o] − mean[o]) + β[o]` (b = 0 when absent),
/// in Double, rounded to float32 once.
/// Does not apply when (the BN is listed in `leftAlone`): the BN's own guards
/// (`BatchNormAffine`: training mode, optional outputs, non-constant parameters); the
/// ConvTranspose output has another reader or is a graph output; the weight or bias is not a
/// float32 initializer, or `g · W.shape[1]` is not the BN's channel count, or `Cin` is not a
/// multiple of g.
public struct BatchNormIntoConvTranspose: GraphPass {
    public let name = "BatchNormIntoConvTranspose"
    public init() {}

    public func apply(to graph: inout Graph) throws -> PassResult {
        var result = PassResult()
        let index = UseDefIndex(graph)
        var names = NameAllocator(graph)
        var drop = Set<Int>()
        for site in BatchNormFoldSite.find(in: graph, index, producers: ["ConvTranspose"], result: &result) {
            let bn = graph.nodes[site.bn], ct = graph.nodes[site.producer]
            let m = site.affine.channels, g = Int(ct.int("group") ?? 1)
            guard g >= 1, ct.inputs.count >= 2, let w = graph.initializer(named: ct.inputs[1])?.tensor, w.dtype == .float32, w.rank >= 3,
                  w.shape[1] * g == m, w.shape[0] % g == 0 else {
                result.leftAlone[bn.reportLabel] = "\(ct.reportLabel) weight is not a float32 constant with \(m) output channels"
                continue
            }
            guard let bias = BatchNormFoldSite.bias(of: ct, channels: m, for: bn, graph, result: &result) else { continue }
            let s = site.affine.scale, t = site.affine.shift
            let cin = w.shape[0], outPer = w.shape[1], inPer = cin / g, kernel = w.count / (cin * outPer)
            var folded = Tensor(uninitialized: .float32, shape: w.shape)
            w.withUnsafeBufferPointer(as: Float.self) { src in
                folded.withUnsafeMutableBufferPointer(as: Float.self) { dst in
                    for i in 0..<cin {
                        let q = i / inPer
                        for j in 0..<outPer {
                            let sc = s[q * outPer + j], base = (i * outPer + j) * kernel
                            for k in base..<base + kernel { dst[k] = Float(Double(src[k]) * sc) }
                        }
                    }
                }
            }
            let newBias = (0..<m).map { Float(s[$0] * bias[$0] + t[$0]) }
            site.replace(in: &graph, names: &names, with: ct, weightOf: ct.inputs[1], weight: folded, bias: newBias, drop: &drop, result: &result)
        }
        BatchNormFoldSite.finish(&graph, drop: drop, result: &result)
        return result
    }
}
