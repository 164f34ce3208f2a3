import Foundation
import TensorCore

/// How an activation's threshold is chosen from what calibration saw. In the field's words:
/// `minmax` is non-saturating (the threshold is the largest |x|, nothing is clipped); the others
/// are saturating (a threshold below it; values beyond are clipped to trade range for resolution).
public enum CalibrationMethod: String, CaseIterable, Sendable, Codable {
    case minmax, percentile, entropy, mse

    public var saturating: Bool { self != .minmax }
}

/// A histogram of |x| over [0, range] in `bins` equal bins, filled sample by sample (memory is
/// the bins, whatever the data set). The range is fixed before filling (the first calibration
/// pass finds each tensor's largest |x|); values equal to the range go to the last bin, as
/// NumPy's `histogram` puts them.
public struct AbsHistogram: Sendable {
    public let range: Float
    public private(set) var counts: [Double]

    public init(range: Float, bins: Int) {
        self.range = range
        counts = [Double](repeating: 0, count: bins)
    }

    public var binWidth: Double { Double(range) / Double(counts.count) }

    public mutating func add(_ t: Tensor) {
        guard range > 0 else { counts[0] += Double(t.count); return }
        let v = t.converted(to: .float32).scalars(as: Float.self)
        let n = counts.count
        let scale = Double(n) / Double(range)
        for x in v where !x.isNaN {
            let a = Double(abs(x))
            let k = min(Int(a * scale), n - 1)
            counts[max(k, 0)] += 1
        }
    }

    /// The right edge of the first bin at which the cumulative share reaches `percentile` %.
    public func percentileThreshold(_ percentile: Double) -> Float {
        let total = counts.reduce(0, +)
        guard total > 0 else { return range }
        var cum = 0.0
        for (k, c) in counts.enumerated() {
            cum += c
            if cum / total >= percentile / 100 { return Float(Double(k + 1) * binWidth) }
        }
        return range
    }

    /// TensorRT's entropy calibration (Migacz, "8-bit Inference with TensorRT", 2017; the public
    /// reference code is MXNet's `_get_optimal_threshold`): for each candidate i from `levels` to
    /// the bin count, the reference P is the first i bins with every count beyond folded into bin
    /// i−1; Q merges the first i bins (without the outliers) into `levels` levels of i/levels bins
    /// (the last level takes the remainder) and spreads each level's sum evenly over the bins where
    /// P is non-zero; both are smoothed (ε = 1e-4 moved from the non-zero bins to the zero ones)
    /// and the i with the least KL(P‖Q) wins; the threshold is (i + 0.5) bin widths.
    public func entropyThreshold(levels: Int = 128) -> Float {
        let n = counts.count
        guard n > levels, counts.reduce(0, +) > 0 else { return range }
        var best = (kl: Double.infinity, i: n)
        var tail = counts.reduce(0, +)
        var prefix = 0.0
        for k in 0..<levels { prefix += counts[k] }
        tail -= prefix
        for i in levels...n {
            if i > levels { tail -= counts[i - 1] }
            var p = Array(counts[0..<i])
            p[i - 1] += tail
            var q = [Double](repeating: 0, count: i)
            let perLevel = i / levels
            for level in 0..<levels {
                let start = level * perLevel
                let end = level == levels - 1 ? i : start + perLevel
                var sum = 0.0, nonzero = 0
                for k in start..<end { sum += counts[k]; if p[k] != 0 { nonzero += 1 } }
                guard nonzero > 0 else { continue }
                for k in start..<end where p[k] != 0 { q[k] = sum / Double(nonzero) }
            }
            guard let ps = Self.smoothed(p), let qs = Self.smoothed(q) else { continue }
            let kl = Self.kl(ps, qs)
            if kl < best.kl { best = (kl, i) }
        }
        return Float((Double(best.i) + 0.5) * binWidth)
    }

    /// MXNet's `_smooth_distribution`: ε added to every zero bin and taken evenly from the non-zero
    /// ones, so KL stays finite; nil when every bin is zero.
    static func smoothed(_ p: [Double], eps: Double = 1e-4) -> [Double]? {
        let zeros = p.filter { $0 == 0 }.count, nonzeros = p.count - zeros
        guard nonzeros > 0 else { return nil }
        let eps1 = eps * Double(zeros) / Double(nonzeros)
        return p.map { $0 == 0 ? eps : $0 - eps1 }
    }

    /// KL(P‖Q) of two unnormalized histograms, each normalized to sum 1 (SciPy's `entropy`).
    static func kl(_ p: [Double], _ q: [Double]) -> Double {
        let sp = p.reduce(0, +), sq = q.reduce(0, +)
        guard sp > 0, sq > 0 else { return .infinity }
        var d = 0.0
        for (a, b) in zip(p, q) where a > 0 {
            guard b > 0 else { return .infinity }
            let pa = a / sp, qb = b / sq
            d += pa * log(pa / qb)
        }
        return d
    }

    /// The threshold t minimizing the expected squared error of symmetric quantization with
    /// `qmax` levels a side, over the histogram's bin centres: values inside round to the grid
    /// t/qmax, values beyond are clipped to t. Candidates are the bin right edges.
    public func mseThreshold(qmax: Int = 127) -> Float {
        let n = counts.count, w = binWidth
        guard counts.reduce(0, +) > 0, w > 0 else { return range }
        var best = (err: Double.infinity, t: Double(range))
        for i in 1...n {
            let t = Double(i) * w, s = t / Double(qmax)
            var err = 0.0
            for (k, c) in counts.enumerated() where c > 0 {
                let x = (Double(k) + 0.5) * w
                let e = x > t ? x - t : x - (x / s).rounded(.toNearestOrEven) * s
                err += c * e * e
            }
            if err < best.err { best = (err, t) }
        }
        return Float(best.t)
    }
}
