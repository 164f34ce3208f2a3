import Foundation
import ModelIR
import TensorCore

/// Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization Through Weight
/// Equalization and Bias Correction", §4.1). For a Conv₁ → (Relu) → Conv₂ pair where Conv₁'s
/// output channel i feeds Conv₂'s input channel i, Relu(x/s) = Relu(x)/s for s > 0, so
/// dividing Conv₁'s output channel i (weights and bias) by sᵢ and multiplying Conv₂'s input
/// channel i weights by sᵢ leaves the function unchanged. With r₁ᵢ the range (largest |w|) of
/// Conv₁'s output channel i and r₂ᵢ that of Conv₂'s input channel i, sᵢ = √(r₁ᵢ·r₂ᵢ)/r₂ᵢ makes
/// both ranges √(r₁ᵢ·r₂ᵢ): the channels of a depthwise layer, whose ranges differ widely, then
/// share a per-tensor scale far better. Chains (Conv → Conv → Conv) are swept until the scales
/// settle (at most 20 sweeps). Every Conv group count works (depthwise included); weights must
/// be float32 initializers read by their Conv only, and each intermediate value read only by the
/// next node of the pair.
public enum CrossLayerEqualization {
    struct Pair { var first: Int; var second: Int }

    /// Equalizes every pair in `g` (nodes matching `exclude` are left alone); returns the pairs.
    @discardableResult
    public static func apply(_ g: inout Graph, exclude: [String] = [], sweeps: Int = 20) throws -> Int {
        let pairs = findPairs(g, exclude: exclude)
        guard !pairs.isEmpty else { return 0 }
        for _ in 0..<sweeps {
            var change = 0.0
            for p in pairs { change = max(change, try equalize(&g, p)) }
            if change < 1e-4 { break }
        }
        return pairs.count
    }

    static func findPairs(_ g: Graph, exclude: [String]) -> [Pair] {
        let index = UseDefIndex(g)
        func excluded(_ n: Node) -> Bool { exclude.contains { Glob.matches($0, n.name) } }
        func ownWeight(_ n: Node, _ slot: Int) -> Bool {
            guard slot < n.inputs.count, !n.inputs[slot].isEmpty else { return slot == 2 }
            let name = n.inputs[slot]
            guard let t = g.initializer(named: name)?.tensor, t.dtype == .float32 else { return false }
            return index.readCount(of: name) == 1 && !index.isGraphOutput(name)
        }
        func isConv(_ i: Int) -> Bool {
            let n = g.nodes[i]
            return n.isDefaultDomain && n.opType == "Conv" && !excluded(n) && ownWeight(n, 1) && ownWeight(n, 2)
                && (g.initializer(named: n.inputs[1])?.tensor.rank ?? 0) >= 3
        }
        func soleReader(_ v: String) -> Int? {
            guard !index.isGraphOutput(v), let r = index.hasSingleDirectReader(v), r.slot == 0 else { return nil }
            return r.node
        }
        var pairs: [Pair] = []
        for i in g.nodes.indices where isConv(i) {
            guard var next = soleReader(g.nodes[i].outputs[0]) else { continue }
            let mid = g.nodes[next]
            if mid.isDefaultDomain && mid.opType == "Relu" {
                guard let r = soleReader(mid.outputs[0]) else { continue }
                next = r
            }
            guard isConv(next) else { continue }
            let w1 = g.initializer(named: g.nodes[i].inputs[1])!.tensor, w2 = g.initializer(named: g.nodes[next].inputs[1])!.tensor
            let group2 = Int(g.nodes[next].int("group") ?? 1)
            guard w2.shape[1] * group2 == w1.shape[0] else { continue }
            pairs.append(Pair(first: i, second: next))
        }
        return pairs
    }

    /// One pair; returns the largest |log sᵢ| applied.
    static func equalize(_ g: inout Graph, _ p: Pair) throws -> Double {
        let n1 = g.nodes[p.first], n2 = g.nodes[p.second]
        var w1 = g.initializer(named: n1.inputs[1])!.tensor.scalars(as: Float.self)
        var w2 = g.initializer(named: n2.inputs[1])!.tensor.scalars(as: Float.self)
        let s1 = g.initializer(named: n1.inputs[1])!.tensor.shape, s2 = g.initializer(named: n2.inputs[1])!.tensor.shape
        let c = s1[0], inner1 = s1[1...].reduce(1, *)
        let cout2 = s2[0], cpg = s2[1], window2 = s2[2...].reduce(1, *)
        let group2 = Int(n2.int("group") ?? 1), opg = cout2 / group2
        // Conv₂'s weights that read input channel i: outputs of i's group, slot i mod cpg.
        func forInput(_ i: Int, _ body: (Int) -> Void) {
            let g0 = i / cpg, slot = i % cpg
            for o in (g0 * opg)..<((g0 + 1) * opg) {
                let base = (o * cpg + slot) * window2
                for k in 0..<window2 { body(base + k) }
            }
        }
        var scales = [Double](repeating: 1, count: c)
        var change = 0.0
        for i in 0..<c {
            var r1: Float = 0, r2: Float = 0
            for k in 0..<inner1 { r1 = max(r1, abs(w1[i * inner1 + k])) }
            forInput(i) { r2 = max(r2, abs(w2[$0])) }
            guard r1 > 0, r2 > 0 else { continue }
            let s = (Double(r1) * Double(r2)).squareRoot() / Double(r2)
            guard s.isFinite, s > 0 else { continue }
            scales[i] = s
            change = max(change, abs(log(s)))
        }
        guard change > 0 else { return 0 }
        for i in 0..<c where scales[i] != 1 {
            let s = scales[i]
            for k in 0..<inner1 { w1[i * inner1 + k] = Float(Double(w1[i * inner1 + k]) / s) }
            forInput(i) { w2[$0] = Float(Double(w2[$0]) * s) }
        }
        try g.replaceInitializer(n1.inputs[1], with: Tensor(shape: s1, scalars: w1))
        try g.replaceInitializer(n2.inputs[1], with: Tensor(shape: s2, scalars: w2))
        if n1.inputs.count > 2, !n1.inputs[2].isEmpty, let bt = g.initializer(named: n1.inputs[2])?.tensor, bt.count == c {
            var b = bt.scalars(as: Float.self)
            for i in 0..<c { b[i] = Float(Double(b[i]) / scales[i]) }
            try g.replaceInitializer(n1.inputs[2], with: Tensor(shape: bt.shape, scalars: b))
        }
        return change
    }
}
