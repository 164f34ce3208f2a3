import Foundation

/// Two profiles side by side (`compress profile A.onnx B.onnx`): the "before and after pruning
/// or quantization" view. Nodes are matched by scope and name; totals are compared whole.
public struct ProfileComparison {
    public struct Pair {
        public var a: Int
        public var b: Int
    }
    public var a: ModelProfile
    public var b: ModelProfile
    /// Node index pairs whose scope and name match, in B's order.
    public var matched: [Pair] = []
    /// Indices of A's nodes with no namesake in B.
    public var onlyInA: [Int] = []
    /// Indices of B's nodes with no namesake in A.
    public var onlyInB: [Int] = []

    public init(_ a: ModelProfile, _ b: ModelProfile) {
        self.a = a
        self.b = b
        func key(_ n: NodeProfile) -> String { n.scope + "\u{0}" + n.name }
        var indexA: [String: Int] = [:]
        for (i, n) in a.nodes.enumerated() where indexA[key(n)] == nil { indexA[key(n)] = i }
        var used = Set<Int>()
        for (j, n) in b.nodes.enumerated() {
            if let i = indexA[key(n)], used.insert(i).inserted { matched.append(Pair(a: i, b: j)) } else { onlyInB.append(j) }
        }
        onlyInA = a.nodes.indices.filter { !used.contains($0) }
    }

    /// The relative change b/a − 1, nil when a is 0.
    public static func change(_ a: Double, _ b: Double) -> Double? { a == 0 ? (b == 0 ? 0 : nil) : b / a - 1 }
}

/// The `compress profile A B --format json` document (schema "compress.profile-compare/1").
public struct ComparisonReport: Encodable {
    public struct Metric: Encodable {
        let metric: String
        let a: OrNull<Double>
        let b: OrNull<Double>
        let delta: OrNull<Double>
        /// (b − a) / a; null when a is 0 or a value is missing.
        let change: OrNull<Double>
    }
    public struct Side: Encodable {
        let macs: Int
        let flops: Int
        let params: Int
        let traffic_bytes: Int
        let time_ms: OrNull<Double>
    }
    public struct NodePair: Encodable {
        let name: String
        let scope: String
        let op_a: String
        let op_b: String
        let a: Side
        let b: Side
    }

    public let schema = "compress.profile-compare/1"
    public let a: ProfileReport
    public let b: ProfileReport
    public let totals: [Metric]
    public let nodes: [NodePair]
    public let only_in_a: [String]
    public let only_in_b: [String]

    public init(_ c: ProfileComparison, fileA: String, fileB: String, settings: RooflineSettings?, budgets: [Budget] = []) {
        a = ProfileReport(profile: c.a, file: fileA, settings: settings)
        b = ProfileReport(profile: c.b, file: fileB, settings: settings, budgets: budgets)
        totals = ComparisonReport.metrics(c, settings).map { m in
            Metric(metric: m.name, a: OrNull(m.a), b: OrNull(m.b),
                   delta: OrNull(m.a.flatMap { x in m.b.map { $0 - x } }),
                   change: OrNull(m.a.flatMap { x in m.b.flatMap { ProfileComparison.change(x, $0) } }))
        }
        let ea = c.a.estimates(settings), eb = c.b.estimates(settings)
        func side(_ p: ModelProfile, _ e: [RooflineEstimate?], _ i: Int) -> Side {
            let n = p.nodes[i]
            return Side(macs: n.macs, flops: n.flops, params: n.params, traffic_bytes: n.trafficBytes,
                        time_ms: OrNull(e[i].map { $0.time * 1e3 }))
        }
        nodes = c.matched.map { m in
            NodePair(name: c.b.nodes[m.b].name, scope: c.b.nodes[m.b].scope, op_a: c.a.nodes[m.a].opType, op_b: c.b.nodes[m.b].opType,
                     a: side(c.a, ea, m.a), b: side(c.b, eb, m.b))
        }
        only_in_a = c.onlyInA.map { c.a.nodes[$0].name }
        only_in_b = c.onlyInB.map { c.b.nodes[$0].name }
    }

    /// The compared totals: name, A's value, B's value (nil when not available).
    public static func metrics(_ c: ProfileComparison, _ s: RooflineSettings?) -> [(name: String, a: Double?, b: Double?)] {
        let ta = c.a.totals, tb = c.b.totals
        var out: [(String, Double?, Double?)] = [
            ("macs", Double(ta.macs), Double(tb.macs)),
            ("flops", Double(ta.flops), Double(tb.flops)),
            ("params", Double(ta.params), Double(tb.params)),
            ("parameter_bytes", Double(ta.parameterBytes), Double(tb.parameterBytes)),
            ("weight_bytes", Double(ta.weightBytes), Double(tb.weightBytes)),
            ("activation_bytes", Double(ta.inputBytes + ta.outputBytes), Double(tb.inputBytes + tb.outputBytes)),
            ("traffic_bytes", Double(ta.trafficBytes), Double(tb.trafficBytes)),
            ("intensity", ta.intensity, tb.intensity),
        ]
        if s != nil { out.append(("time_ms", c.a.time(s).map { $0 * 1e3 }, c.b.time(s).map { $0 * 1e3 })) }
        return out
    }
}
