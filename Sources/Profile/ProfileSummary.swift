import Foundation

/// A roofline device and the precision rule applied to every node.
public struct RooflineSettings: Sendable {
    public var device: RooflineDevice
    /// nil: each node uses its own precision (int8 for int8 activations, fp16 for fp16/bf16,
    /// fp32 otherwise); set: every node uses this one.
    public var precision: Precision?

    public init(device: RooflineDevice, precision: Precision? = nil) {
        self.device = device
        self.precision = precision
    }
}

/// Columns the top-N view sorts by.
public enum SortKey: String, CaseIterable, Sendable {
    case flops, macs, params, traffic, time, intensity
}

/// One operator type's share of a model (`--by op`).
public struct OpSummary: Sendable {
    public var op: String
    public var nodes = 0
    public var macs = 0
    public var flops = 0
    public var params = 0
    public var trafficBytes = 0
    /// Estimated seconds on the device; nil without one.
    public var time: Double?
}

extension ModelProfile {
    /// Per-node roofline estimates (nil for nodes not counted).
    public func estimates(_ settings: RooflineSettings?) -> [RooflineEstimate?] {
        guard let s = settings else { return Array(repeating: nil, count: nodes.count) }
        return nodes.map { $0.roofline(on: s.device, precision: s.precision) }
    }

    /// Estimated whole-model time in seconds: the sum over the nodes that run (layers execute
    /// one after another), nil without a device.
    public func time(_ settings: RooflineSettings?) -> Double? {
        guard settings != nil else { return nil }
        return zip(nodes, estimates(settings)).reduce(0) { $0 + ($1.0.inTotal ? ($1.1?.time ?? 0) : 0) }
    }

    /// Share of the estimated time spent in memory-bound nodes, nil without a device.
    public func memoryBoundShare(_ settings: RooflineSettings?) -> Double? {
        guard let total = time(settings), total > 0 else { return nil }
        let mem = zip(nodes, estimates(settings)).reduce(0.0) { acc, p in
            p.0.inTotal && p.1?.bound == .memory ? acc + p.1!.time : acc
        }
        return mem / total
    }

    /// Per-operator-type sums over the nodes that run, costliest first (by time with a device,
    /// FLOPs otherwise).
    public func byOp(_ settings: RooflineSettings?) -> [OpSummary] {
        var table: [String: OpSummary] = [:]
        var order: [String] = []
        var seen = Set<String>()
        for (n, e) in zip(nodes, estimates(settings)) {
            let key = n.domain.isEmpty || n.domain == "ai.onnx" ? n.opType : "\(n.domain)::\(n.opType)"
            if table[key] == nil { table[key] = OpSummary(op: key, time: settings == nil ? nil : 0); order.append(key) }
            for k in n.constantKeys where !k.isBuffer && seen.insert(k.name).inserted { table[key]!.params += k.elements }
            guard n.inTotal else { continue }
            table[key]!.nodes += 1
            table[key]!.macs += n.macs
            table[key]!.flops += n.flops
            table[key]!.trafficBytes += n.trafficBytes
            if let t = e?.time { table[key]!.time = (table[key]!.time ?? 0) + t }
        }
        return order.map { table[$0]! }.filter { $0.nodes > 0 }.sorted {
            if let a = $0.time, let b = $1.time, a != b { return a > b }
            return $0.flops != $1.flops ? $0.flops > $1.flops : $0.op < $1.op
        }
    }

    /// Indices of the `n` nodes with the largest `key`, largest first (ties keep graph order).
    public func top(_ n: Int, by key: SortKey, _ settings: RooflineSettings?) -> [Int] {
        let est = estimates(settings)
        func value(_ i: Int) -> Double {
            let node = nodes[i]
            switch key {
            case .flops: return Double(node.flops)
            case .macs: return Double(node.macs)
            case .params: return Double(node.params)
            case .traffic: return Double(node.trafficBytes)
            case .time: return est[i]?.time ?? 0
            case .intensity: return node.intensity ?? 0
            }
        }
        let order = nodes.indices.sorted { a, b in
            let va = value(a), vb = value(b)
            return va != vb ? va > vb : a < b
        }
        return Array(order.prefix(max(n, 0)))
    }
}

/// A CI budget (`--max-gmacs`, `--max-params`, `--max-traffic-mib`, `--max-time-ms`).
public struct Budget: Sendable {
    public enum Kind: String, Sendable {
        case gmacs = "max-gmacs", params = "max-params", trafficMiB = "max-traffic-mib", timeMs = "max-time-ms"
    }
    public var kind: Kind
    public var limit: Double

    public init(_ kind: Kind, _ limit: Double) {
        self.kind = kind
        self.limit = limit
    }

    /// The model's value in the budget's unit; nil for a time budget without a device.
    public func value(of profile: ModelProfile, _ settings: RooflineSettings?) -> Double? {
        let t = profile.totals
        switch kind {
        case .gmacs: return Double(t.macs) / 1e9
        case .params: return Double(t.params)
        case .trafficMiB: return Double(t.trafficBytes) / 1_048_576
        case .timeMs: return profile.time(settings).map { $0 * 1e3 }
        }
    }
}
