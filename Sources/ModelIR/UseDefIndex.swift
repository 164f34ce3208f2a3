/// One read of a value: the reading node's index and the input slot it reads through, or
/// `slot == nil` when the value is read inside one of the node's If/Loop/Scan bodies.
public struct ValueUse: Hashable, Sendable {
    public var node: Int
    /// Input position in `nodes[node].inputs`; nil for a read inside a subgraph body.
    public var slot: Int?
    public init(node: Int, slot: Int?) { self.node = node; self.slot = slot }
}

/// Producer and readers of every value of one graph, built once in O(nodes + edges).
///
/// Readers include reads from inside subgraph bodies (a node whose If/Loop/Scan body reads an
/// outer value counts once, with `slot == nil`), so "read by exactly one node" means what a
/// rewrite needs it to mean. The index is a snapshot: it describes the graph it was built from
/// and is not updated by edits; passes rebuild it after they change the graph.
public struct UseDefIndex {
    /// Node index producing each value (graph inputs and initializers have none).
    public private(set) var producers: [String: Int] = [:]
    /// Every read of each value, in node order (a node reading a value twice appears twice).
    public private(set) var readers: [String: [ValueUse]] = [:]
    /// Names of the graph outputs.
    public let graphOutputs: Set<String>

    public init(_ graph: Graph) {
        graphOutputs = Set(graph.outputs.map(\.name))
        producers.reserveCapacity(graph.nodes.count)
        readers.reserveCapacity(graph.nodes.count * 2)
        for (i, n) in graph.nodes.enumerated() {
            for (k, v) in n.inputs.enumerated() where !v.isEmpty { readers[v, default: []].append(ValueUse(node: i, slot: k)) }
            for v in n.subgraphReads() { readers[v, default: []].append(ValueUse(node: i, slot: nil)) }
            for o in n.outputs where !o.isEmpty { producers[o] = i }
        }
    }

    /// The node that produces `value`, if any.
    public func producer(of value: String) -> Int? { producers[value] }

    /// Every read of `value` (direct inputs and subgraph reads).
    public func readers(of value: String) -> [ValueUse] { readers[value] ?? [] }

    /// Number of reads of `value` (a node reading it through two slots counts twice).
    public func readCount(of value: String) -> Int { readers[value]?.count ?? 0 }

    /// Indices of the nodes that read `value`, ascending, each once.
    public func readingNodes(of value: String) -> [Int] {
        var out: [Int] = []
        for u in readers[value] ?? [] where out.last != u.node { out.append(u.node) }
        return out
    }

    public func isGraphOutput(_ value: String) -> Bool { graphOutputs.contains(value) }

    /// Whether anything observes `value`: a reader or a graph output.
    public func isLive(_ value: String) -> Bool { readers[value] != nil || graphOutputs.contains(value) }

    /// Whether `value` is read exactly once, by input `slot` of a node, and is no graph output:
    /// the precondition for folding its producer into that reader.
    public func hasSingleDirectReader(_ value: String) -> ValueUse? {
        guard !graphOutputs.contains(value), let r = readers[value], r.count == 1, r[0].slot != nil else { return nil }
        return r[0]
    }
}

extension Node {
    /// Outer-scope values this node's If/Loop/Scan bodies read: names a body (or a body nested in
    /// it) reads that it does not define itself (as a body input, initializer or node output).
    public func subgraphReads() -> Set<String> {
        var out = Set<String>()
        for a in attributes {
            if case .graph(let g) = a.value { out.formUnion(g.outerReads()) }
            if case .graphs(let gs) = a.value { for g in gs { out.formUnion(g.outerReads()) } }
        }
        return out
    }

    /// Whether the node carries subgraph attributes.
    public var hasSubgraphs: Bool {
        attributes.contains {
            switch $0.value { case .graph, .graphs: return true; default: return false }
        }
    }
}

extension Graph {
    /// Names this graph reads that it does not define (when it is a subgraph body: the values it
    /// takes from the enclosing scopes), including those read by bodies nested in it.
    public func outerReads() -> Set<String> {
        var out = Set<String>()
        var local = Set(inputs.map(\.name)).union(initializers.map(\.name)).union(sparseInitializerNames)
        for m in nodes {
            for i in m.inputs where !i.isEmpty && !local.contains(i) { out.insert(i) }
            for i in m.subgraphReads() where !local.contains(i) { out.insert(i) }
            local.formUnion(m.outputs)
        }
        for o in outputs where !local.contains(o.name) { out.insert(o.name) }
        return out
    }

    /// A use-def index of this graph (see `UseDefIndex`).
    public func useDefIndex() -> UseDefIndex { UseDefIndex(self) }
}
