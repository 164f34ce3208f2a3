import Foundation
import ModelIR
import Runtime
import TensorCore

/// Empirical bias correction (Nagel et al. 2019, "Data-Free Quantization Through Weight
/// Equalization and Bias Correction", §4.2; Banner et al. 2019): rounding the weights to int8
/// changes each output channel's mean by E[W_q x] − E[W x] = (W_q − W)·E[x]; with E[x] the
/// per-channel mean of the layer's input over the calibration samples (all positions), that shift
/// is subtracted from the bias so the quantized layer's output mean equals the float one's.
/// (Positions near a zero-padded border see fewer inputs; the per-channel mean ignores that, as
/// the paper's analytic form does.)
public enum BiasCorrection {
    /// Running per-channel (axis 1) sums of observed tensors.
    public struct ChannelMeans: Sendable {
        public private(set) var sums: [String: [Double]] = [:]
        public private(set) var counts: [String: Double] = [:]
        public init() {}

        public mutating func add(_ name: String, _ t: Tensor) {
            guard t.rank >= 2, t.dtype.isFloatingPoint else { return }
            let c = t.shape[1], inner = t.shape[2...].reduce(1, *), outer = t.shape[0]
            let v = t.converted(to: .float32).scalars(as: Float.self)
            var s = sums[name] ?? [Double](repeating: 0, count: c)
            guard s.count == c else { return }
            for o in 0..<outer {
                for ch in 0..<c {
                    let base = (o * c + ch) * inner
                    var acc = 0.0
                    for k in 0..<inner { acc += Double(v[base + k]) }
                    s[ch] += acc
                }
            }
            sums[name] = s
            counts[name, default: 0] += Double(outer * inner)
        }

        public func mean(_ name: String) -> [Double]? {
            guard let s = sums[name], let n = counts[name], n > 0 else { return nil }
            return s.map { $0 / n }
        }
        public var means: [String: [Double]] { Dictionary(uniqueKeysWithValues: sums.keys.compactMap { k in mean(k).map { (k, $0) } }) }
    }

    /// The expected output shift per output channel, (W_q − W)·E[x], of a Conv (any group),
    /// ConvTranspose (group 1) or Gemm (transA 0) whose weight `w` was quantized to `q` with
    /// `params` along `axis`; nil when the mean does not fit the weight.
    static func shift(weight w: Tensor, quantized q: Tensor, params: [QuantParams], axis: Int, node n: Node, mean: [Double]) -> [Double]? {
        let wv = w.scalars(as: Float.self)
        let qv = q.converted(to: .float64).scalars(as: Double.self)
        let shape = w.shape
        let inner = shape[(axis + 1)...].reduce(1, *), dim = shape[axis]
        func delta(_ k: Int) -> Double {
            let c = params.count == 1 ? 0 : (k / inner) % dim
            let p = params[c]
            // DequantizeLinear's value, in Float as the operator computes it.
            let deq = Float(qv[k] - Double(p.zeroPoint)) * p.scale
            return Double(deq) - Double(wv[k])
        }
        switch n.opType {
        case "Conv":
            // [Cout, Cin/group, k…]: output c reads input channels of its group.
            let cout = shape[0], cpg = shape[1], group = Int(n.int("group") ?? 1), window = shape[2...].reduce(1, *)
            guard cout % group == 0, mean.count == cpg * group else { return nil }
            let opg = cout / group
            var out = [Double](repeating: 0, count: cout)
            for c in 0..<cout {
                let g0 = (c / opg) * cpg
                var acc = 0.0
                for ci in 0..<cpg {
                    var d = 0.0
                    for k in 0..<window { d += delta((c * cpg + ci) * window + k) }
                    acc += d * mean[g0 + ci]
                }
                out[c] = acc
            }
            return out
        case "ConvTranspose":
            // [Cin, Cout, k…] (group 1).
            let cin = shape[0], cout = shape[1], window = shape[2...].reduce(1, *)
            guard mean.count == cin else { return nil }
            var out = [Double](repeating: 0, count: cout)
            for ci in 0..<cin {
                for c in 0..<cout {
                    var d = 0.0
                    for k in 0..<window { d += delta((ci * cout + c) * window + k) }
                    out[c] += d * mean[ci]
                }
            }
            return out
        case "Gemm":
            guard shape.count == 2 else { return nil }
            let transB = (n.int("transB") ?? 0) == 1
            let kdim = transB ? shape[1] : shape[0], ndim = transB ? shape[0] : shape[1]
            guard mean.count == kdim else { return nil }
            var out = [Double](repeating: 0, count: ndim)
            for j in 0..<ndim {
                for k in 0..<kdim { out[j] += delta(transB ? j * kdim + k : k * ndim + j) * mean[k] }
            }
            return out
        default:
            return nil
        }
    }
}

extension Quantizer {
    /// The inputs of the weighted nodes whose bias can be corrected (Conv, ConvTranspose, Gemm).
    public static func biasCorrectionInputs(_ deployed: Model, nodes: [Int]) -> [String] {
        var seen = Set<String>(), out: [String] = []
        for i in nodes where ["Conv", "ConvTranspose", "Gemm"].contains(deployed.graph.nodes[i].opType) {
            let x = deployed.graph.nodes[i].inputs[0]
            if seen.insert(x).inserted { out.append(x) }
        }
        return out
    }

    /// Per-channel means of `names` over the samples (one more pass through the executor's hooks).
    public static func channelMeans(_ deployed: Model, names: [String], samples: (([String: TensorCore.Tensor]) throws -> Void) throws -> Void,
                                    progress: (() -> Void)? = nil) throws -> [String: [Double]] {
        guard !names.isEmpty else { return [:] }
        let exec = try observing(deployed, names: names)
        var means = BiasCorrection.ChannelMeans()
        try samples { feeds in
            _ = try exec.run(feeds, hooks: ExecutionHooks(names: Set(names)) { name, t in means.add(name, t) })
            progress?()
        }
        return means.means
    }
}
