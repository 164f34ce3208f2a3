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
    /// E[x] of a layer's input as its correction needs it: for a 2-D Conv with explicit geometry
    /// the tap means M[ci, kh, kw] (the mean, over the output positions, of the input value tap
    /// (kh, kw) of channel ci reads there, 0 in the zero padding), so that the positions' mean
    /// of (ΔW ∗ x)_c is Σ ΔW[c, ci, kh, kw]·M[ci, kh, kw] exactly, borders and stride included;
    /// otherwise the per-channel means (axis 1, over all other axes). Memory: C·kh·kw or C values.
    public struct InputMeans: Sendable {
        public var values: [Double]
        public var taps: Bool
    }

    /// Running sums of `InputMeans` for one node, fed sample by sample.
    struct Accumulator {
        var sum: [Double] = []
        var count = 0.0
        var taps: Bool
        let kernel: [Int], strides: [Int], dilations: [Int], pads: [Int]

        init(node n: Node, weight: Tensor) {
            let k = n.opType == "Conv" && weight.rank == 4 ? Array(weight.shape[2...]) : []
            let strides = n.ints("strides").map { $0.map(Int.init) } ?? [1, 1]
            let dil = n.ints("dilations").map { $0.map(Int.init) } ?? [1, 1]
            let pads = n.ints("pads").map { $0.map(Int.init) } ?? [0, 0, 0, 0]
            let explicit = (n.string("auto_pad") ?? "NOTSET") == "NOTSET"
            taps = !k.isEmpty && explicit && strides.count == 2 && dil.count == 2 && pads.count == 4
            (kernel, self.strides, dilations, self.pads) = (k, strides, dil, pads)
        }

        mutating func add(_ t: Tensor) {
            guard t.rank >= 2, t.dtype.isFloatingPoint else { return }
            let v = t.converted(to: .float32).scalars(as: Float.self)
            let n = t.shape[0], c = t.shape[1], inner = t.shape[2...].reduce(1, *)
            if taps, t.rank == 4 {
                let (h, w) = (t.shape[2], t.shape[3])
                let ho = (h + pads[0] + pads[2] - dilations[0] * (kernel[0] - 1) - 1) / strides[0] + 1
                let wo = (w + pads[1] + pads[3] - dilations[1] * (kernel[1] - 1) - 1) / strides[1] + 1
                guard ho > 0, wo > 0 else { return }
                if sum.isEmpty { sum = [Double](repeating: 0, count: c * kernel[0] * kernel[1]) }
                guard sum.count == c * kernel[0] * kernel[1] else { return }
                for b in 0..<n {
                    for ch in 0..<c {
                        let plane = (b * c + ch) * inner
                        for kh in 0..<kernel[0] {
                            for kw in 0..<kernel[1] {
                                var acc = 0.0
                                for oh in 0..<ho {
                                    let ih = oh * strides[0] - pads[0] + kh * dilations[0]
                                    guard ih >= 0, ih < h else { continue }
                                    var row: Float = 0
                                    for ow in 0..<wo {
                                        let iw = ow * strides[1] - pads[1] + kw * dilations[1]
                                        if iw >= 0, iw < w { row += v[plane + ih * w + iw] }
                                    }
                                    acc += Double(row)
                                }
                                sum[(ch * kernel[0] + kh) * kernel[1] + kw] += acc / Double(ho * wo)
                            }
                        }
                    }
                }
                count += Double(n)
            } else {
                taps = false
                if sum.isEmpty { sum = [Double](repeating: 0, count: c) }
                guard sum.count == c else { return }
                for b in 0..<n {
                    for ch in 0..<c {
                        var acc: Float = 0
                        for k in 0..<inner { acc += v[(b * c + ch) * inner + k] }
                        sum[ch] += Double(acc) / Double(inner)
                    }
                }
                count += Double(n)
            }
        }

        var means: InputMeans? { count > 0 ? InputMeans(values: sum.map { $0 / count }, taps: taps) : nil }
    }

    /// The expected output shift per output channel, (W_q − W)·E[x], of a Conv (any group),
    /// ConvTranspose (group 1) or Gemm (transA 0) whose weight `w` was quantized to `q` with
    /// `params` along `axis`; nil when the mean does not fit the weight.
    static func shift(weight w: Tensor, quantized q: Tensor, params: [QuantParams], axis: Int, node n: Node, mean m: InputMeans) -> [Double]? {
        let taps: [Double]? = m.taps ? m.values : nil
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
            guard cout % group == 0 else { return nil }
            let opg = cout / group
            // Per tap where the geometry allows (exact at the borders), else per channel.
            guard m.values.count == (taps == nil ? cpg * group : cpg * group * window) else { return nil }
            let mean = m.values
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
            let cin = shape[0], cout = shape[1], window = shape[2...].reduce(1, *), mean = m.values
            guard !m.taps, mean.count == cin else { return nil }
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
            let kdim = transB ? shape[1] : shape[0], ndim = transB ? shape[0] : shape[1], mean = m.values
            guard !m.taps, mean.count == kdim else { return nil }
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
    /// E[x] of each Conv/ConvTranspose/Gemm input among `nodes`, by node index, over the samples
    /// (one more pass through the executor's hooks; memory C·kh·kw per node, whatever the data).
    public static func inputMeans(_ deployed: Model, nodes: [Int], samples: (([String: TensorCore.Tensor]) throws -> Void) throws -> Void,
                                  progress: (() -> Void)? = nil) throws -> [Int: BiasCorrection.InputMeans] {
        let g = deployed.graph
        var acc: [Int: BiasCorrection.Accumulator] = [:]
        var readers: [String: [Int]] = [:]
        for i in nodes where ["Conv", "ConvTranspose", "Gemm"].contains(g.nodes[i].opType) {
            let n = g.nodes[i]
            guard n.inputs.count > 1, let w = g.constantTensor(named: n.inputs[1]) else { continue }
            acc[i] = BiasCorrection.Accumulator(node: n, weight: w)
            readers[n.inputs[0], default: []].append(i)
        }
        guard !acc.isEmpty else { return [:] }
        let exec = try observing(deployed, names: Array(readers.keys))
        try samples { feeds in
            _ = try exec.run(feeds, hooks: ExecutionHooks(names: Set(readers.keys)) { name, t in
                for i in readers[name] ?? [] { acc[i]?.add(t) }
            })
            progress?()
        }
        return acc.compactMapValues(\.means)
    }
}
