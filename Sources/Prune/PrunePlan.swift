import Foundation
import ModelIR
import TensorCore

/// What to prune and how.
public struct PruneOptions: Sendable {
    public var criterion: PruneCriterion
    /// Fraction of each group's channels to remove, in [0, 1).
    public var ratio: Double
    /// One ranking across groups (Network Slimming's single threshold) instead of `ratio` per group.
    public var global: Bool
    /// Remaining channels rounded up to a multiple of this (Torch-Pruning's `round_to`).
    public var roundTo: Int
    /// Never leave a group with fewer channels than this (and never fewer than 1).
    public var minChannels: Int
    /// Glob patterns (`*`, `?`) on node names: a group with a matching member is left alone.
    public var exclude: [String]
    /// Per-group ratios by group label (the producing node's name), overriding `ratio`.
    public var ratios: [String: Double]

    public init(criterion: PruneCriterion, ratio: Double, global: Bool = false, roundTo: Int = 1, minChannels: Int = 1,
                exclude: [String] = [], ratios: [String: Double] = [:]) {
        self.criterion = criterion
        self.ratio = ratio
        self.global = global
        self.roundTo = roundTo
        self.minChannels = minChannels
        self.exclude = exclude
        self.ratios = ratios
    }
}

/// The decision for one group: which of its channels go.
public struct GroupDecision: Sendable {
    public var group: ChannelGroup
    /// Channel indices removed, ascending.
    public var removed: [Int]
    /// The group's per-channel importance (mean of its members' mean-normalized importances).
    public var importance: [Double]
    /// nil when pruned as planned; otherwise why the group was left whole.
    public var skipped: String?

    public var remaining: Int { group.channels - removed.count }
}

public enum PruneError: Error, CustomStringConvertible {
    case nothingPrunable(String)
    case noBatchNorm
    case invalid(String)

    public var description: String {
        switch self {
        case .nothingPrunable(let why): return "no channel group can be pruned: \(why)"
        case .noBatchNorm:
            return "--method slim needs a BatchNormalization after the convolutions, and this model has none that "
                + "follows one (BN was folded into the convolutions at export); use --method l1, l2 or fpgm"
        case .invalid(let why): return why
        }
    }
}

/// A pruning plan: a decision per prunable group, and the groups that could not be pruned.
public struct PrunePlan: Sendable {
    public var decisions: [GroupDecision]
    public var unprunable: [ChannelGroup]
    /// Channel-axis Splits whose sizes the surgery recomputes.
    public var splits: [ChannelSplit]
    /// `--exclude` patterns that matched no node.
    public var unmatchedExcludes: [String]

    /// Plans `options` over the groups of `analysis`.
    /// - Throws: `PruneError` when no group can be pruned or slim finds no BatchNormalization.
    public init(model: Model, analysis: ChannelGroupAnalysis, options: PruneOptions) throws {
        let graph = model.graph
        unprunable = analysis.groups.filter { !$0.isPrunable }
        splits = analysis.splits
        let names = graph.nodes.map(\.name)
        unmatchedExcludes = options.exclude.filter { p in !names.contains { Glob.matches(p, $0) } }
        let candidates = analysis.prunable
        guard !candidates.isEmpty else {
            let reasons = Array(Set(unprunable.flatMap(\.reasons))).sorted().prefix(5)
            throw PruneError.nothingPrunable(analysis.groups.isEmpty ? "the model has no Conv, Gemm or MatMul with constant weights"
                                             : reasons.joined(separator: "; "))
        }
        if options.criterion == .slim, !candidates.contains(where: { !$0.batchNormScales.isEmpty }) { throw PruneError.noBatchNorm }

        var decisions: [GroupDecision] = []
        for g in candidates {
            var d = GroupDecision(group: g, removed: [], importance: [])
            if let p = options.exclude.first(where: { p in g.members.contains { Glob.matches(p, $0) } || Glob.matches(p, g.label) }) {
                d.skipped = "excluded by --exclude '\(p)'"
            } else if options.criterion == .slim, g.batchNormScales.isEmpty {
                d.skipped = "no BatchNormalization follows it (slim ranks by BN scale)"
            } else {
                d.importance = PrunePlan.importance(of: g, in: graph, criterion: options.criterion)
            }
            decisions.append(d)
        }

        let active = decisions.indices.filter { decisions[$0].skipped == nil }
        if options.global {
            // One ranking over every channel of every group: the lowest scores go until the
            // overall ratio is met, never taking a group below its floor.
            var pool: [(score: Double, d: Int, c: Int)] = []
            var total = 0
            for i in active {
                total += decisions[i].group.channels
                for (c, s) in decisions[i].importance.enumerated() { pool.append((s, i, c)) }
            }
            pool.sort { ($0.score, $0.d, $0.c) < ($1.score, $1.d, $1.c) }
            var budget = Int((Double(total) * options.ratio).rounded(.down))
            var taken = [Int: [Int]]()
            for e in pool where budget > 0 {
                let g = decisions[e.d].group
                if g.channels - (taken[e.d]?.count ?? 0) > PrunePlan.floor(g.channels, options) {
                    taken[e.d, default: []].append(e.c)
                    budget -= 1
                }
            }
            for i in active {
                let k = PrunePlan.rounded(removing: taken[i]?.count ?? 0, of: decisions[i].group.channels, options)
                decisions[i].removed = PrunePlan.choose(decisions[i].importance, k, decisions[i].group)
            }
        } else {
            for i in active {
                let g = decisions[i].group
                let r = options.ratios[g.label] ?? options.ratio
                let k = PrunePlan.rounded(removing: Int((Double(g.channels) * r).rounded(.down)), of: g.channels, options)
                decisions[i].removed = PrunePlan.choose(decisions[i].importance, k, g)
            }
        }
        self.decisions = decisions
    }

    /// The fewest channels a group may keep.
    static func floor(_ channels: Int, _ o: PruneOptions) -> Int { min(channels, max(1, o.minChannels)) }

    /// How many channels to remove when `k` are asked: the floor kept, and the remaining count
    /// rounded up to a multiple of `roundTo` (never removing more than asked).
    static func rounded(removing k: Int, of channels: Int, _ o: PruneOptions) -> Int {
        var keep = max(channels - max(0, k), floor(channels, o))
        if o.roundTo > 1 { keep = min(channels, (keep + o.roundTo - 1) / o.roundTo * o.roundTo) }
        return channels - keep
    }

    /// The `k` channels to remove from group `g`: the lowest scores, or with a grouped
    /// convolution's `blocks` B, floor(k/B) from every block: the lowest positions by the mean
    /// score over the blocks when the convolution reads the channels (`alignedBlocks`), the
    /// lowest of each block when it makes them.
    static func choose(_ scores: [Double], _ k: Int, _ g: ChannelGroup) -> [Int] {
        let b = g.blocks
        guard b > 1, scores.count % b == 0 else { return lowest(scores, k) }
        let per = scores.count / b, kb = k / b
        guard kb > 0 else { return [] }
        if g.alignedBlocks {
            let mean = (0..<per).map { p in (0..<b).reduce(0.0) { $0 + scores[$1 * per + p] } / Double(b) }
            let drop = lowest(mean, kb)
            return (0..<b).flatMap { j in drop.map { j * per + $0 } }
        }
        return (0..<b).flatMap { j in lowest(Array(scores[(j * per)..<((j + 1) * per)]), kb).map { j * per + $0 } }
    }

    /// Indices of the `k` smallest scores, ascending by index (ties: lower index first).
    static func lowest(_ scores: [Double], _ k: Int) -> [Int] {
        guard k > 0 else { return [] }
        return scores.indices.sorted { (scores[$0], $0) < (scores[$1], $1) }.prefix(k).sorted()
    }

    /// Per-channel importance of a group: each member's importance over the channels it covers,
    /// divided by its mean (so layers of different scale weigh alike, Torch-Pruning's "mean"
    /// normalizer), averaged over the members covering each channel. Members are the producing
    /// layers' filters, or for slim the BatchNormalization scales |γ| (taken raw, as Network
    /// Slimming compares γ across layers).
    public static func importance(of g: ChannelGroup, in graph: Graph, criterion: PruneCriterion) -> [Double] {
        var sum = [Double](repeating: 0, count: g.channels), count = [Double](repeating: 0, count: g.channels)
        let members: [ChannelSlice] = criterion == .slim ? g.batchNormScales
            : g.slices.filter { $0.role == .output && (graph.constantTensor(named: $0.tensor)?.rank ?? 0) >= 2 }
        for s in members {
            guard let t = graph.constantTensor(named: s.tensor) else { continue }
            let full: [Double] = criterion == .slim ? t.converted(to: .float64).scalars(as: Double.self).map(abs)
                : criterion.filterImportance(t, axis: s.axis)
            let part = (0..<s.count).map { full[s.offset + $0 * s.block] }
            let mean = part.reduce(0, +) / Double(max(1, part.count))
            for (k, v) in part.enumerated() {
                sum[s.start + k] += criterion == .slim || mean == 0 ? v : v / mean
                count[s.start + k] += 1
            }
        }
        return zip(sum, count).map { $1 > 0 ? $0 / $1 : 0 }
    }
}
