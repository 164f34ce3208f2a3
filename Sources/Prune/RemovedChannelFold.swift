import ModelIR
import Passes
import Runtime
import TensorCore

/// Keeps what a removed channel still contributed when its filter is taken as zero: its bias
/// (through BN and the activation) made it emit a constant k_c, which the next layer turned into
/// a constant per output. That constant moves into the next layer's bias.
///
/// Before: `y = Conv(x, W, b)` where input channel c of x is the constant k_c (spatially).
/// After:  `y = Conv(x', W', b')`, x' and W' without channel c, `b'[o] = b[o] + k_c · Σ_{h,w} W[o, c, h, w]`.
/// For a Gemm after Flatten, each of the channel's columns j carries its own constant x_j:
/// `C'[o] = C[o] + (α/β) · Σ_j x_j · B[j, o]`.
///
/// Exact (as `Tests/Interop/test_prune.py` checks on a masked model) only when the consumer
/// sees the same k_c at every position it reads: a Gemm/1×1 or unpadded convolution reading a
/// channel that is constant over batch and space. A padded convolution (its border sees the
/// padding's zeros) or a channel that a padded depthwise convolution made non-constant is left
/// as it is and listed as an approximation. The constants are found by running the model once
/// with the removed filters zeroed (`Executor` hooks on the consumers' inputs).
enum RemovedChannelFold {
    /// Per consumer node: the change to each of its (original) output channels' bias.
    struct Correction {
        var node: String
        var delta: [Double]
    }

    /// The corrections for `plan` on `model` (before surgery), and notes on consumers where
    /// folding would not be exact.
    static func corrections(_ plan: PrunePlan, model: Model, pins: [String: [Int]]) throws -> (corrections: [Correction], notes: [String]) {
        let inputs = plan.decisions.flatMap { d in d.removed.isEmpty ? [] : d.group.slices.filter { $0.role == .input }.map { (d, $0) } }
        guard !inputs.isEmpty else { return ([], []) }
        let g = model.graph
        var byName: [String: Int] = [:]
        for (i, n) in g.nodes.enumerated() where !n.name.isEmpty { byName[n.name] = byName[n.name] == nil ? i : -1 }

        // The masked model: every removed filter of every producer zeroed.
        var masked = model
        for d in plan.decisions where !d.removed.isEmpty {
            for s in d.group.slices where s.role == .output {
                guard let t = masked.graph.constantTensor(named: s.tensor), t.rank >= 2, t.dtype == .float32 else { continue }
                try masked.graph.replaceConstant(named: s.tensor, with: zeroing(t, axis: s.axis, indices: s.indices(removing: d.removed)))
            }
        }
        var watch = Set<String>()
        for (_, s) in inputs { if let i = byName[s.node], i >= 0 { watch.insert(g.nodes[i].inputs[0]) } }
        var seen: [String: Tensor] = [:]
        let resolved = try InputShapes.resolve(graph: g, pins: pins)
        var feeds: [String: Tensor] = [:]
        for (name, info) in resolved { feeds[name] = Tensor(dtype: info.dtype, shape: info.shape) }
        _ = try Executor(model: masked, passes: .none).run(feeds, hooks: ExecutionHooks(names: watch) { name, t in seen[name] = t })

        var deltas: [String: [Double]] = [:]
        var notes: [String] = []
        for (d, s) in inputs {
            guard let i = byName[s.node], i >= 0 else { notes.append("a consumer without a unique name: its removed inputs' constants are dropped"); continue }
            let n = g.nodes[i]
            guard let x = seen[n.inputs[0]], x.dtype == .float32, let w = g.constantSource(of: n.inputs[1])?.tensor,
                  w.dtype == .float32 else { continue }
            let xv = x.scalars(as: Float.self), wv = w.scalars(as: Float.self)
            // Channels of the input the layer no longer reads (for a grouped convolution these
            // are channel positions of x, not weight columns).
            let removedCols = s.channels(removing: d.removed)
            // The constant each removed input index carries, if it is one.
            var constants: [(col: Int, k: Double)] = []
            var exact = true
            if n.opType == "Conv" {
                let pads = n.ints("pads") ?? []
                let spatial = x.shape.dropFirst(2).reduce(1, *), c = x.shape[1], batch = x.shape[0]
                for col in removedCols {
                    let k = xv[col * spatial]
                    for b in 0..<batch {
                        for p in 0..<spatial where xv[(b * c + col) * spatial + p] != k { exact = false }
                    }
                    if k != 0 { constants.append((col, Double(k))) }
                }
                if !constants.isEmpty && (pads.contains { $0 != 0 } || (n.string("auto_pad").map { $0 != "NOTSET" && $0 != "VALID" } ?? false)) { exact = false }
                guard exact else { notes.append("\(n.label): removed input channels vary over positions or it pads them (a padded convolution), so their constants cannot be folded exactly; dropped"); continue }
                guard !constants.isEmpty else { continue }
                // Input channel ch feeds only the outputs of its convolution group ch div cPer,
                // at weight column ch mod cPer (group 1: all outputs, column ch).
                let m = w.shape[0], perIn = w.shape.dropFirst(2).reduce(1, *), cPer = w.shape[1]
                let groups = max(1, Int(n.int("group") ?? 1)), mPer = m / groups
                var delta = deltas[n.name] ?? [Double](repeating: 0, count: m)
                for (ch, k) in constants {
                    let gi = ch / cPer, col = ch % cPer
                    for o in (gi * mPer)..<((gi + 1) * mPer) {
                        var sum = 0.0
                        for q in 0..<perIn { sum += Double(wv[(o * cPer + col) * perIn + q]) }
                        delta[o] += k * sum
                    }
                }
                deltas[n.name] = delta
            } else if n.opType == "Gemm" || n.opType == "MatMul" {
                let rows = x.shape[0], cols = x.shape.count > 1 ? x.shape[1] : 1
                for col in removedCols {
                    let k = xv[col]
                    for r in 0..<rows where xv[r * cols + col] != k { exact = false }
                    if k != 0 { constants.append((col, Double(k))) }
                }
                guard exact else { notes.append("\(n.label): a removed input varies with the input; its constant is dropped"); continue }
                guard !constants.isEmpty else { continue }
                guard n.opType == "Gemm" else { notes.append("\(n.label): MatMul has no bias to fold removed channels' constants into; dropped"); continue }
                let transB = (n.int("transB") ?? 0) == 1, alpha = Double(n.float("alpha") ?? 1), beta = Double(n.float("beta") ?? 1)
                guard beta != 0 else { notes.append("\(n.label): Gemm with beta 0 has no bias to fold into; dropped"); continue }
                let outN = w.shape[transB ? 0 : 1], inK = w.shape[transB ? 1 : 0]
                var delta = deltas[n.name] ?? [Double](repeating: 0, count: outN)
                for o in 0..<outN {
                    for (col, k) in constants { delta[o] += alpha / beta * k * Double(transB ? wv[o * inK + col] : wv[col * outN + o]) }
                }
                deltas[n.name] = delta
            }
        }
        return (deltas.sorted { $0.key < $1.key }.map { Correction(node: $0.key, delta: $0.value) }, notes)
    }

    /// Adds `corrections` to the consumers' biases in the pruned model; `kept[node]` lists the
    /// consumer's output channels that survived (its own group may have been pruned too).
    static func apply(_ corrections: [Correction], to m: inout Model, kept: [String: [Int]]) throws {
        for c in corrections {
            guard let i = m.graph.nodes.firstIndex(where: { $0.name == c.node }) else { continue }
            let delta = kept[c.node].map { idx in idx.map { c.delta[$0] } } ?? c.delta
            var n = m.graph.nodes[i]
            if n.inputs.count > 2, !n.inputs[2].isEmpty, let b = m.graph.constantTensor(named: n.inputs[2]) {
                var v = b.converted(to: .float64).scalars(as: Double.self)
                if v.count == 1, delta.count > 1 { v = [Double](repeating: v[0], count: delta.count) }
                guard v.count == delta.count else { continue }
                for k in v.indices { v[k] += delta[k] }
                let shape = b.count == delta.count ? b.shape : [delta.count]
                try m.graph.replaceConstant(named: n.inputs[2], with: Tensor(shape: shape, scalars: v.map { Float($0) }))
            } else {
                let name = m.graph.uniqueName(c.node + ".folded_bias")
                m.graph.addInitializer(Initializer(name: name, tensor: Tensor(shape: [delta.count], scalars: delta.map { Float($0) })))
                while n.inputs.count < 3 { n.inputs.append("") }
                n.inputs[2] = name
                m.graph.nodes[i] = n
            }
        }
    }

    static func zeroing(_ t: Tensor, axis: Int, indices: [Int]) -> Tensor {
        var out = t
        let outer = t.shape[..<axis].reduce(1, *), dim = t.shape[axis], inner = t.shape[(axis + 1)...].reduce(1, *)
        out.withUnsafeMutableBufferPointer(as: Float.self) { p in
            for o in 0..<outer { for c in indices { for q in 0..<inner { p[(o * dim + c) * inner + q] = 0 } } }
        }
        return out
    }
}
