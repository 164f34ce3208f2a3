import Foundation
import TensorCore

// What every evaluation over data shares — `compress run`'s accuracy, prune's sensitivity and
// repair report, and the quality reports of quantize and distill: reading class scores, counting
// accuracy against labels, and comparing a model's outputs with a reference model's.

/// Class scores: a float output of shape [B, C] with C ≥ 2, one row per sample of the batch.
public enum ClassScores {
    /// A class and its score in a row's ranking.
    public struct Ranked: Encodable, Equatable, Sendable {
        public let `class`: Int
        /// The output value (not a softmax); NaN and ±infinity are written as JSON null.
        public let score: Double
        public init(class c: Int, score: Double) { self.class = c; self.score = score }
        enum CodingKeys: String, CodingKey { case `class`, score }
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(self.class, forKey: .class)
            if score.isFinite { try c.encode(score, forKey: .score) } else { try c.encodeNil(forKey: .score) }
        }
    }

    /// Whether `t` holds class scores: a float tensor of shape [B, C] with C ≥ 2.
    public static func isClassifier(_ t: Tensor) -> Bool {
        t.rank == 2 && t.shape[1] >= 2 && t.shape[0] >= 1 && [.float32, .float16, .float64, .bfloat16].contains(t.dtype)
    }

    /// The `k` largest entries of each row, by score descending, then class ascending; NaN
    /// ranks below every number. Scores of float32 (or narrower) outputs are the float's
    /// shortest decimal form, not the binary expansion of the widened double.
    public static func ranked(_ t: Tensor, k: Int) -> [[Ranked]] {
        let c = t.shape[1]
        let double = t.dtype == .float64
        let v = double ? t.scalars(as: Double.self) : t.floatValues().map(Double.init)
        func shown(_ x: Double) -> Double { double || !x.isFinite ? x : Double(String(Float(x))) ?? x }
        return (0..<t.shape[0]).map { r in
            let row = v[(r * c)..<((r + 1) * c)]
            let order = (0..<c).sorted { a, b in
                let x = row[r * c + a], y = row[r * c + b]
                if x.isNaN != y.isNaN { return !x.isNaN }
                return x != y && !x.isNaN ? x > y : a < b
            }
            return order.prefix(k).map { Ranked(class: $0, score: shown(row[r * c + $0])) }
        }
    }

    /// The top class of each row (ranking as `ranked`), or nil when `t` is not class scores.
    public static func argmax(_ t: Tensor) -> [Int]? {
        guard isClassifier(t) else { return nil }
        return ranked(t, k: 1).map { $0[0].class }
    }
}

/// Top-1 and top-k accuracy against labels, counted row by row.
public struct AccuracyCounter: Sendable {
    public private(set) var evaluated = 0, top1Correct = 0, topKCorrect = 0
    public init() {}

    /// Counts each ranked row (best first) against `label`.
    public mutating func add(_ rows: [[ClassScores.Ranked]], label: Int) {
        for row in rows {
            evaluated += 1
            if row.first?.class == label { top1Correct += 1 }
            if row.contains(where: { $0.class == label }) { topKCorrect += 1 }
        }
    }

    public var top1: Double? { evaluated > 0 ? Double(top1Correct) / Double(evaluated) : nil }
}

/// A model's outputs against a reference model's on the same samples: top-1 agreement of the
/// first output (when it is class scores) and the signal-to-noise ratio over every float output,
/// `SQNR = 10·log10(Σ ref² / Σ (ref − out)²)` in Double.
public struct OutputAgreement: Sendable {
    public private(set) var same = 0, rows = 0
    public private(set) var signal = 0.0, noise = 0.0
    /// False once a first output that is not class scores was seen (agreement is then nil).
    private var classifier = true
    public init() {}

    /// Adds one sample: the reference's outputs and the candidate's, in the same order.
    public mutating func add(reference: [Tensor], candidate: [Tensor]) {
        if classifier, let a = reference.first.flatMap(ClassScores.argmax), let b = candidate.first.flatMap(ClassScores.argmax), a.count == b.count {
            same += zip(a, b).filter { $0 == $1 }.count
            rows += a.count
        } else {
            classifier = false
        }
        for (x, y) in zip(reference, candidate) where x.dtype.isFloatingPoint && x.shape == y.shape {
            let u = x.converted(to: .float64).scalars(as: Double.self), v = y.converted(to: .float64).scalars(as: Double.self)
            for (p, q) in zip(u, v) { signal += p * p; noise += (p - q) * (p - q) }
        }
    }

    /// Fraction of rows with the reference's top class; nil when the first output is not class scores.
    public var agreement: Double? { classifier && rows > 0 ? Double(same) / Double(rows) : nil }
    /// nil when the outputs are identical (infinite SQNR).
    public var sqnrDB: Double? { noise > 0 ? 10 * log10(max(signal, .leastNormalMagnitude) / noise) : nil }
}
