import Foundation
import ModelIR
import Profile
import Runtime
import TensorCore

/// Speed, not only MACs: a pruned model that is memory-bound may be smaller and no faster. The
/// prune report gives the roofline estimate on a device (`compress profile`'s presets) and, with
/// `--measure`, the executor's measured latency, before and after.
public struct PruneSpeed: Encodable, Sendable {
    public var device: String?
    /// Roofline time estimate (Σ over nodes of max(FLOPs/peak, bytes/bandwidth)), ms.
    public var estimated_ms_before: Double?
    public var estimated_ms_after: Double?
    /// Share of the estimated time spent in memory-bound nodes.
    public var memory_bound_share_before: Double?
    public var memory_bound_share_after: Double?
    /// Median wall time of the executor over `runs` runs on zero inputs, ms.
    public var measured_ms_before: Double?
    public var measured_ms_after: Double?
    public var runs: Int?
    public var threads: Int?

    public init() {}

    /// Fills the roofline figures for `settings`.
    public mutating func estimate(_ before: ModelProfile, _ after: ModelProfile, settings: RooflineSettings) {
        device = settings.device.name
        func figures(_ p: ModelProfile) -> (Double?, Double?) {
            let est = p.estimates(settings)
            var total = 0.0, memory = 0.0
            for (n, e) in zip(p.nodes, est) where n.inTotal {
                guard let e else { continue }
                total += e.time
                if e.bound == .memory { memory += e.time }
            }
            return (total * 1e3, total > 0 ? memory / total : nil)
        }
        (estimated_ms_before, memory_bound_share_before) = figures(before)
        (estimated_ms_after, memory_bound_share_after) = figures(after)
    }

    /// Median executor latency of `model` over `runs` runs (after one warm-up) on zero inputs.
    public static func measure(_ model: Model, pins: [String: [Int]], runs: Int) throws -> Double {
        let exec = try Executor(model: model)
        var feeds: [String: Tensor] = [:]
        for (name, info) in try InputShapes.resolve(graph: model.graph, pins: pins) {
            try InputShapes.checkSynthesizable(info, input: name)
            feeds[name] = Tensor(dtype: info.dtype, shape: info.shape)
        }
        _ = try exec.run(feeds)
        var times: [Double] = []
        for _ in 0..<max(1, runs) {
            let t = DispatchTime.now().uptimeNanoseconds
            _ = try exec.run(feeds)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t) / 1e6)
        }
        times.sort()
        return times[times.count / 2]
    }
}
