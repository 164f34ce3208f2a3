import Foundation
import ModelIR
import Profile
import Runtime

/// The `compress prune --format json` schema (`compress.prune/1`, documented in Docs/prune.md).
/// Parameters and MACs come from `ModelProfile` on the model before and after, so the report's
/// figures are a recount of what was written, not an estimate.
public struct PruneReport: Encodable, Sendable {
    public struct Slice: Encodable, Sendable {
        public let tensor: String
        public let axis: Int
        public let offset: Int
        public let start: Int
        public let count: Int
        public let block: Int
        public let role: String
        public let node: String
    }
    public struct Group: Encodable, Sendable {
        public let label: String
        public let channels_before: Int
        public let channels_after: Int
        public let removed: [Int]
        public let producers: [String]
        public let members: [String]
        /// Every constant the group indexes (what the surgery slices).
        public let slices: [Slice]
        /// Why it was left whole (excluded, no BN for slim); absent when pruned as planned.
        public let skipped: String?
    }
    public struct Unprunable: Encodable, Sendable {
        public let label: String
        public let channels: Int
        public let reasons: [String]
    }
    public struct Layer: Encodable, Sendable {
        public let name: String
        public let op: String
        public let params_before: Int
        public let params_after: Int
        public let macs_before: Int
        public let macs_after: Int
    }
    public struct Totals: Encodable, Sendable {
        public let params_before: Int
        public let params_after: Int
        public let macs_before: Int
        public let macs_after: Int
        public let flops_before: Int
        public let flops_after: Int
        public let traffic_bytes_before: Int
        public let traffic_bytes_after: Int
    }

    public var schema = "compress.prune/1"
    public let model: String
    public var output: String?
    public let method: String
    public let ratio: Double
    /// The per-group ratios applied (`--ratios`, scaled by `--target-macs`); absent without them.
    public let ratios: [String: Double]?
    public let global: Bool
    public let groups: [Group]
    public let unprunable: [Unprunable]
    public let layers: [Layer]
    public let totals: Totals
    public var warnings: [String]
    /// Consumers where the constants removed channels emitted could not be folded exactly
    /// (their contribution is dropped).
    public var approximations: [String] = []
    /// Roofline estimate (`--device`) and measured latency (`--measure`), before and after.
    public var speed: PruneSpeed?
    /// What `--calib` repaired, with top-1 accuracy on the calibration samples when they are labelled.
    public var repair: Repair?

    public struct Repair: Encodable, Sendable {
        public let folder: String
        public let summary: PruneRepair.Summary
        /// With `--reconstruct`: the layers refit by least squares.
        public let reconstruction: PruneReconstruction.Summary?
        public let accuracy_original: Double?
        public let accuracy_pruned: Double?
        public let accuracy_repaired: Double?
        public init(folder: String, summary: PruneRepair.Summary, reconstruction: PruneReconstruction.Summary?,
                    accuracy_original: Double?, accuracy_pruned: Double?, accuracy_repaired: Double?) {
            self.folder = folder
            self.summary = summary
            self.reconstruction = reconstruction
            self.accuracy_original = accuracy_original
            self.accuracy_pruned = accuracy_pruned
            self.accuracy_repaired = accuracy_repaired
        }
    }

    public init(model path: String, options: PruneOptions, plan: PrunePlan, before: ModelProfile, after: ModelProfile) {
        model = path
        method = options.criterion.rawValue
        ratio = options.ratio
        ratios = options.ratios.isEmpty ? nil : options.ratios
        global = options.global
        groups = plan.decisions.map {
            Group(label: $0.group.label, channels_before: $0.group.channels, channels_after: $0.remaining, removed: $0.removed,
                  producers: $0.group.producers, members: $0.group.members,
                  slices: $0.group.slices.map { Slice(tensor: $0.tensor, axis: $0.axis, offset: $0.offset, start: $0.start, count: $0.count,
                                                      block: $0.block, role: $0.role.rawValue, node: $0.node) },
                  skipped: $0.skipped)
        }
        unprunable = plan.unprunable.map { Unprunable(label: $0.label, channels: $0.channels, reasons: $0.reasons) }
        var afterByName: [String: NodeProfile] = [:]
        for n in after.nodes where n.scope.isEmpty { afterByName[n.name] = n }
        layers = before.nodes.filter { $0.scope.isEmpty && ["Conv", "Gemm", "MatMul", "ConvTranspose"].contains($0.opType) }.map { b in
            let a = afterByName[b.name]
            return Layer(name: b.name, op: b.opType, params_before: b.params, params_after: a?.params ?? 0,
                         macs_before: b.macs, macs_after: a?.macs ?? 0)
        }
        let tb = before.totals, ta = after.totals
        totals = Totals(params_before: tb.params, params_after: ta.params, macs_before: tb.macs, macs_after: ta.macs,
                        flops_before: tb.flops, flops_after: ta.flops,
                        traffic_bytes_before: tb.trafficBytes, traffic_bytes_after: ta.trafficBytes)
        warnings = plan.unmatchedExcludes.map { "--exclude '\($0)' matches no node" }
    }
}

/// The whole prune: analysis, plan, surgery, and the before/after profiles.
public enum Pruner {
    public struct Result {
        public var model: Model
        public var plan: PrunePlan
        public var report: PruneReport
        /// The profiles the report's counts come from (for roofline estimates).
        public var before: ModelProfile
        public var after: ModelProfile
    }

    /// Prunes `model` with `options`. `path` names the model in the report.
    public static func prune(_ model: Model, path: String, options: PruneOptions, pins: [String: [Int]] = [:]) throws -> Result {
        let analysis = try ChannelGroupAnalysis(model: model, pins: pins)
        let plan = try PrunePlan(model: model, analysis: analysis, options: options)
        let (pruned, notes) = try ChannelSurgery.apply(plan, to: model, pins: pins)
        let before = try ModelProfile(model: model, pins: pins), after = try ModelProfile(model: pruned, pins: pins)
        var report = PruneReport(model: path, options: options, plan: plan, before: before, after: after)
        report.approximations = notes
        return Result(model: pruned, plan: plan, report: report, before: before, after: after)
    }

    /// The options whose pruned model keeps at most `fraction` of the MACs, as close to it as
    /// channel rounding allows (bisection, each step a real recount of the pruned graph; stops
    /// within 1 % below the target). Without per-group ratios the searched parameter is the
    /// uniform ratio; with `options.ratios` (e.g. from a sensitivity run) it is one factor α that
    /// scales every group's ratio, `min(α·r_g, 0.99)`, so the groups keep their relative budget
    /// (a group at 0 is never pruned) and groups not named stay whole.
    /// Returns the options and the MAC fraction they keep.
    public static func options(keepingMACs fraction: Double, _ model: Model, options: PruneOptions,
                               pins: [String: [Int]] = [:]) throws -> (options: PruneOptions, kept: Double) {
        let analysis = try ChannelGroupAnalysis(model: model, pins: pins)
        let total = Double(try ModelProfile(model: model, pins: pins).totals.macs)
        guard total > 0 else { throw PruneError.invalid("the model has no multiply-accumulates to reduce") }
        let guided = !options.ratios.isEmpty
        let smallest = options.ratios.values.filter { $0 > 0 }.min()
        if guided && smallest == nil { throw PruneError.invalid("--target-macs with --ratios: every ratio in the file is 0, nothing to scale") }
        func at(_ t: Double) -> PruneOptions {
            var o = options
            if guided { o.ratio = 0; o.ratios = options.ratios.mapValues { min($0 * t, 0.99) } } else { o.ratio = t }
            return o
        }
        func kept(_ t: Double) throws -> Double {
            let plan = try PrunePlan(model: model, analysis: analysis, options: at(t))
            return Double(try ModelProfile(model: try ChannelSurgery.apply(plan, to: model, pins: pins, foldRemoved: false).model,
                                           pins: pins).totals.macs) / total
        }
        var lo = 0.0, hi = guided ? 0.99 / smallest! : 0.99
        // The best point within the budget (kept ≤ fraction), else the one keeping least.
        var best = (t: 0.0, kept: 1.0)
        for _ in 0..<20 {
            let mid = (lo + hi) / 2
            let k = try kept(mid)
            let better = k <= fraction + 1e-12 ? (best.kept > fraction + 1e-12 || k > best.kept) : (best.kept > fraction + 1e-12 && k < best.kept)
            if better { best = (mid, k) }
            if k <= fraction + 1e-12 && fraction - k < 0.01 { break }
            if k > fraction { lo = mid } else { hi = mid }
        }
        if best.kept > fraction + 1e-12, try kept(hi) < best.kept { best = (hi, try kept(hi)) }
        return (at(best.t), best.kept)
    }
}
