import ModelIR
import TensorCore

/// Folds an inference-mode BatchNormalization into the Conv that feeds it, as ONNX Runtime's
/// graph optimizer does; this is also what lets an activation after the BN fuse into the Conv.
///
/// Before: `y = BN(Conv(x, W, b), γ, β, mean, var)`.
/// After: `y = Conv(x, W', b')` with, per output channel c,
/// `s = γ[c] / sqrt(var[c] + ε)`, `W'[c, …] = s · W[c, …]`, `b'[c] = s · (b[c] − mean[c]) + β[c]`
/// (b = 0 when the Conv has no bias; ε defaults to 1e-5), computed in float32. Grouped convs
/// work unchanged since the weight's first axis is always the output channel. The folded weight
/// and bias are new initializers (`<W>#bnfolded`, `<BN>#foldedbias`); the originals stay for
/// their other readers (dead-code elimination drops them otherwise). The Conv writes the BN's
/// output name.
/// Does not apply when: the BN is in training mode or has `spatial = 0` or uses its optional
/// outputs; the Conv output has another reader (direct or inside a body) or is a graph output;
/// any BN parameter, the weight or the bias is not a float32 initializer of the right size.
public struct BatchNormIntoConv: GraphPass {
    public let name = "BatchNormIntoConv"
    public init() {}

    public func apply(to graph: inout Graph) throws -> PassResult {
        var result = PassResult()
        let index = UseDefIndex(graph)
        var names = NameAllocator(graph)
        var drop = Set<Int>()
        for (bi, bn) in graph.nodes.enumerated() where bn.isDefaultDomain && bn.opType == "BatchNormalization" {
            guard bn.inputs.count == 5, bn.outputs.count >= 1, bn.outputs.dropFirst().allSatisfy(\.isEmpty),
                  (bn.int("training_mode") ?? 0) == 0, (bn.int("spatial") ?? 1) == 1,
                  let ci = index.producer(of: bn.inputs[0]), !drop.contains(ci) else { continue }
            let conv = graph.nodes[ci]
            let x = bn.inputs[0]
            guard conv.isDefaultDomain, conv.opType == "Conv", conv.outputs.count == 1, index.hasSingleDirectReader(x) != nil,
                  conv.inputs.count >= 2,
                  let w = graph.initializer(named: conv.inputs[1])?.tensor, w.dtype == .float32, w.rank >= 3 else { continue }
            let params = bn.inputs[1...4].map { graph.initializer(named: $0)?.tensor }
            guard params.allSatisfy({ $0?.dtype == .float32 && $0?.count == w.shape[0] }) else { continue }
            var bias: [Float]
            if conv.inputs.count >= 3, !conv.inputs[2].isEmpty {
                guard let b = graph.initializer(named: conv.inputs[2])?.tensor, b.dtype == .float32, b.count == w.shape[0] else { continue }
                bias = b.scalars(as: Float.self)
            } else {
                bias = [Float](repeating: 0, count: w.shape[0])
            }
            let gamma = params[0]!.scalars(as: Float.self), beta = params[1]!.scalars(as: Float.self)
            let mean = params[2]!.scalars(as: Float.self), variance = params[3]!.scalars(as: Float.self)
            let eps = bn.float("epsilon") ?? 1e-5
            let m = w.shape[0], per = w.count / m
            var folded = Tensor(uninitialized: .float32, shape: w.shape)
            w.withUnsafeBufferPointer(as: Float.self) { src in
                folded.withUnsafeMutableBufferPointer(as: Float.self) { dst in
                    for c in 0..<m {
                        let s = gamma[c] / (variance[c] + eps).squareRoot()
                        for k in 0..<per { dst[c * per + k] = src[c * per + k] * s }
                        bias[c] = s * (bias[c] - mean[c]) + beta[c]
                    }
                }
            }
            let wName = names.fresh(conv.inputs[1] + "#bnfolded")
            graph.addInitializer(Initializer(name: wName, tensor: folded))
            let bName = names.fresh(bn.label + "#foldedbias")
            graph.addInitializer(Initializer(name: bName, tensor: Tensor(shape: [m], scalars: bias)))
            var newConv = conv
            newConv.inputs = [conv.inputs[0], wName, bName]
            newConv.outputs = [bn.outputs[0]]
            graph.nodes[ci] = newConv
            drop.insert(bi)
            result.removedValues[x] = "folded into \(conv.reportLabel) with \(bn.reportLabel)"
        }
        if !drop.isEmpty { graph.nodes = graph.nodes.enumerated().filter { !drop.contains($0.offset) }.map(\.element) }
        result.rewrites = drop.count
        return result
    }
}
