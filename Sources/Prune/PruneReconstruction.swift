import Foundation
import ModelIR
import Passes
import Runtime
import TensorCore

/// `--reconstruct`: a least-squares refit of each layer that lost input channels, so its output
/// on calibration data matches the unpruned layer's (He et al., ICCV 2017, "Channel Pruning for
/// Accelerating Very Deep Neural Networks"; ThiNet, Luo et al., ICCV 2017).
///
/// For a consumer with weights W (M outputs × K = C_kept·kh·kw inputs after im2col) and bias b:
/// with X the pruned model's input columns (plus a row of ones) and Y the unpruned layer's output
/// at the same positions, `[W | b] = argmin ‖Y − [W | b]·[X; 1]‖² + λ‖W − W₀‖²`, where W₀ is the
/// layer's weight as pruning left it (the unpruned weight on the surviving channels) and the bias
/// is not penalized: solved from `(X Xᵀ + Λ) [W | b]ᵀ = X Yᵀ + Λ [W₀ | b]ᵀ` by Cholesky in Double,
/// Λ = λ·(trace(X Xᵀ)/(K+1))·I on the weight rows. λ is chosen per layer by 4-fold cross-validation
/// over the calibration samples (sample i in fold i mod 4) from 1e-6 … 10: a layer with far more
/// positions than inputs (a convolution) gets an almost plain least-squares fit, a layer with about
/// as many inputs as samples (a Gemm after Flatten) is pulled towards W₀ instead of overfitting.
/// Consumers are refit in graph order, each on inputs that already pass through the refit layers
/// before it (one data pass per consumer). Layers with K above `maxInputs` are left as they are.
public enum PruneReconstruction {
    public struct Summary: Encodable, Sendable {
        public let samples: Int
        public let layers: [String]
        public let skipped: [String]
        /// The ridge strength λ cross-validation chose per refit layer (relative to trace(X Xᵀ)/(K+1)).
        public let lambdas: [String: Double]
    }

    /// Cross-validation folds and the ridge strengths tried (relative to the mean diagonal of X Xᵀ).
    static let folds = 4
    static let lambdaGrid: [Double] = [1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1, 10]

    /// The ridge solution pulled towards `prior` (kk × rhs) with λ chosen by cross-validation over
    /// the folds' normal equations `a[f]` (kk × kk), `b[f]` (kk × rhs) and target energies `yy[f]`:
    /// the validation error of a fit on the other folds is `yy_f − 2⟨Θ, b_f⟩ + Σ_o Θ_oᵀ a_f Θ_o`.
    /// The last row (the bias) is not penalized. With fewer than two samples λ is the smallest.
    static func ridgeFit(a: [[Double]], b: [[Double]], yy: [Double], prior: [Double], n kk: Int, rhs m: Int,
                         samples: Int) -> (solution: [Double], lambda: Double)? {
        let folds = a.count
        var total = a[0], rhsTotal = b[0]
        for f in 1..<folds {
            for i in 0..<total.count { total[i] += a[f][i] }
            for i in 0..<rhsTotal.count { rhsTotal[i] += b[f][i] }
        }
        let scale = max((0..<kk).reduce(0.0) { $0 + total[$1 * kk + $1] } / Double(kk), 1e-300)
        func solve(_ a0: [Double], _ b0: [Double], _ lambda: Double) -> [Double]? {
            var aa = a0, bb = b0
            let d = lambda * scale
            for r in 0..<(kk - 1) {
                aa[r * kk + r] += d
                for o in 0..<m { bb[r * m + o] += d * prior[r * m + o] }
            }
            return choleskySolve(aa, bb, n: kk, rhs: m)
        }
        var chosen = lambdaGrid[0]
        if samples >= 2 {
            let used = min(folds, samples)
            var best = Double.infinity
            for lambda in lambdaGrid {
                var err = 0.0
                for f in 0..<used {
                    var at = total, bt = rhsTotal
                    for i in 0..<at.count { at[i] -= a[f][i] }
                    for i in 0..<bt.count { bt[i] -= b[f][i] }
                    guard let th = solve(at, bt, lambda) else { err = .infinity; break }
                    var e = yy[f]
                    var row = [Double](repeating: 0, count: m)
                    for r in 0..<kk {
                        for o in 0..<m { row[o] = 0 }
                        for c in 0..<kk {
                            let arc = a[f][r * kk + c]
                            if arc == 0 { continue }
                            for o in 0..<m { row[o] += arc * th[c * m + o] }
                        }
                        for o in 0..<m { e += th[r * m + o] * (row[o] - 2 * b[f][r * m + o]) }
                    }
                    err += e
                }
                if err < best { best = err; chosen = lambda }
            }
        }
        return solve(total, rhsTotal, chosen).map { ($0, chosen) }
    }

    public static func reconstruct(_ pruned: inout Model, original: Model, plan: PrunePlan, samples: PruneRepair.Samples,
                                   maxInputs: Int = 2304, progress: (() -> Void)? = nil) throws -> Summary {
        var consumers = Set<String>()
        for d in plan.decisions where !d.removed.isEmpty {
            for s in d.group.slices where s.role == .input { consumers.insert(s.node) }
        }
        // The consumer's own outputs may have been pruned too: output k was the original's kept[k].
        var kept: [String: [Int]] = [:]
        for d in plan.decisions where !d.removed.isEmpty {
            let gone = Set(d.removed)
            for s in d.group.slices where s.role == .output && s.start == 0 { kept[s.node] = (0..<d.group.channels).filter { !gone.contains($0) } }
        }
        var done: [String] = [], skipped: [String] = []
        var lambdas: [String: Double] = [:]
        var count = 0
        let order = pruned.graph.nodes.indices.filter { consumers.contains(pruned.graph.nodes[$0].name) }
        for i in order {
            let node = pruned.graph.nodes[i]
            guard let orig = original.graph.nodes.first(where: { $0.name == node.name }),
                  let (wName, w) = pruned.graph.constantSource(of: node.inputs[1]), w.dtype == .float32 else {
                skipped.append("\(node.label): weight not a float32 constant"); continue
            }
            let isConv = node.opType == "Conv"
            guard isConv ? (node.int("group") ?? 1) == 1 : node.opType == "Gemm" && (node.int("transA") ?? 0) == 0 else {
                skipped.append("\(node.label): \(node.opType) form not refit"); continue
            }
            let transB = (node.int("transB") ?? 0) == 1
            let m = isConv ? w.shape[0] : w.shape[transB ? 0 : 1]
            let k = isConv ? w.shape.dropFirst().reduce(1, *) : w.shape[transB ? 1 : 0]
            guard k + 1 <= maxInputs else { skipped.append("\(node.label): \(k) inputs per output (over \(maxInputs))"); continue }
            let kk = k + 1
            // Normal equations per cross-validation fold (sample i goes to fold i mod `folds`).
            var a = [[Double]](repeating: [Double](repeating: 0, count: kk * kk), count: folds)
            var b = [[Double]](repeating: [Double](repeating: 0, count: kk * m), count: folds)
            var yy = [Double](repeating: 0, count: folds)
            let exec = try Executor(model: pruned, passes: .none), ref = try Executor(model: original, passes: .none)
            var n = 0
            try samples { feeds in
                var x: Tensor?, y: Tensor?
                _ = try exec.run(feeds, hooks: ExecutionHooks(names: [node.inputs[0]]) { _, t in x = t })
                _ = try ref.run(feeds, hooks: ExecutionHooks(names: [orig.outputs[0]]) { _, t in y = t })
                guard let x, let y else { return }
                let cols = isConv ? im2col(x, node: node, kernel: Array(w.shape.dropFirst(2))) : rows(x)
                var target = isConv ? channelsLast(y) : y.converted(to: .float64).scalars(as: Double.self)
                let full = y.shape[1]
                if let keep = kept[node.name], keep.count == m, full != m {
                    let positions = target.count / full
                    var t = [Double](repeating: 0, count: positions * m)
                    for p in 0..<positions { for (o, src) in keep.enumerated() { t[p * m + o] = target[p * full + src] } }
                    target = t
                }
                // Gemm alpha/beta: y = α·A·B + β·C; the fit is on y/α with the bias column as β·C/α.
                let alpha = isConv ? 1 : Double(node.float("alpha") ?? 1)
                let positions = cols.count / k
                guard target.count == positions * m else {
                    throw PruneError.invalid("--reconstruct: \(node.label) has \(m) outputs but its unpruned output has \(full) channels")
                }
                var v = [Double](repeating: 1, count: kk)
                let f = n % folds
                for p in 0..<positions {
                    for q in 0..<k { v[q] = cols[p * k + q] }
                    v[k] = 1
                    for o in 0..<m { let t = target[p * m + o] / alpha; yy[f] += t * t }
                    for r in 0..<kk where v[r] != 0 {
                        let vr = v[r]
                        for c in r..<kk { a[f][r * kk + c] += vr * v[c] }
                        for o in 0..<m { b[f][r * m + o] += vr * target[p * m + o] / alpha }
                    }
                }
                n += 1
                progress?()
            }
            count = max(count, n)
            for f in 0..<folds { for r in 0..<kk { for c in 0..<r { a[f][r * kk + c] = a[f][c * kk + r] } } }
            // W₀ in the solution's layout (kk × m, row q = input q; the bias row is not penalized).
            var prior = [Double](repeating: 0, count: kk * m)
            let wv = w.converted(to: .float64).scalars(as: Double.self)
            for o in 0..<m { for q in 0..<k { prior[q * m + o] = isConv || transB ? wv[o * k + q] : wv[q * m + o] } }
            guard let (solution, lambda) = ridgeFit(a: a, b: b, yy: yy, prior: prior, n: kk, rhs: m, samples: n) else {
                skipped.append("\(node.label): normal equations not positive definite"); continue
            }
            lambdas[node.label] = lambda
            // solution is kk × m: rows 0..<k the weights, row k the bias.
            var nw = [Float](repeating: 0, count: m * k)
            for o in 0..<m { for q in 0..<k { nw[o * k + q] = Float(solution[q * m + o]) } }
            let weights: Tensor
            if isConv || transB { weights = Tensor(shape: w.shape, scalars: nw) } else {
                var t = [Float](repeating: 0, count: m * k)
                for o in 0..<m { for q in 0..<k { t[q * m + o] = nw[o * k + q] } }
                weights = Tensor(shape: w.shape, scalars: t)
            }
            try pruned.graph.replaceConstant(named: wName, with: weights)
            // The bias row is in units of y/α: C = row·α/β (α = β = 1 for a convolution).
            let alpha = isConv ? 1 : Double(node.float("alpha") ?? 1), beta = isConv ? 1 : Double(node.float("beta") ?? 1)
            let bias = (0..<m).map { Float(solution[k * m + $0] * alpha / (beta == 0 ? 1 : beta)) }
            if node.inputs.count > 2, !node.inputs[2].isEmpty, let (bName, bt) = pruned.graph.constantSource(of: node.inputs[2]), bt.count == m, beta != 0 {
                try pruned.graph.replaceConstant(named: bName, with: Tensor(shape: bt.shape, scalars: bias))
            } else if beta != 0 {
                let name = pruned.graph.uniqueName(node.name + ".refit_bias")
                pruned.graph.addInitializer(Initializer(name: name, tensor: Tensor(shape: [m], scalars: bias)))
                var nn = pruned.graph.nodes[i]
                while nn.inputs.count < 3 { nn.inputs.append("") }
                nn.inputs[2] = name
                pruned.graph.nodes[i] = nn
            }
            done.append(node.label)
        }
        return Summary(samples: count, layers: done, skipped: skipped, lambdas: lambdas)
    }

    /// Rows of a [N, K] tensor, in Double.
    static func rows(_ x: Tensor) -> [Double] { x.converted(to: .float64).scalars(as: Double.self) }

    /// [N, M, H, W] → position-major [N·H·W, M].
    static func channelsLast(_ y: Tensor) -> [Double] {
        let v = y.converted(to: .float64).scalars(as: Double.self)
        let n = y.shape[0], m = y.shape[1], s = y.shape.dropFirst(2).reduce(1, *)
        var out = [Double](repeating: 0, count: v.count)
        for b in 0..<n { for c in 0..<m { for p in 0..<s { out[(b * s + p) * m + c] = v[(b * m + c) * s + p] } } }
        return out
    }

    /// The convolution's input columns, position-major [N·OH·OW, C·kh·kw] (2-D convolutions;
    /// pads, strides, dilations as the node says; auto_pad SAME_* resolved as ONNX defines).
    static func im2col(_ x: Tensor, node: Node, kernel: [Int]) -> [Double] {
        let v = x.converted(to: .float64).scalars(as: Double.self)
        let n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape.count > 3 ? x.shape[3] : 1
        let kh = kernel[0], kw = kernel.count > 1 ? kernel[1] : 1
        let strides = node.ints("strides")?.map(Int.init) ?? [1, 1], dil = node.ints("dilations")?.map(Int.init) ?? [1, 1]
        var pads = node.ints("pads")?.map(Int.init) ?? [0, 0, 0, 0]
        let sh = strides[0], sw = strides.count > 1 ? strides[1] : 1, dh = dil[0], dw = dil.count > 1 ? dil[1] : 1
        if let auto = node.string("auto_pad"), auto.hasPrefix("SAME") {
            func total(_ i: Int, _ k: Int, _ s: Int, _ d: Int) -> Int { max(0, ((i + s - 1) / s - 1) * s + (k - 1) * d + 1 - i) }
            let th = total(h, kh, sh, dh), tw = total(wd, kw, sw, dw)
            pads = auto == "SAME_UPPER" ? [th / 2, tw / 2, th - th / 2, tw - tw / 2] : [th - th / 2, tw - tw / 2, th / 2, tw / 2]
        }
        if pads.count == 2 { pads = [pads[0], 0, pads[1], 0] }
        let oh = (h + pads[0] + pads[2] - dh * (kh - 1) - 1) / sh + 1
        let ow = (wd + pads[1] + pads[3] - dw * (kw - 1) - 1) / sw + 1
        let k = c * kh * kw
        var out = [Double](repeating: 0, count: n * oh * ow * k)
        for b in 0..<n {
            for y in 0..<oh {
                for xx in 0..<ow {
                    let row = ((b * oh + y) * ow + xx) * k
                    for ch in 0..<c {
                        for i in 0..<kh {
                            let iy = y * sh - pads[0] + i * dh
                            guard iy >= 0 && iy < h else { continue }
                            for j in 0..<kw {
                                let ix = xx * sw - pads[1] + j * dw
                                guard ix >= 0 && ix < wd else { continue }
                                out[row + (ch * kh + i) * kw + j] = v[((b * c + ch) * h + iy) * wd + ix]
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Solves A·X = B for symmetric positive definite A (n×n) and B (n×rhs) by Cholesky; nil when
    /// A is not positive definite.
    static func choleskySolve(_ a0: [Double], _ b0: [Double], n: Int, rhs: Int) -> [Double]? {
        var l = a0
        for j in 0..<n {
            var d = l[j * n + j]
            for k in 0..<j { d -= l[j * n + k] * l[j * n + k] }
            guard d > 0 else { return nil }
            let djj = d.squareRoot()
            l[j * n + j] = djj
            for i in (j + 1)..<max(j + 1, n) {
                var s = l[i * n + j]
                for k in 0..<j { s -= l[i * n + k] * l[j * n + k] }
                l[i * n + j] = s / djj
            }
        }
        var x = b0
        for c in 0..<rhs {
            for i in 0..<n {       // L·z = b
                var s = x[i * rhs + c]
                for k in 0..<i { s -= l[i * n + k] * x[k * rhs + c] }
                x[i * rhs + c] = s / l[i * n + i]
            }
            for i in stride(from: n - 1, through: 0, by: -1) {   // Lᵀ·x = z
                var s = x[i * rhs + c]
                for k in (i + 1)..<max(i + 1, n) { s -= l[k * n + i] * x[k * rhs + c] }
                x[i * rhs + c] = s / l[i * n + i]
            }
        }
        return x
    }
}
