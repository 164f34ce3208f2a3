import TensorCore

/// Graph edits used by the capabilities (prune slices channels, quantize inserts QDQ pairs,
/// fuse deletes nodes). Each keeps value names unique and the node order topological, or throws.
extension Graph {
    /// A value or node name not yet used in this graph, derived from `base`.
    public func uniqueName(_ base: String) -> String {
        let used = allValueNames.union(nodes.map(\.name))
        if !used.contains(base) { return base }
        var i = 1
        while used.contains("\(base)_\(i)") { i += 1 }
        return "\(base)_\(i)"
    }

    /// Inserts `node` at `index`. No other node, graph input or initializer may already produce
    /// one of its outputs (single assignment); a name that nodes only read so far is allowed, so
    /// a producer can be inserted for consumers rewired to read it first.
    public mutating func insertNode(_ node: Node, at index: Int) throws {
        var produced = Set(inputs.map(\.name)).union(initializers.map(\.name)).union(sparseInitializerNames)
        for n in nodes { produced.formUnion(n.outputs) }
        for o in node.outputs where !o.isEmpty && produced.contains(o) { throw GraphError.duplicateName(o) }
        nodes.insert(node, at: index)
    }

    /// Inserts `node` right before its first consumer, or at the end when no node reads its outputs.
    public mutating func insertNodeBeforeFirstConsumer(_ node: Node) throws {
        let outs = Set(node.outputs)
        let at = nodes.firstIndex { $0.inputs.contains(where: outs.contains) } ?? nodes.count
        try insertNode(node, at: at)
    }

    @discardableResult
    public mutating func removeNode(at index: Int) -> Node { nodes.remove(at: index) }

    /// Removes the node named `name`.
    @discardableResult
    public mutating func removeNode(named name: String) throws -> Node {
        guard let i = nodes.firstIndex(where: { $0.name == name }) else { throw GraphError.noSuchNode(name) }
        return nodes.remove(at: i)
    }

    /// Rewrites every reference to value `old` (node inputs/outputs, graph inputs/outputs,
    /// value_info, initializers) to `new`, which must be unused.
    public mutating func renameValue(_ old: String, to new: String) throws {
        guard old != new else { return }
        if allValueNames.contains(new) { throw GraphError.duplicateName(new) }
        for i in nodes.indices {
            nodes[i].inputs = nodes[i].inputs.map { $0 == old ? new : $0 }
            nodes[i].outputs = nodes[i].outputs.map { $0 == old ? new : $0 }
        }
        for i in inputs.indices where inputs[i].name == old { inputs[i].name = new }
        for i in outputs.indices where outputs[i].name == old { outputs[i].name = new }
        for i in valueInfo.indices where valueInfo[i].name == old { valueInfo[i].name = new }
        if var ini = removeInitializer(old) { ini.name = new; addInitializer(ini) }
    }

    /// Redirects every consumer of `old` (and graph outputs) to read `new` instead.
    public mutating func replaceUses(of old: String, with new: String) {
        for i in nodes.indices { nodes[i].inputs = nodes[i].inputs.map { $0 == old ? new : $0 } }
        for i in outputs.indices where outputs[i].name == old { outputs[i].name = new }
    }

    /// Throws at the first node that reads a value no earlier node, graph input or initializer
    /// provides. Subgraphs may read outer values, so `outer` names values visible from outside.
    public func checkTopologicalOrder(outer: Set<String> = []) throws {
        var known = outer.union(inputs.map(\.name)).union(initializers.map(\.name)).union(sparseInitializerNames)
        known.insert("")
        for n in nodes {
            for i in n.inputs where !known.contains(i) { throw GraphError.notTopological(node: n.label, input: i) }
            known.formUnion(n.outputs)
        }
    }

    /// Reorders nodes topologically (stable: keeps the current order where it is valid).
    public mutating func sortTopologically(outer: Set<String> = []) throws {
        var known = outer.union(inputs.map(\.name)).union(initializers.map(\.name)).union(sparseInitializerNames)
        known.insert("")
        var pending = nodes
        var sorted: [Node] = []
        sorted.reserveCapacity(nodes.count)
        while !pending.isEmpty {
            var progressed = false
            var rest: [Node] = []
            for n in pending {
                if n.inputs.allSatisfy(known.contains) {
                    sorted.append(n); known.formUnion(n.outputs); progressed = true
                } else {
                    rest.append(n)
                }
            }
            if !progressed {
                let n = rest[0]
                throw GraphError.notTopological(node: n.label, input: n.inputs.first { !known.contains($0) } ?? "?")
            }
            pending = rest
        }
        nodes = sorted
    }

    /// Keeps only the entries `keep` (in that order) of initializer `name` along `axis` — the
    /// surgery structured pruning does on weights, biases and BN parameters.
    public mutating func sliceInitializer(_ name: String, axis: Int, keep: [Int]) throws {
        guard let ini = initializer(named: name) else { throw GraphError.noSuchValue(name) }
        try replaceInitializer(name, with: ini.tensor.selecting(keep, alongAxis: axis))
    }
}
