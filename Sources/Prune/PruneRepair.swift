import Foundation
import ModelIR
import Passes
import Runtime
import TensorCore

/// Repair without training: re-estimates from calibration data what pruning disturbed.
///
/// Removing input channels shifts the distribution every consumer layer sees. Two corrections,
/// both per output channel of the layers that lost input channels (and of every
/// BatchNormalization after them):
/// - BatchNormalization kept: its running mean and variance become the statistics of its input on
///   the pruned model (BN re-estimation; Torch-Pruning's measurement: a CNN at ratio 0.3 went from
///   10–25 % back to 88–98 % accuracy on 200 images).
/// - BatchNormalization folded (a Conv/Gemm whose output no BN normalizes): each remaining output
///   channel k gets the affine map that gives it, on the calibration data, the mean μ and standard
///   deviation σ the unpruned model's channel had: `s = σ_orig / σ_pruned`,
///   `W'[k] = s·W[k]`, `b'[k] = s·(b[k] − μ_pruned) + μ_orig`.
/// Statistics are over batch and spatial positions, accumulated in Double over the samples. One
/// correction changes what later layers see, so the statistics are measured again after each
/// round (`rounds`): a layer k steps deep behind the first corrected one is exact after k rounds.
public enum PruneRepair {
    /// Streams the calibration samples: calls its argument once per sample with the feeds (each
    /// pass reads the folder again, so memory does not grow with the data set).
    public typealias Samples = (([String: Tensor]) throws -> Void) throws -> Void

    /// Top-1 accuracy of `model`'s first output (argmax over axis 1 of a [N, C] output) on the
    /// labelled samples: (correct, evaluated).
    public typealias LabelledSamples = (([String: Tensor], Int) throws -> Void) throws -> Void

    public static func top1(_ model: Model, labelled: LabelledSamples) throws -> (correct: Int, total: Int) {
        let exec = try Executor(model: model)
        let out = model.graph.outputs[0].name
        var counter = AccuracyCounter()
        try labelled { feeds, label in
            guard let y = try exec.run(feeds)[out], ClassScores.isClassifier(y) else { return }
            counter.add(ClassScores.ranked(y, k: 1), label: label)
        }
        return (counter.top1Correct, counter.evaluated)
    }

    public struct Summary: Encodable, Sendable {
        public let samples: Int
        public let rounds: Int
        /// BatchNormalization nodes whose mean and variance were re-estimated.
        public let batchnorms: [String]
        /// Conv/Gemm nodes whose output channels got an affine correction.
        public let layers: [String]
    }

    /// Per-channel mean and variance of a value over batch and spatial axes.
    struct Moments {
        var sum: [Double], sq: [Double], n = 0.0
        init(_ c: Int) { sum = [Double](repeating: 0, count: c); sq = sum }

        mutating func add(_ t: Tensor) {
            guard t.rank >= 2 else { return }
            let v = t.converted(to: .float32).scalars(as: Float.self)
            let c = t.shape[1], inner = t.shape.dropFirst(2).reduce(1, *), outer = t.shape[0]
            guard c == sum.count else { return }
            for o in 0..<outer {
                for ch in 0..<c {
                    var s = 0.0, q = 0.0
                    let base = (o * c + ch) * inner
                    for i in 0..<inner { let x = Double(v[base + i]); s += x; q += x * x }
                    sum[ch] += s; sq[ch] += q
                }
            }
            n += Double(outer * inner)
        }

        var mean: [Double] { sum.map { $0 / max(n, 1) } }
        var variance: [Double] { zip(sum, sq).map { s, q in max(q / max(n, 1) - (s / max(n, 1)) * (s / max(n, 1)), 0) } }
    }

    /// The layers to repair in `pruned`: consumers of removed channels (nodes with an input slice),
    /// and for each the BatchNormalization reading its output, if any.
    static func targets(_ plan: PrunePlan, pruned: Model, refit: Set<String> = []) -> (bn: [Int], affine: [Int]) {
        let g = pruned.graph
        var consumers = Set<String>()
        for d in plan.decisions where !d.removed.isEmpty {
            for s in d.group.slices where s.role == .input { consumers.insert(s.node) }
        }
        var bn: [Int] = [], affine: [Int] = []
        let index = UseDefIndex(g)
        for (i, n) in g.nodes.enumerated() where consumers.contains(n.name) && (n.opType == "Conv" || n.opType == "Gemm") {
            if let r = index.hasSingleDirectReader(n.outputs[0]), g.nodes[r.node].opType == "BatchNormalization" { bn.append(r.node) } else if !refit.contains(n.label) { affine.append(i) }
        }
        return (bn, affine)
    }

    /// Repairs `pruned` in place over `samples` (each a feed dictionary for both models).
    /// - Parameters:
    ///   - original: the unpruned model (the affine correction's reference statistics).
    ///   - refit: labels of layers `PruneReconstruction` refit: their output already is the
    ///     least-squares fit to the unpruned output (mean included), so they get no affine
    ///     correction (a BatchNormalization after them is still re-estimated).
    ///   - progress: called after each sample of each pass.
    public static func repair(_ pruned: inout Model, original: Model, plan: PrunePlan,
                              samples: Samples, rounds: Int = 2, refit: Set<String> = [],
                              progress: (() -> Void)? = nil) throws -> Summary {
        let (bn, affine) = targets(plan, pruned: pruned, refit: refit)
        var count = 0
        guard rounds > 0, !bn.isEmpty || !affine.isEmpty else { return Summary(samples: 0, rounds: 0, batchnorms: [], layers: []) }
        // Reference statistics of the corrected layers' outputs, from the unpruned model.
        let affineNames = affine.map { pruned.graph.nodes[$0].name }
        var reference: [String: Moments] = [:]
        if !affine.isEmpty {
            var outputs: [String: String] = [:]   // value -> node name
            for name in affineNames {
                if let n = original.graph.nodes.first(where: { $0.name == name }) { outputs[n.outputs[0]] = name }
            }
            let exec = try Executor(model: original, passes: .none)
            try samples { feeds in
                _ = try exec.run(feeds, hooks: ExecutionHooks(names: Set(outputs.keys)) { value, t in
                    guard let node = outputs[value] else { return }
                    var m = reference[node] ?? Moments(t.rank >= 2 ? t.shape[1] : 0)
                    m.add(t)
                    reference[node] = m
                })
                count += 1
                progress?()
            }
        }
        // Channel k of a corrected layer was channel kept[k] of the original.
        var kept: [String: [Int]] = [:]
        for d in plan.decisions where !d.removed.isEmpty {
            let gone = Set(d.removed)
            for s in d.group.slices where s.role == .output && s.start == 0 { kept[s.node] = (0..<d.group.channels).filter { !gone.contains($0) } }
        }
        for _ in 0..<rounds {
            var observed: [String: (node: Int, m: Moments)] = [:]
            for i in bn { observed[pruned.graph.nodes[i].inputs[0]] = (i, Moments(0)) }
            for i in affine { observed[pruned.graph.nodes[i].outputs[0]] = (i, Moments(0)) }
            let exec = try Executor(model: pruned, passes: .none)
            var n = 0
            try samples { feeds in
                _ = try exec.run(feeds, hooks: ExecutionHooks(names: Set(observed.keys)) { value, t in
                    guard var o = observed[value] else { return }
                    if o.m.sum.isEmpty, t.rank >= 2 { o.m = Moments(t.shape[1]) }
                    o.m.add(t)
                    observed[value] = o
                })
                n += 1
                progress?()
            }
            count = max(count, n)
            for (_, o) in observed {
                let node = pruned.graph.nodes[o.node]
                if node.opType == "BatchNormalization" {
                    try pruned.graph.replaceConstant(named: node.inputs[3], with: Tensor(shape: [o.m.sum.count], scalars: o.m.mean.map { Float($0) }))
                    try pruned.graph.replaceConstant(named: node.inputs[4], with: Tensor(shape: [o.m.sum.count], scalars: o.m.variance.map { Float($0) }))
                } else if let ref = reference[node.name] {
                    try correct(&pruned, node: o.node, pruned: o.m, reference: ref, kept: kept[node.name])
                }
            }
        }
        return Summary(samples: count, rounds: rounds, batchnorms: bn.map { pruned.graph.nodes[$0].label },
                       layers: affine.map { pruned.graph.nodes[$0].label })
    }

    /// Scales and shifts output channel k of a Conv or Gemm so its mean and deviation match the
    /// reference channel `kept[k]`.
    static func correct(_ m: inout Model, node i: Int, pruned p: Moments, reference r: Moments, kept: [Int]?) throws {
        let n = m.graph.nodes[i]
        guard let (wName, w) = m.graph.constantSource(of: n.inputs[1]), w.dtype == .float32 else { return }
        let isGemm = n.opType == "Gemm"
        let transB = (n.int("transB") ?? 0) == 1
        let outAxis = isGemm && !transB ? 1 : 0
        let c = w.shape[outAxis]
        guard p.sum.count == c else { return }
        let map = kept ?? Array(0..<c)
        guard map.count == c, let top = map.max(), top < r.sum.count else { return }
        let pm = p.mean, pv = p.variance, rm = r.mean, rv = r.variance
        var scale = [Double](repeating: 1, count: c), shift = [Double](repeating: 0, count: c)
        for k in 0..<c {
            let sp = pv[k].squareRoot(), sr = rv[map[k]].squareRoot()
            scale[k] = sp > 1e-12 ? sr / sp : 1
            shift[k] = rm[map[k]] - scale[k] * pm[k]   // y' = s·y + t with y = W·x + b
        }
        // W' = s·W per output channel; b' = s·b + t (a bias is added when the layer has none).
        var wv = w.scalars(as: Float.self)
        let outer = w.shape[..<outAxis].reduce(1, *), inner = w.shape[(outAxis + 1)...].reduce(1, *)
        for o in 0..<outer { for k in 0..<c { for q in 0..<inner { wv[(o * c + k) * inner + q] *= Float(scale[k]) } } }
        try m.graph.replaceConstant(named: wName, with: Tensor(shape: w.shape, scalars: wv))
        // Gemm adds beta·C, so the shift enters C divided by beta.
        let beta = isGemm ? Double(n.float("beta") ?? 1) : 1
        guard beta != 0 else { return }
        if n.inputs.count > 2, !n.inputs[2].isEmpty, let b = m.graph.constantTensor(named: n.inputs[2]), b.count == c || b.count == 1 {
            let bv = b.converted(to: .float64).scalars(as: Double.self)
            let nb = (0..<c).map { k in Float(scale[k] * bv[b.count == 1 ? 0 : k] + shift[k] / beta) }
            try m.graph.replaceConstant(named: n.inputs[2], with: Tensor(shape: b.count == c ? b.shape : [c], scalars: nb))
        } else {
            let name = m.graph.uniqueName(n.name + ".repair_bias")
            m.graph.addInitializer(Initializer(name: name, tensor: Tensor(shape: [c], scalars: shift.map { Float($0 / beta) })))
            var node = m.graph.nodes[i]
            while node.inputs.count < 3 { node.inputs.append("") }
            node.inputs[2] = name
            m.graph.nodes[i] = node
        }
    }
}
