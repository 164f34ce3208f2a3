import Foundation
import TensorCore

/// How an activation's threshold is chosen from what calibration saw. In the field's words:
/// `minmax` is non-saturating (the threshold is the largest |x|, nothing is clipped); the others
/// are saturating (a threshold below it; values beyond are clipped to trade range for resolution).
/// `mean-minmax` takes the mean over samples of each sample's minimum and maximum (NNCF's
/// MEAN_MINMAX, its default for per-tensor activations; TensorFlow's and PyTorch's moving-average
/// observers): saturating without a histogram, robust to one sample's outlier.
public enum CalibrationMethod: String, CaseIterable, Sendable, Codable {
    case minmax, percentile, entropy, mse
    case meanMinMax = "mean-minmax"

    public var saturating: Bool { self != .minmax }
    /// Whether the method reads the |x| histograms.
    public var needsHistogram: Bool { self != .minmax && self != .meanMinMax }
}

/// A histogram of |x| over [0, range] in equal bins, as `ActivationStats` fills it sample by
/// sample (memory is the bins, whatever the data set); the saturating methods pick their
/// threshold from it.
public struct AbsHistogram: Sendable {
    public let range: Float
    public private(set) var counts: [Double]

    public init(range: Float, counts: [Double]) {
        self.range = range
        self.counts = counts
    }

    public var binWidth: Double { Double(range) / Double(counts.count) }

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
    ///
    /// Computed without building P and Q: per candidate one pass over the levels for the zero
    /// counts and sums of the smoothed distributions, one for the KL terms (the bins where P is
    /// zero all contribute the same term, so only non-zero bins take a logarithm).
    public func entropyThreshold(levels: Int = 128) -> Float {
        let n = counts.count
        let total = counts.reduce(0, +)
        guard n > levels, total > 0 else { return range }
        let eps = 1e-4
        var best = (kl: Double.infinity, i: n)
        return counts.withUnsafeBufferPointer { c -> Float in
            var tail = total
            for k in 0..<(levels - 1) { tail -= c[k] }
            for i in levels...n {
                tail -= c[i - 1]  // now Σ c[i...]
                @inline(__always) func pAt(_ k: Int) -> Double { k == i - 1 ? c[k] + tail : c[k] }
                let perLevel = i / levels
                // Pass 1: zero counts of P and Q, and Q's sum.
                var zerosP = 0, zerosQ = 0, sumQ = 0.0
                for level in 0..<levels {
                    let start = level * perLevel, end = level == levels - 1 ? i : start + perLevel
                    var sum = 0.0, nonzero = 0
                    for k in start..<end { sum += c[k]; if pAt(k) != 0 { nonzero += 1 } }
                    zerosP += (end - start) - nonzero
                    if nonzero == 0 || sum == 0 { zerosQ += end - start } else { zerosQ += (end - start) - nonzero; sumQ += sum }
                }
                let nonzerosP = i - zerosP, nonzerosQ = i - zerosQ
                guard nonzerosP > 0, nonzerosQ > 0 else { continue }
                let eps1P = eps * Double(zerosP) / Double(nonzerosP), eps1Q = eps * Double(zerosQ) / Double(nonzerosQ)
                // Sums of the smoothed distributions (ε moved from the non-zero bins to the zero ones).
                let sp = total - Double(nonzerosP) * eps1P + Double(zerosP) * eps
                let sq = sumQ - Double(nonzerosQ) * eps1Q + Double(zerosQ) * eps
                guard sp > 0, sq > 0 else { continue }
                // Where P is zero Q is too: each such bin adds (ε/sp)·log((ε/sp)/(ε/sq)).
                var kl = Double(zerosP) * (eps / sp) * log(sq / sp)
                for level in 0..<levels where kl.isFinite {
                    let start = level * perLevel, end = level == levels - 1 ? i : start + perLevel
                    var sum = 0.0, nonzero = 0
                    for k in start..<end { sum += c[k]; if pAt(k) != 0 { nonzero += 1 } }
                    let q = nonzero > 0 ? sum / Double(nonzero) : 0
                    for k in start..<end {
                        let p = pAt(k)
                        guard p != 0 else { continue }
                        let ps = (p - eps1P) / sp
                        let qs = (q == 0 ? eps : q - eps1Q) / sq
                        guard qs > 0 else { kl = .infinity; break }
                        if ps > 0 { kl += ps * log(ps / qs) }
                    }
                }
                if kl < best.kl { best = (kl, i) }
            }
            return Float((Double(best.i) + 0.5) * binWidth)
        }
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
