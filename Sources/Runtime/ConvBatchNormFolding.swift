import Foundation
import ModelIR
import TensorCore

/// Folds an inference-mode BatchNormalization into the Conv that feeds it, for execution only
/// (the model is not changed), as ONNX Runtime's graph optimizer does. This is what lets the
/// activation after the BN fuse into the Conv.
///
/// Before: `y = BN(Conv(x, W, b))`; after: `y = Conv(x, W', b')` with, per output channel c,
/// `s = γ[c] / sqrt(var[c] + ε)`, `W'[c, …] = s · W[c, …]`, `b'[c] = s · (b[c] − mean[c]) + β[c]`
/// (b = 0 when the Conv has no bias; ε defaults to 1e-5). Grouped convs work unchanged since the
/// weight's first axis is always the output channel. Applied only when the Conv output has no
/// other reader, is no graph output, and every BN and Conv parameter is a float32 initializer.
enum ConvBatchNormFolding {
    /// Rewrites `graph` in place; returns the names of the Conv outputs that no longer exist.
    static func fold(_ graph: inout Graph) -> Set<String> {
        var removed = Set<String>()
        let index = UseDefIndex(graph)

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
            let wName = graph.uniqueName(conv.inputs[1] + "#bnfolded")
            graph.addInitializer(Initializer(name: wName, tensor: folded))
            let bName = graph.uniqueName(bn.label + "#foldedbias")
            graph.addInitializer(Initializer(name: bName, tensor: Tensor(shape: [m], scalars: bias)))
            var newConv = conv
            newConv.inputs = [conv.inputs[0], wName, bName]
            newConv.outputs = [bn.outputs[0]]
            graph.nodes[ci] = newConv
            drop.insert(bi)
            removed.insert(x)
        }
        if !drop.isEmpty { graph.nodes = graph.nodes.enumerated().filter { !drop.contains($0.offset) }.map(\.element) }
        return removed
    }
}
