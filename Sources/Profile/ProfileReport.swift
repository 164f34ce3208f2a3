import Foundation
import Runtime

/// An optional that encodes as JSON `null` instead of leaving its key out, so every key of the
/// documented schema is always present.
public struct OrNull<T: Encodable>: Encodable {
    public let value: T?
    public init(_ v: T?) { value = v }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        if let v = value { try c.encode(v) } else { try c.encodeNil() }
    }
}

/// The `compress profile --format json` document (schema "compress.profile/1", documented in
/// Docs/profile.md). Counts are integers; bytes are bytes; times are milliseconds; rates GFLOP/s.
public struct ProfileReport: Encodable {
    public struct Input: Encodable { let name: String; let dtype: String; let shape: [Int] }
    public struct Device: Encodable {
        let name: String
        let description: String
        let peak_gflops: [String: Double]
        let bandwidth_gbs: Double
        /// "auto" (per node) or the precision forced with --precision.
        let precision: String
        let sources: [String: String]
    }
    public struct Roofline: Encodable {
        let precision: String
        let ridge_flop_per_byte: Double
        let bound: OrNull<String>
        let attainable_gflops: Double
        let time_ms: Double
    }
    public struct NodeEntry: Encodable {
        let name: String
        let op: String
        let domain: String
        let scope: String
        let status: String
        let note: OrNull<String>
        let output_shape: OrNull<[Int]>
        let output_dtype: OrNull<String>
        let macs: Int
        let flops: Int
        let params: Int
        let buffers: Int
        let weight_bytes: Int
        let input_bytes: Int
        let output_bytes: Int
        let traffic_bytes: Int
        let intensity: OrNull<Double>
        let repeats: Int
        let in_total: Bool
        let precision: String
        let roofline: OrNull<Roofline>
    }
    public struct Totals: Encodable {
        let nodes: Int
        let uncounted_nodes: Int
        let macs: Int
        let flops: Int
        let params: Int
        let buffers: Int
        let parameter_bytes: Int
        let weight_bytes: Int
        let input_bytes: Int
        let output_bytes: Int
        let traffic_bytes: Int
        let intensity: OrNull<Double>
        let time_ms: OrNull<Double>
        let memory_bound_time_share: OrNull<Double>
    }
    public struct OpEntry: Encodable {
        let op: String
        let nodes: Int
        let macs: Int
        let flops: Int
        let params: Int
        let traffic_bytes: Int
        let time_ms: OrNull<Double>
    }
    public struct BudgetEntry: Encodable {
        let budget: String
        let limit: Double
        let value: OrNull<Double>
        let breached: Bool
    }
    public struct View: Encodable {
        /// "node" or "op": which table the text view prints.
        let by: String
        /// When set, `nodes` holds only the top N nodes, sorted by `sort`, largest first.
        let top: OrNull<Int>
        let sort: OrNull<String>
    }

    public let schema = "compress.profile/1"
    public let file: String
    public let inputs: [Input]
    public let device: OrNull<Device>
    public let view: View
    public let totals: Totals
    public let nodes: [NodeEntry]
    public let by_op: [OpEntry]
    public let warnings: [String]
    public let budgets: [BudgetEntry]

    /// - Parameters:
    ///   - top: keep only the top `top.n` nodes by `top.key`, largest first (`Int.max`: every node,
    ///     sorted; nil: every node in graph order).
    ///   - byOp: the text view's table (recorded in `view.by`).
    public init(profile p: ModelProfile, file: String, settings: RooflineSettings?, top: (n: Int, key: SortKey)? = nil,
                byOp: Bool = false, budgets: [Budget] = []) {
        self.file = file
        inputs = p.inputs.map { Input(name: $0.name, dtype: $0.info.dtype.onnxName, shape: $0.info.shape) }
        device = OrNull(settings.map { s in
            Device(name: s.device.name, description: s.device.description,
                   peak_gflops: Dictionary(uniqueKeysWithValues: s.device.peak.map { ($0.key.rawValue, $0.value / 1e9) }),
                   bandwidth_gbs: s.device.bandwidth / 1e9, precision: s.precision?.rawValue ?? "auto", sources: s.device.sources)
        })
        view = View(by: byOp ? "op" : "node", top: OrNull(top.flatMap { $0.n == Int.max ? nil : $0.n }), sort: OrNull(top?.key.rawValue))
        let t = p.totals
        let time = p.time(settings)
        totals = Totals(nodes: t.nodes, uncounted_nodes: t.uncountedNodes, macs: t.macs, flops: t.flops, params: t.params,
                        buffers: t.buffers, parameter_bytes: t.parameterBytes, weight_bytes: t.weightBytes,
                        input_bytes: t.inputBytes, output_bytes: t.outputBytes, traffic_bytes: t.trafficBytes,
                        intensity: OrNull(t.intensity), time_ms: OrNull(time.map { $0 * 1e3 }),
                        memory_bound_time_share: OrNull(p.memoryBoundShare(settings)))
        let est = p.estimates(settings)
        let indices = top.map { p.top($0.n, by: $0.key, settings) } ?? Array(p.nodes.indices)
        nodes = indices.map { i in
            let n = p.nodes[i]
            return NodeEntry(name: n.name, op: n.opType, domain: n.domain, scope: n.scope, status: n.status.rawValue,
                             note: OrNull(n.note), output_shape: OrNull(n.outputShape), output_dtype: OrNull(n.outputDType?.onnxName),
                             macs: n.macs, flops: n.flops, params: n.params, buffers: n.buffers, weight_bytes: n.weightBytes,
                             input_bytes: n.inputBytes, output_bytes: n.outputBytes, traffic_bytes: n.trafficBytes,
                             intensity: OrNull(n.intensity), repeats: n.repeats, in_total: n.inTotal,
                             precision: n.precision.rawValue, roofline: OrNull(est[i].map(Self.roofline)))
        }
        by_op = p.byOp(settings).map {
            OpEntry(op: $0.op, nodes: $0.nodes, macs: $0.macs, flops: $0.flops, params: $0.params,
                    traffic_bytes: $0.trafficBytes, time_ms: OrNull($0.time.map { $0 * 1e3 }))
        }
        warnings = p.warnings
        self.budgets = budgets.map { b in
            let v = b.value(of: p, settings)
            return BudgetEntry(budget: b.kind.rawValue, limit: b.limit, value: OrNull(v), breached: v.map { $0 > b.limit } ?? false)
        }
    }

    static func roofline(_ e: RooflineEstimate) -> Roofline {
        Roofline(precision: e.precision.rawValue, ridge_flop_per_byte: e.ridge, bound: OrNull(e.bound?.rawValue),
                 attainable_gflops: e.attainable / 1e9, time_ms: e.time * 1e3)
    }
}
