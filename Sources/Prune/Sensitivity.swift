import Foundation
import ModelIR
import Passes
import Profile
import Runtime
import TensorCore

/// Pruning sensitivity (Li et al., ICLR 2017; PaddleSlim's `sensitivity`): each group is pruned
/// alone at each ratio, and the pruned model's outputs are compared with the unpruned model's on
/// data. Groups whose outputs hold up can take a larger ratio; `ratios(maxDrop:)` picks, per
/// group, the largest ratio that stays within a quality budget, for `--ratios`.
public struct SensitivityReport: Encodable, Sendable {
    public struct Point: Encodable, Sendable {
        public let ratio: Double
        public let channels_after: Int
        /// MACs of the whole model with only this group pruned at this ratio.
        public let macs_after: Int
        /// Fraction of rows whose arg-max class equals the unpruned model's (first output, when it
        /// is [N, C] with C ≥ 2).
        public let agreement: Double?
        /// 10·log10(Σ ref² / Σ (ref − out)²) over every output; null when the outputs are identical.
        public let sqnr_db: Double?
        /// Top-1 accuracy when every sample has a label.
        public let accuracy: Double?
    }
    public struct Row: Encodable, Sendable {
        public let group: String
        public let channels: Int
        public let points: [Point]
    }

    public var schema = "compress.prune-sensitivity/1"
    public let model: String
    public let method: String
    public let samples: Int
    public let macs: Int
    /// Accuracy of the unpruned model on the samples (labels), or null.
    public let baseline_accuracy: Double?
    public let rows: [Row]
    /// With `--emit-ratios`: the chosen ratio per group and the rule that chose it.
    public var emitted: [String: Double]?
    public var rule: String?

    /// Per group, the largest ratio r such that every swept ratio up to r keeps the quality
    /// measure within budget: accuracy within `maxDrop` of the baseline when labelled, else
    /// agreement ≥ 1 − maxDrop when the model is a classifier, else SQNR ≥ `minSQNR` dB.
    public func ratios(maxDrop: Double, minSQNR: Double) -> (ratios: [String: Double], rule: String) {
        var out: [String: Double] = [:]
        var rule = ""
        for row in rows {
            var best = 0.0
            for p in row.points.sorted(by: { $0.ratio < $1.ratio }) {
                let ok: Bool
                if let a = p.accuracy, let b = baseline_accuracy {
                    ok = b - a <= maxDrop + 1e-12
                    rule = "accuracy drop ≤ \(maxDrop)"
                } else if let g = p.agreement {
                    ok = 1 - g <= maxDrop + 1e-12
                    rule = "top-1 agreement ≥ \(1 - maxDrop)"
                } else {
                    ok = (p.sqnr_db ?? .infinity) >= minSQNR
                    rule = "output SQNR ≥ \(minSQNR) dB"
                }
                if !ok { break }
                best = p.ratio
            }
            out[row.group] = best
        }
        return (out, rule)
    }
}

public enum Sensitivity {
    /// One calibration sample: the feeds and the label, if any.
    public typealias Sample = (feeds: [String: Tensor], label: Int?)

    /// Sweeps every prunable group of `model` over `ratios` on `samples` (held in memory: pass a
    /// bounded number). `progress` is called after each pruned variant.
    public static func sweep(_ model: Model, path: String, criterion: PruneCriterion, ratios: [Double], samples: [Sample],
                             pins: [String: [Int]] = [:], progress: (() -> Void)? = nil) throws -> SensitivityReport {
        guard !samples.isEmpty else { throw PruneError.invalid("no samples to measure sensitivity on") }
        let analysis = try ChannelGroupAnalysis(model: model, pins: pins)
        let outputs = model.graph.outputs.map(\.name)
        let reference = try run(model, samples, outputs)
        let labelled = samples.allSatisfy { $0.label != nil }
        let baseline = labelled ? accuracy(reference, samples) : nil
        let macs = try ModelProfile(model: model, pins: pins).totals.macs
        var rows: [SensitivityReport.Row] = []
        let candidates = analysis.prunable.filter { criterion != .slim || !$0.batchNormScales.isEmpty }
        guard !candidates.isEmpty else {
            throw criterion == .slim ? PruneError.noBatchNorm : PruneError.nothingPrunable("no group can be pruned")
        }
        for g in candidates {
            var points: [SensitivityReport.Point] = []
            for r in ratios {
                let options = PruneOptions(criterion: criterion, ratio: 0, ratios: [g.label: r])
                let plan = try PrunePlan(model: model, analysis: analysis, options: options)
                let pruned = try ChannelSurgery.apply(plan, to: model, pins: pins).model
                let got = try run(pruned, samples, outputs)
                let kept = plan.decisions.first { $0.group.id == g.id }?.remaining ?? g.channels
                let change = compare(reference, got)
                points.append(SensitivityReport.Point(
                    ratio: r, channels_after: kept, macs_after: try ModelProfile(model: pruned, pins: pins).totals.macs,
                    agreement: change.agreement, sqnr_db: change.sqnrDB,
                    accuracy: labelled ? accuracy(got, samples) : nil))
                progress?()
            }
            rows.append(SensitivityReport.Row(group: g.label, channels: g.channels, points: points))
        }
        return SensitivityReport(model: path, method: criterion.rawValue, samples: samples.count, macs: macs,
                                 baseline_accuracy: baseline, rows: rows)
    }

    static func run(_ model: Model, _ samples: [Sample], _ outputs: [String]) throws -> [[Tensor]] {
        let exec = try Executor(model: model)
        return try samples.map { s in
            let r = try exec.run(s.feeds)
            return outputs.map { r[$0]! }
        }
    }

    static func compare(_ ref: [[Tensor]], _ got: [[Tensor]]) -> OutputAgreement {
        var a = OutputAgreement()
        for (x, y) in zip(ref, got) { a.add(reference: x, candidate: y) }
        return a
    }

    static func accuracy(_ outs: [[Tensor]], _ samples: [Sample]) -> Double? {
        var counter = AccuracyCounter()
        for (o, s) in zip(outs, samples) {
            guard let first = o.first, ClassScores.isClassifier(first), let label = s.label else { return nil }
            counter.add(ClassScores.ranked(first, k: 1), label: label)
        }
        return counter.top1
    }
}
