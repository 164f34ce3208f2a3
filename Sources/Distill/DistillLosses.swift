import Foundation
import TensorCore

/// The losses a knowledge-distillation run sees between a teacher's and a student's logits
/// (Hinton, Vinyals & Dean 2015), per distribution, in Double with max-subtracted log-softmax
/// so ±1e4 logits stay finite.
///
/// With p = softmax(t/T) and q = softmax(s/T):
/// - `kl` = KL(p‖q) = Σ p·(log p − log q), at temperature T; `klT2` = T²·KL (the soft term of
///   the usual objective; T² keeps its gradient scale as T changes);
/// - `kl1` = KL at T = 1;
/// - `softCE` = −Σ p·log q (cross-entropy against the teacher's soft targets) and
///   `teacherEntropy` = −Σ p·log p, so softCE = teacherEntropy + KL;
/// - with a label y: `hardCE` = −log softmax(s)[y] for the student (and the teacher's own);
/// - combined = W·hardCE + (1 − W)·T²·KL (`--hard-weight W`; without labels W counts as 0).
public struct DistributionLosses: Sendable, Equatable {
    public var kl: Double
    public var klT2: Double
    public var kl1: Double
    public var softCE: Double
    public var teacherEntropy: Double
    public var teacherTop: Int
    public var studentTop: Int
    /// Whether the teacher's top class is among the student's five best.
    public var top5Agrees: Bool
    public var studentHardCE: Double?
    public var teacherHardCE: Double?

    /// Losses of one distribution: `t` and `s` are the C logits of teacher and student.
    public static func compute(teacher t: [Double], student s: [Double], temperature T: Double, label: Int?) -> DistributionLosses {
        let lp = logSoftmax(t.map { $0 / T }), lq = logSoftmax(s.map { $0 / T })
        let lp1 = logSoftmax(t), lq1 = logSoftmax(s)
        var kl = 0.0, ce = 0.0, h = 0.0, kl1 = 0.0
        for k in t.indices {
            let p = exp(lp[k])
            if p > 0 { kl += p * (lp[k] - lq[k]); h -= p * lp[k] }
            ce -= p * lq[k]
            let p1 = exp(lp1[k])
            if p1 > 0 { kl1 += p1 * (lp1[k] - lq1[k]) }
        }
        let tTop = argmax(t), order = s.indices.sorted { (s[$0], -$0) > (s[$1], -$1) }
        var r = DistributionLosses(kl: max(kl, 0), klT2: T * T * max(kl, 0), kl1: max(kl1, 0), softCE: ce, teacherEntropy: h,
                                   teacherTop: tTop, studentTop: order[0], top5Agrees: order.prefix(5).contains(tTop),
                                   studentHardCE: nil, teacherHardCE: nil)
        if let y = label, y >= 0, y < t.count {
            r.studentHardCE = -lq1[y]
            r.teacherHardCE = -lp1[y]
        }
        return r
    }

    /// log softmax(x) = x − max − log Σ exp(x − max).
    public static func logSoftmax(_ x: [Double]) -> [Double] {
        let m = x.max() ?? 0
        let lse = log(x.reduce(0) { $0 + exp($1 - m) })
        return x.map { $0 - m - lse }
    }

    /// The first index of the largest value (NaN never wins).
    static func argmax(_ x: [Double]) -> Int {
        var best = 0
        for k in x.indices where x[k] > x[best] || x[best].isNaN { best = k }
        return best
    }
}

/// Regression losses and similarity of two feature (hint) tensors of equal shape, over all elements.
public struct FeatureLosses: Sendable, Equatable {
    public var mse: Double
    public var cosine: Double
    public var maxAbs: Double

    public static func compute(_ a: [Double], _ b: [Double]) -> FeatureLosses {
        var se = 0.0, dot = 0.0, na = 0.0, nb = 0.0, mx = 0.0
        for (x, y) in zip(a, b) {
            let d = x - y
            se += d * d; dot += x * y; na += x * x; nb += y * y; mx = max(mx, abs(d))
        }
        let n = Double(max(a.count, 1))
        let cos = na > 0 && nb > 0 ? dot / (na.squareRoot() * nb.squareRoot()) : (na == nb ? 1 : 0)
        return FeatureLosses(mse: se / n, cosine: cos, maxAbs: mx)
    }
}

/// Splits a tensor into distributions along the class axis: `[N, C]` gives N rows; with the class
/// axis k of `[d0, …, dk, …]` each position of the other axes is one distribution of d_k values.
public enum ClassAxis {
    public static func distributions(_ t: Tensor, axis k: Int) -> [[Double]] {
        let v = t.converted(to: .float64).scalars(as: Double.self)
        let c = t.shape[k], outer = t.shape[..<k].reduce(1, *), inner = t.shape[(k + 1)...].reduce(1, *)
        var out: [[Double]] = []
        out.reserveCapacity(outer * inner)
        for o in 0..<outer {
            for i in 0..<inner { out.append((0..<c).map { v[(o * c + $0) * inner + i] }) }
        }
        return out
    }
}
