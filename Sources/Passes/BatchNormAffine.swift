import ModelIR
import TensorCore

/// An inference BatchNormalization as the per-channel affine map it computes, in Double:
/// `y = s[c]·x + t[c]` with `s = γ / sqrt(var + ε)` and `t = β − mean·s` (ε defaults to 1e-5).
/// Shared by the passes that fold a BN into something else (`BatchNormIntoConv`,
/// `BatchNormIntoConvTranspose`, `BatchNormIntoGemm`, `BatchNormToMulAdd`).
struct BatchNormAffine {
    let scale: [Double]
    let shift: [Double]
    var channels: Int { scale.count }

    /// nil — the BN is left alone — when: it is not a default-domain BatchNormalization with five
    /// inputs; it is in training mode (`training_mode = 1`) or has `spatial = 0`; it uses its
    /// optional outputs (running mean/var, saved statistics); any of γ, β, mean, var is not a
    /// float32 initializer (non-constant parameters) or the four differ in length.
    init?(_ bn: Node, _ graph: Graph) {
        guard bn.isDefaultDomain, bn.opType == "BatchNormalization", bn.inputs.count == 5, bn.outputs.count >= 1,
              bn.outputs.dropFirst().allSatisfy(\.isEmpty),
              (bn.int("training_mode") ?? 0) == 0, (bn.int("spatial") ?? 1) == 1 else { return nil }
        let params = bn.inputs[1...4].map { graph.initializer(named: $0)?.tensor }
        guard let c = params[0]?.count, c > 0,
              params.allSatisfy({ $0?.dtype == .float32 && $0?.count == c }) else { return nil }
        let gamma = params[0]!.scalars(as: Float.self), beta = params[1]!.scalars(as: Float.self)
        let mean = params[2]!.scalars(as: Float.self), variance = params[3]!.scalars(as: Float.self)
        let eps = Double(bn.float("epsilon") ?? 1e-5)
        var s = [Double](repeating: 0, count: c), t = [Double](repeating: 0, count: c)
        for i in 0..<c {
            s[i] = Double(gamma[i]) / (Double(variance[i]) + eps).squareRoot()
            t[i] = Double(beta[i]) - Double(mean[i]) * s[i]
        }
        scale = s
        shift = t
    }

    /// Why `bn` is left alone, for reports (nil when `init` succeeds).
    static func refusal(_ bn: Node, _ graph: Graph) -> String? {
        if (bn.int("training_mode") ?? 0) != 0 { return "training_mode = 1" }
        if bn.outputs.dropFirst().contains(where: { !$0.isEmpty }) { return "its optional outputs are used" }
        if (bn.int("spatial") ?? 1) != 1 { return "spatial = 0" }
        if bn.inputs.count == 5, bn.inputs[1...4].contains(where: { graph.initializer(named: $0)?.tensor.dtype != .float32 }) {
            return "a parameter is not a float32 constant"
        }
        return BatchNormAffine(bn, graph) == nil ? "its parameters are malformed" : nil
    }
}

/// A float32 constant read as Double (nil when `name` is no float32 initializer).
func doubles(_ name: String, _ graph: Graph) -> [Double]? {
    guard let t = graph.initializer(named: name)?.tensor, t.dtype == .float32 else { return nil }
    return t.scalars(as: Float.self).map(Double.init)
}

/// A BatchNormalization that directly follows a node of one of the folding passes' producer ops.
struct BatchNormFoldSite {
    let bn: Int
    let producer: Int
    let affine: BatchNormAffine

    /// Every BN whose input comes from a default-domain node of `ops`, with the guards every
    /// folding pass shares: the producer has one output, read only by this BN (directly, not
    /// inside a body) and not a graph output; the BN is foldable (`BatchNormAffine`). A BN that
    /// follows such a producer but fails a guard is recorded in `result.leftAlone`.
    static func find(in graph: Graph, _ index: UseDefIndex, producers ops: Set<String>, result: inout PassResult) -> [BatchNormFoldSite] {
        var out: [BatchNormFoldSite] = []
        for (bi, bn) in graph.nodes.enumerated() where bn.isDefaultDomain && bn.opType == "BatchNormalization" {
            guard let x = bn.inputs.first, !x.isEmpty, let pi = index.producer(of: x) else { continue }
            let p = graph.nodes[pi]
            guard p.isDefaultDomain, ops.contains(p.opType) else { continue }
            let why: String?
            if p.outputs.count != 1 {
                why = "\(p.reportLabel) has several outputs"
            } else if index.isGraphOutput(x) {
                why = "\(p.reportLabel) output is a graph output"
            } else if index.hasSingleDirectReader(x) == nil {
                why = "\(p.reportLabel) output has another reader"
            } else if let r = BatchNormAffine.refusal(bn, graph) {
                why = r
            } else {
                why = nil
            }
            if let why {
                result.leftAlone[bn.reportLabel] = why
                continue
            }
            out.append(BatchNormFoldSite(bn: bi, producer: pi, affine: BatchNormAffine(bn, graph)!))
        }
        return out
    }
}

extension BatchNormFoldSite {
    /// The producer's optional bias input (index 2) as Doubles: zeros when absent; nil (and the
    /// BN listed in `leftAlone`) when it is not a float32 constant of `channels` values.
    static func bias(of p: Node, channels m: Int, for bn: Node, _ graph: Graph, result: inout PassResult) -> [Double]? {
        guard p.inputs.count >= 3, !p.inputs[2].isEmpty else { return [Double](repeating: 0, count: m) }
        guard let b = doubles(p.inputs[2], graph), b.count == m else {
            result.leftAlone[bn.reportLabel] = "\(p.reportLabel) bias is not a float32 constant"
            return nil
        }
        return b
    }

    /// The rewrite every folding pass ends with: `node` (the producer, possibly with another op
    /// type or attributes) reads the folded weight and bias as new initializers named after the
    /// old weight and the BN, and writes the BN's output; the BN is marked for removal (`drop`)
    /// and its input recorded as folded away.
    func replace(in graph: inout Graph, names: inout NameAllocator, with node: Node, weightOf weightSource: String,
                 weight: Tensor, bias: [Float], drop: inout Set<Int>, result: inout PassResult) {
        let bn = graph.nodes[self.bn], p = graph.nodes[producer]
        let wName = names.fresh(weightSource + "#bnfolded")
        graph.addInitializer(Initializer(name: wName, tensor: weight))
        let bName = names.fresh(bn.label + "#foldedbias")
        graph.addInitializer(Initializer(name: bName, tensor: Tensor(shape: [bias.count], scalars: bias)))
        var node = node
        node.inputs = [p.inputs[0], wName, bName]
        node.outputs = [bn.outputs[0]]
        graph.nodes[producer] = node
        drop.insert(self.bn)
        result.removedValues[bn.inputs[0]] = "folded into \(p.reportLabel) with \(bn.reportLabel)"
    }

    /// Removes the BNs `replace` marked and counts them as the pass's rewrites.
    static func finish(_ graph: inout Graph, drop: Set<Int>, result: inout PassResult) {
        graph.removeNodes(at: drop)
        result.rewrites = drop.count
    }
}
