import Foundation
import ModelIR
import TensorCore

/// Mixed precision: which quantized nodes to keep in float so that the end-to-end output SQNR
/// reaches a target. Nodes are ranked by sensitivity — the quantization noise they bring, the
/// noise-to-signal ratio of their input activation (measured by the quality pass) plus that of
/// their int8 weights — and the k most sensitive are kept in float, k the smallest found by
/// a doubling then bisecting search on the evaluation samples (each candidate model is
/// re-written from the same calibration and run over those samples).
public enum MixedPrecision {
    /// Noise-to-signal ratio Σ(w − ŵ)²/Σw² of a node's weights quantized as `writeQDQ` does.
    public static func weightNoise(_ model: Model, node: Int, options: QuantizeOptions) -> Double {
        let n = model.graph.nodes[node]
        guard n.inputs.count > 1, let w = model.graph.constantTensor(named: n.inputs[1]), w.dtype == .float32, w.rank >= 1 else { return 0 }
        let axis: Int
        switch n.opType {
        case "Conv": axis = 0
        case "Gemm": axis = (n.int("transB") ?? 0) != 0 ? 0 : w.rank - 1
        default: axis = w.rank - 1
        }
        let (q, p) = WeightQuantizer.quantize(w, axis: axis, perChannel: options.perChannel, range: QuantRange.of(.int8, symmetric: true), symmetric: true)
        let v = w.scalars(as: Float.self), qv = q.converted(to: .float32).scalars(as: Float.self)
        let dim = w.shape[axis], inner = w.shape[(axis + 1)...].reduce(1, *)
        var s = 0.0, e = 0.0
        for i in v.indices {
            let c = options.perChannel ? (i / inner) % dim : 0
            let d = Double(v[i]) - Double(qv[i]) * Double(p[c].scale)
            s += Double(v[i]) * Double(v[i]); e += d * d
        }
        return s > 0 ? e / s : 0
    }

    /// The nodes (indices into `nodes`' values) in decreasing sensitivity.
    public static func ranked(_ model: Model, nodes: [Int], activationSQNR: [String: Double], options: QuantizeOptions) -> [Int] {
        let scored = nodes.map { i -> (Int, Double) in
            let a = activationSQNR[model.graph.nodes[i].inputs[0]].map { pow(10, -$0 / 10) } ?? 0
            return (i, a + weightNoise(model, node: i, options: options))
        }
        return scored.sorted { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }.map(\.0)
    }

    public struct Result: Sendable {
        /// Nodes kept in float, most sensitive first.
        public let floatNodes: [Int]
        /// The output SQNR reached (nil: infinite), and whether it meets the target.
        public let sqnrDB: Double?
        public let met: Bool
        /// The (k, SQNR) pairs tried.
        public let tried: [(k: Int, sqnrDB: Double?)]
    }

    /// Searches the smallest k such that keeping the k most sensitive of `ranked` in float gives
    /// `evaluate(kept) ≥ target`; `evaluate` returns the output SQNR (nil: infinite) of the model
    /// quantized without the given nodes. SQNR is assumed to grow with k (bisection), and the
    /// answer is the smallest k seen to meet the target.
    public static func search(ranked: [Int], target: Double, evaluate: ([Int]) throws -> Double?) throws -> Result {
        var tried: [(k: Int, sqnrDB: Double?)] = []
        var cache: [Int: Double?] = [:]
        func meets(_ k: Int) throws -> Bool {
            if cache[k] == nil {
                let s = try evaluate(Array(ranked.prefix(k)))
                cache[k] = .some(s)
                tried.append((k, s))
            }
            return (cache[k]!.map { $0 >= target }) ?? true
        }
        var lo = 0  // largest k known to fail
        if try meets(0) { return Result(floatNodes: [], sqnrDB: cache[0]!, met: true, tried: tried) }
        var hi = 1
        while hi < ranked.count, !(try meets(hi)) { lo = hi; hi = min(hi * 2, ranked.count) }
        if hi >= ranked.count, !(try meets(ranked.count)) {
            return Result(floatNodes: ranked, sqnrDB: cache[ranked.count]!, met: false, tried: tried)
        }
        while hi - lo > 1 {
            let mid = (lo + hi) / 2
            if try meets(mid) { hi = mid } else { lo = mid }
        }
        return Result(floatNodes: Array(ranked.prefix(hi)), sqnrDB: cache[hi]!, met: true, tried: tried)
    }
}
