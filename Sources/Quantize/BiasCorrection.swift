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
    /// Running per-element sums over the batch of observed tensors (mean maps: channel × position).
    public struct ChannelMeans: Sendable {
        public private(set) var sums: [String: [Double]] = [:]
        public private(set) var shapes: [String: [Int]] = [:]
        public private(set) var counts: [String: Double] = [:]
        public init() {}

        public mutating func add(_ name: String, _ t: Tensor) {
            guard t.rank >= 2, t.dtype.isFloatingPoint else { return }
            let item = Array(t.shape[1...]), size = item.reduce(1, *)
            let v = t.converted(to: .float32).scalars(as: Float.self)
            var s = sums[name] ?? [Double](repeating: 0, count: size)
            guard shapes[name] == nil || shapes[name] == item else { return }
            for o in 0..<t.shape[0] {
                for k in 0..<size { s[k] += Double(v[o * size + k]) }
            }
            sums[name] = s
            shapes[name] = item
            counts[name, default: 0] += Double(t.shape[0])
        }

        /// E[x] per channel and position ([C, spatial…], flattened) over the samples.
        public var means: [String: MeanMap] {
            var out: [String: MeanMap] = [:]
            for (k, s) in sums { if let n = counts[k], n > 0, let shape = shapes[k] { out[k] = MeanMap(shape: shape, values: s.map { $0 / n }) } }
            return out
        }
    }

    /// A layer input's mean over the samples, per channel and position.
    public struct MeanMap: Sendable {
        public var shape: [Int]
        public var values: [Double]
        public init(shape: [Int], values: [Double]) { self.shape = shape; self.values = values }
        /// Per channel, over all positions.
        public var channels: [Double] {
            let c = shape[0], inner = shape[1...].reduce(1, *)
            return (0..<c).map { ch in values[(ch * inner)..<((ch + 1) * inner)].reduce(0, +) / Double(inner) }
        }
    }

    /// For a 2-D Conv: M[ci, kh, kw] = the mean, over output positions, of the input value the
    /// tap (kh, kw) of channel ci reads there (0 in the zero padding), so that
    /// E[(ΔW ∗ x)_c] averaged over positions = Σ ΔW[c, ci, kh, kw]·M[ci, kh, kw] exactly, the
    /// border's padding and the stride included. nil when the geometry is not explicit.
    static func tapMeans(_ map: MeanMap, node n: Node, kernel: [Int]) -> [Double]? {
        guard map.shape.count == 3, kernel.count == 2 else { return nil }
        if let a = n.string("auto_pad"), a != "NOTSET" { return nil }
        let (c, h, w) = (map.shape[0], map.shape[1], map.shape[2])
        let strides = n.ints("strides").map { $0.map(Int.init) } ?? [1, 1]
        let dil = n.ints("dilations").map { $0.map(Int.init) } ?? [1, 1]
        let pads = n.ints("pads").map { $0.map(Int.init) } ?? [0, 0, 0, 0]
        guard strides.count == 2, dil.count == 2, pads.count == 4 else { return nil }
        let ho = (h + pads[0] + pads[2] - dil[0] * (kernel[0] - 1) - 1) / strides[0] + 1
        let wo = (w + pads[1] + pads[3] - dil[1] * (kernel[1] - 1) - 1) / strides[1] + 1
        guard ho > 0, wo > 0 else { return nil }
        var out = [Double](repeating: 0, count: c * kernel[0] * kernel[1])
        for ch in 0..<c {
            for kh in 0..<kernel[0] {
                for kw in 0..<kernel[1] {
                    var acc = 0.0
                    for oh in 0..<ho {
                        let ih = oh * strides[0] - pads[0] + kh * dil[0]
                        guard ih >= 0, ih < h else { continue }
                        for ow in 0..<wo {
                            let iw = ow * strides[1] - pads[1] + kw * dil[1]
                            if iw >= 0, iw < w { acc += map.values[(ch * h + ih) * w + iw] }
                        }
                    }
                    out[(ch * kernel[0] + kh) * kernel[1] + kw] = acc / Double(ho * wo)
                }
            }
        }
        return out
    }

    /// The expected output shift per output channel, (W_q − W)·E[x], of a Conv (any group),
    /// ConvTranspose (group 1) or Gemm (transA 0) whose weight `w` was quantized to `q` with
    /// `params` along `axis`; nil when the mean does not fit the weight.
    static func shift(weight w: Tensor, quantized q: Tensor, params: [QuantParams], axis: Int, node n: Node, mean map: MeanMap) -> [Double]? {
        let mean = map.channels
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
            // Per tap where the geometry allows (exact at the borders), else per channel.
            let taps = tapMeans(map, node: n, kernel: Array(shape[2...]))
            var out = [Double](repeating: 0, count: cout)
            for c in 0..<cout {
                let g0 = (c / opg) * cpg
                var acc = 0.0
                for ci in 0..<cpg {
                    if let taps {
                        for k in 0..<window { acc += delta((c * cpg + ci) * window + k) * taps[(g0 + ci) * window + k] }
                    } else {
                        var d = 0.0
                        for k in 0..<window { d += delta((c * cpg + ci) * window + k) }
                        acc += d * mean[g0 + ci]
                    }
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
                                    progress: (() -> Void)? = nil) throws -> [String: BiasCorrection.MeanMap] {
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
