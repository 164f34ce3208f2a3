import TensorCore

/// Graph edits used by the capabilities (prune slices channels, quantize inserts QDQ pairs,
/// fuse deletes nodes). Each keeps value names unique, the node order topological, graph output
/// names unchanged and If/Loop/Scan bodies in step (a body's reads of outer values are
/// references like any other), or throws.
extension Graph {
    // MARK: Names

    /// A value or node name not yet used in this graph or its bodies, derived from `base`.
    /// Collects every name per call (O(graph)); to allocate many names use `NameAllocator`.
    public func uniqueName(_ base: String) -> String {
        var names = NameAllocator(self)
        return names.fresh(base)
    }

    /// Every value and node name of this graph and of the bodies nested in it.
    func collectNames(into s: inout Set<String>) {
        s.formUnion(inputs.map(\.name))
        s.formUnion(outputs.map(\.name))
        s.formUnion(valueInfo.map(\.name))
        s.formUnion(initializers.map(\.name))
        s.formUnion(sparseInitializerNames)
        for n in nodes {
            if !n.name.isEmpty { s.insert(n.name) }
            s.formUnion(n.inputs)
            s.formUnion(n.outputs)
            n.forEachSubgraph { $0.collectNames(into: &s) }
        }
    }

    // MARK: Insertion

    /// Inserts `node` at `index`. No other node, graph input or initializer may already produce
    /// one of its outputs (single assignment); a name that nodes only read so far is allowed, so
    /// a producer can be inserted for consumers rewired to read it first. O(graph) per call: use
    /// `insertNodes(_:)` for many.
    public mutating func insertNode(_ node: Node, at index: Int) throws {
        try insertNodes([(node, before: index)])
    }

    /// Inserts a batch of nodes in one linear pass: each `(node, before: i)` goes right before the
    /// node now at index `i` (`nodes.count` appends); nodes with the same `before` keep the batch
    /// order. Single assignment is checked as in `insertNode`, within the batch too.
    /// O(nodes + batch).
    public mutating func insertNodes(_ batch: [(Node, before: Int)]) throws {
        guard !batch.isEmpty else { return }
        var produced = Set(inputs.map(\.name)).union(initializers.map(\.name)).union(sparseInitializerNames)
        for n in nodes { produced.formUnion(n.outputs) }
        for (n, i) in batch {
            guard i >= 0 && i <= nodes.count else { throw GraphError.invalidEdit("insertion index \(i) is outside 0...\(nodes.count)") }
            for o in n.outputs where !o.isEmpty {
                if produced.contains(o) { throw GraphError.duplicateName(o) }
                produced.insert(o)
            }
        }
        // Bucket by position (stable), then merge with the existing nodes.
        var at = [[Node]](repeating: [], count: nodes.count + 1)
        for (n, i) in batch { at[i].append(n) }
        var merged: [Node] = []
        merged.reserveCapacity(nodes.count + batch.count)
        for i in 0...nodes.count {
            merged.append(contentsOf: at[i])
            if i < nodes.count { merged.append(nodes[i]) }
        }
        nodes = merged
    }

    /// Inserts `node` right before its first reader (a direct input or a read inside a body), or
    /// at the end when no node reads its outputs.
    public mutating func insertNodeBeforeFirstConsumer(_ node: Node) throws {
        let outs = Set(node.outputs.filter { !$0.isEmpty })
        let at = nodes.firstIndex { n in
            n.inputs.contains(where: outs.contains) || (n.hasSubgraphs && !n.subgraphReads().isDisjoint(with: outs))
        } ?? nodes.count
        try insertNode(node, at: at)
    }

    // MARK: Removal

    @discardableResult
    public mutating func removeNode(at index: Int) -> Node { nodes.remove(at: index) }

    /// Removes the node named `name`.
    @discardableResult
    public mutating func removeNode(named name: String) throws -> Node {
        guard let i = nodes.firstIndex(where: { $0.name == name }) else { throw GraphError.noSuchNode(name) }
        return nodes.remove(at: i)
    }

    /// Removes, in one backward pass, every node none of whose outputs is read (directly or by a
    /// body) or is a graph output, including nodes that become dead as their readers go.
    /// Nodes without outputs are kept. - Returns: the number of nodes removed.
    @discardableResult
    public mutating func removeDeadNodes() -> Int {
        var reads: [String: Int] = [:]
        for n in nodes {
            for i in n.inputs where !i.isEmpty { reads[i, default: 0] += 1 }
            for i in n.subgraphReads() { reads[i, default: 0] += 1 }
        }
        let outs = Set(outputs.map(\.name))
        var keep = [Bool](repeating: true, count: nodes.count)
        for k in nodes.indices.reversed() {
            let n = nodes[k]
            let live = n.outputs.isEmpty || n.outputs.contains { !$0.isEmpty && (outs.contains($0) || (reads[$0] ?? 0) > 0) }
            if live { continue }
            keep[k] = false
            for i in n.inputs where !i.isEmpty { reads[i, default: 1] -= 1 }
            for i in n.subgraphReads() { reads[i, default: 1] -= 1 }
        }
        let removed = keep.lazy.filter { !$0 }.count
        if removed > 0 { nodes = nodes.indices.filter { keep[$0] }.map { nodes[$0] } }
        return removed
    }

    /// What `cleanup()` removed.
    public struct CleanupReport: Equatable {
        public var nodes = 0
        public var initializers: [String] = []
        public var valueInfo: [String] = []
    }

    /// Removes dead nodes (`removeDeadNodes`), initializers nothing reads (and their graph-input
    /// entries, for models that list initializers as inputs), and value_info entries naming
    /// values that no longer exist.
    @discardableResult
    public mutating func cleanup() -> CleanupReport {
        var report = CleanupReport()
        report.nodes = removeDeadNodes()
        let index = UseDefIndex(self)
        let dead = initializers.map(\.name).filter { !index.isLive($0) }
        if !dead.isEmpty {
            let d = Set(dead)
            initializers.removeAll { d.contains($0.name) }
            inputs.removeAll { d.contains($0.name) }
            rebuildInitializerIndex()
            report.initializers = dead
        }
        var existing = Set(inputs.map(\.name)).union(outputs.map(\.name)).union(initializers.map(\.name))
        for n in nodes { existing.formUnion(n.outputs) }
        report.valueInfo = valueInfo.map(\.name).filter { !existing.contains($0) }
        valueInfo.removeAll { !existing.contains($0.name) }
        return report
    }

    // MARK: Renaming

    /// Rewrites every reference to value `old` (node inputs/outputs, reads inside bodies, graph
    /// inputs/outputs, value_info, initializers) to `new`, which must be unused.
    public mutating func renameValue(_ old: String, to new: String) throws {
        guard old != new else { return }
        var names = Set<String>()
        collectNames(into: &names)
        if names.contains(new) { throw GraphError.duplicateName(new) }
        renameReferences([old: new], outputsToo: true)
        for i in inputs.indices where inputs[i].name == old { inputs[i].name = new }
        for i in outputs.indices where outputs[i].name == old { outputs[i].name = new }
        for i in valueInfo.indices where valueInfo[i].name == old { valueInfo[i].name = new }
        if var ini = removeInitializer(old) { ini.name = new; addInitializer(ini) }
    }

    /// Redirects every reader of `old` (node inputs and reads inside bodies) to `new`.
    ///
    /// Graph output names never change. When `old` is a graph output, the value `new` takes its
    /// place under the name `old`: if `new` is produced by a node and is itself no graph output,
    /// that node's output is renamed to `old` (no node is added); otherwise (`new` is a graph
    /// input, an initializer or another graph output) an `Identity(new) -> old` is appended. In
    /// both cases the former producer of `old` keeps producing a fresh `<old>_replaced` name that
    /// nothing reads (`cleanup()` removes it).
    public mutating func replaceUses(of old: String, with new: String) {
        guard old != new else { return }
        renameReferences([old: new], outputsToo: false)
        guard outputs.contains(where: { $0.name == old }) else { return }
        let stale = uniqueName(old + "_replaced")
        if let p = producer(of: old) {
            nodes[p].outputs = nodes[p].outputs.map { $0 == old ? stale : $0 }
        }
        for i in valueInfo.indices where valueInfo[i].name == old { valueInfo[i].name = stale }
        let newIsOutput = outputs.contains { $0.name == new }
        if !newIsOutput, producer(of: new) != nil {
            renameReferences([new: old], outputsToo: true)
            for i in valueInfo.indices where valueInfo[i].name == new { valueInfo[i].name = old }
        } else {
            nodes.append(Node(name: uniqueName(old + "_identity"), opType: "Identity", inputs: [new], outputs: [old]))
        }
    }

    /// Redirects, in one pass over the graph, every read of each key of `map` (node inputs and
    /// reads inside bodies) to its value. Graph outputs are not touched: the caller makes sure
    /// no key is one (use `replaceUses(of:with:)` for those).
    public mutating func redirectReads(_ map: [String: String]) {
        guard !map.isEmpty else { return }
        renameReferences(map, outputsToo: false)
    }

    /// Applies `map` to node inputs (and, with `outputsToo`, node outputs) here and to outer
    /// reads inside bodies: a body name is rewritten only when the body does not define it.
    mutating func renameReferences(_ map: [String: String], outputsToo: Bool) {
        for k in nodes.indices {
            var n = nodes[k]
            var changed = false
            for (s, i) in n.inputs.enumerated() { if let r = map[i] { n.inputs[s] = r; changed = true } }
            if outputsToo { for (s, o) in n.outputs.enumerated() { if let r = map[o] { n.outputs[s] = r; changed = true } } }
            if n.hasSubgraphs {
                for a in n.attributes.indices {
                    switch n.attributes[a].value {
                    case .graph(var g): g.renameOuterReads(map); n.attributes[a].value = .graph(g); changed = true
                    case .graphs(var gs):
                        for j in gs.indices { gs[j].renameOuterReads(map) }
                        n.attributes[a].value = .graphs(gs); changed = true
                    default: break
                    }
                }
            }
            if changed { nodes[k] = n }
        }
    }

    /// Renames reads of outer values in this body (and bodies nested in it); names the body
    /// defines itself are left alone.
    mutating func renameOuterReads(_ map: [String: String]) {
        var local = Set(inputs.map(\.name)).union(initializers.map(\.name)).union(sparseInitializerNames)
        for n in nodes { local.formUnion(n.outputs) }
        let outer = map.filter { !local.contains($0.key) }
        guard !outer.isEmpty else { return }
        renameReferences(outer, outputsToo: false)
        for i in outputs.indices { if let r = outer[outputs[i].name] { outputs[i].name = r } }
    }

    // MARK: Order

    /// Throws at the first node that reads a value no earlier node, graph input or initializer
    /// provides, directly or inside one of its bodies (bodies are checked with the values visible
    /// at their node). Subgraphs may read outer values, so `outer` names values visible from outside.
    public func checkTopologicalOrder(outer: Set<String> = []) throws {
        var known = outer.union(inputs.map(\.name)).union(initializers.map(\.name)).union(sparseInitializerNames)
        known.insert("")
        for n in nodes {
            for i in n.inputs where !known.contains(i) { throw GraphError.notTopological(node: n.label, input: i) }
            if n.hasSubgraphs {
                for i in n.subgraphReads() where !known.contains(i) { throw GraphError.notTopological(node: n.label, input: i) }
            }
            known.formUnion(n.outputs)
        }
    }

    /// Reorders nodes topologically (stable: keeps the current order where it is valid); a node
    /// waits for the outer values its bodies read as for its inputs.
    public mutating func sortTopologically(outer: Set<String> = []) throws {
        var known = outer.union(inputs.map(\.name)).union(initializers.map(\.name)).union(sparseInitializerNames)
        known.insert("")
        let needs = nodes.map { n in n.hasSubgraphs ? n.inputs + n.subgraphReads() : n.inputs }
        var pending = Array(nodes.indices)
        var sorted: [Node] = []
        sorted.reserveCapacity(nodes.count)
        while !pending.isEmpty {
            var progressed = false
            var rest: [Int] = []
            for k in pending {
                if needs[k].allSatisfy(known.contains) {
                    sorted.append(nodes[k]); known.formUnion(nodes[k].outputs); progressed = true
                } else {
                    rest.append(k)
                }
            }
            if !progressed {
                let k = rest[0]
                throw GraphError.notTopological(node: nodes[k].label, input: needs[k].first { !known.contains($0) } ?? "?")
            }
            pending = rest
        }
        nodes = sorted
    }

    // MARK: Initializers

    /// Keeps only the entries `keep` (in that order) of initializer `name` along `axis` — the
    /// surgery structured pruning does on weights, biases and BN parameters. The value_info (and
    /// graph-input entry, if listed) of `name` gets the new shape.
    /// - Parameter allowShared: slice even when more than one node reads the initializer (every
    ///   reader then sees the sliced tensor); by default that is refused, since pruning one
    ///   layer's channels must not silently change another layer.
    public mutating func sliceInitializer(_ name: String, axis: Int, keep: [Int], allowShared: Bool = false) throws {
        guard let ini = initializer(named: name) else { throw GraphError.noSuchValue(name) }
        if !allowShared {
            let readers = UseDefIndex(self).readingNodes(of: name)
            if readers.count > 1 {
                let labels = readers.map { nodes[$0].label }.joined(separator: ", ")
                throw GraphError.invalidEdit("initializer '\(name)' is read by \(readers.count) nodes (\(labels)); slicing it changes all of them (pass allowShared: true to do so)")
            }
        }
        let sliced = ini.tensor.selecting(keep, alongAxis: axis)
        try replaceInitializer(name, with: sliced)
        let type = TensorType(sliced.dtype, sliced.shape)
        for i in valueInfo.indices where valueInfo[i].name == name { valueInfo[i].type = type }
        for i in inputs.indices where inputs[i].name == name { inputs[i].type = type }
    }

    // MARK: Types

    /// Records inferred types: every node output that is no graph output gets a value_info entry
    /// with `types[name]` (replacing an existing one); a graph output whose declared type lacks
    /// an element type or shape gets it filled in. Values not in `types` are left as they are.
    public mutating func recordTypes(_ types: [String: (DType, [Int])]) {
        let outs = Set(outputs.map(\.name))
        var position: [String: Int] = [:]
        for (i, v) in valueInfo.enumerated() { position[v.name] = i }
        for n in nodes {
            for o in n.outputs where !o.isEmpty && !outs.contains(o) {
                guard let t = types[o] else { continue }
                let type = TensorType(t.0, t.1)
                if let i = position[o] {
                    valueInfo[i].type = type
                } else {
                    position[o] = valueInfo.count
                    valueInfo.append(ValueInfo(name: o, type: type))
                }
            }
        }
        for i in outputs.indices {
            guard let t = types[outputs[i].name] else { continue }
            let declared = outputs[i].type
            if declared?.elementType == nil || declared?.shape == nil {
                outputs[i].type = TensorType(t.0, t.1)
            }
        }
    }
}

extension Node {
    /// Calls `body` with each subgraph attribute's graph.
    func forEachSubgraph(_ body: (Graph) -> Void) {
        for a in attributes {
            if case .graph(let g) = a.value { body(g) }
            if case .graphs(let gs) = a.value { gs.forEach(body) }
        }
    }
}

/// Allocates fresh value/node names for a graph in amortized O(1) per name: the names in use are
/// collected once, and each base remembers the last suffix it handed out.
public struct NameAllocator {
    private var used: Set<String>
    private var nextSuffix: [String: Int] = [:]

    /// Collects every name of `graph` and of its bodies.
    public init(_ graph: Graph) {
        var s = Set<String>()
        graph.collectNames(into: &s)
        used = s
    }

    /// `base` if unused, else `base_1`, `base_2`, … (the first free one); the result is reserved.
    public mutating func fresh(_ base: String) -> String {
        var name = base
        if used.contains(base) {
            var i = nextSuffix[base] ?? 1
            while used.contains("\(base)_\(i)") { i += 1 }
            name = "\(base)_\(i)"
            nextSuffix[base] = i + 1
        }
        used.insert(name)
        return name
    }

    /// Marks `name` as taken (a name added to the graph by other means).
    public mutating func reserve(_ name: String) { used.insert(name) }

    public func isUsed(_ name: String) -> Bool { used.contains(name) }
}
