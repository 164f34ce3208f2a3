import ModelIR
import TensorCore

/// Folds an inference-mode BatchNormalization into the Conv that feeds it, as ONNX Runtime's
/// graph optimizer does; this is also what lets an activation after the BN fuse into the Conv.
///
/// Before: `y = BN(Conv(x, W, b), γ, β, mean, var)`.
/// After: `y = Conv(x, W', b')` with, per output channel c,
/// `s = γ[c] / sqrt(var[c] + ε)`, `W'[c, …] = s · W[c, …]`, `b'[c] = s · (b[c] − mean[c]) + β[c]`
/// (b = 0 when the Conv has no bias; ε defaults to 1e-5), computed in Double and rounded to
/// float32 once. Grouped convs work unchanged since the weight's first axis is always the output
/// channel. The folded weight and bias are new initializers (`<W>#bnfolded`, `<BN>#foldedbias`);
/// the originals stay for their other readers (dead-code elimination drops them otherwise). The
/// Conv writes the BN's output name.
/// Does not apply when (the BN is listed in `leftAlone`): the BN is in training mode or has
/// `spatial = 0` or uses its optional outputs; the Conv output has another reader (direct or
/// inside a body) or is a graph output; any BN parameter, the weight or the bias is not a
/// float32 initializer of the right size.
public struct BatchNormIntoConv: GraphPass {
    public let name = "BatchNormIntoConv"
    public init() {}

    public func apply(to graph: inout Graph) throws -> PassResult {
        var result = PassResult()
        let index = UseDefIndex(graph)
        var names = NameAllocator(graph)
        var drop = Set<Int>()
        for site in BatchNormFoldSite.find(in: graph, index, producers: ["Conv"], result: &result) {
            let bn = graph.nodes[site.bn], conv = graph.nodes[site.producer]
            let m = site.affine.channels
            guard conv.inputs.count >= 2, let w = graph.initializer(named: conv.inputs[1])?.tensor, w.dtype == .float32, w.rank >= 3,
                  w.shape[0] == m else {
                result.leftAlone[bn.reportLabel] = "\(conv.reportLabel) weight is not a float32 constant with \(m) output channels"
                continue
            }
            guard let bias = BatchNormFoldSite.bias(of: conv, channels: m, for: bn, graph, result: &result) else { continue }
            let s = site.affine.scale, t = site.affine.shift
            let per = w.count / m
            var folded = Tensor(uninitialized: .float32, shape: w.shape)
            w.withUnsafeBufferPointer(as: Float.self) { src in
                folded.withUnsafeMutableBufferPointer(as: Float.self) { dst in
                    for c in 0..<m {
                        for k in c * per..<(c + 1) * per { dst[k] = Float(Double(src[k]) * s[c]) }
                    }
                }
            }
            let newBias = (0..<m).map { Float(s[$0] * bias[$0] + t[$0]) }
            site.replace(in: &graph, names: &names, with: conv, weightOf: conv.inputs[1], weight: folded, bias: newBias, drop: &drop, result: &result)
        }
        BatchNormFoldSite.finish(&graph, drop: drop, result: &result)
        return result
    }
}
