import Foundation

/// Structural checks every model passes before any command works on it (`ModelReader.read`
/// runs them): each value has one definition (graph input, initializer or one node output),
/// every value a node reads is defined before the node (which also rules out cycles), every
/// graph output is defined, and the same holds inside If/Loop/Scan bodies, which may also read
/// the values defined before their node in the enclosing graphs.
///
/// ONNX requires all of this (onnx.proto: "the graph MUST be in single static assignment form",
/// nodes "MUST be topologically sorted"; `onnx.checker` refuses the same); a model that breaks
/// it was otherwise profiled, or run with a feed for a name no graph input has, as if it were
/// valid. Each message names the node (and the body it is in) and the value.
extension Graph {
    /// Throws a `ModelError` for `path` describing the first problem found.
    /// - Parameter outer: names defined by enclosing graphs (for a body; empty for the main graph).
    public func validate(path: String, outer: Set<String> = []) throws {
        if let why = validationProblem(outer: outer) { throw ModelError(path, why) }
    }

    /// The first structural problem, as a message without the file name; nil when there is none.
    public func validationProblem(outer: Set<String> = []) -> String? {
        func describe(_ n: Node) -> String {
            n.name.isEmpty ? "node \(n.opType) (unnamed, writing '\(n.outputs.first ?? "")')" : "node '\(n.name)' (\(n.opType))"
        }
        // Where each name is defined in this graph: a graph input, an initializer, or a node.
        enum Definition { case input, initializer, node(Int) }
        var definitions: [String: Definition] = [:]
        var inputNames = Set<String>()
        for v in inputs {
            guard inputNames.insert(v.name).inserted else { return "graph input '\(v.name)' is listed twice" }
            definitions[v.name] = .input
        }
        // An initializer may also be listed as a graph input (its default value, IR < 4 style).
        for i in initializers where definitions[i.name] == nil { definitions[i.name] = .initializer }
        for s in sparseInitializerNames where definitions[s] == nil { definitions[s] = .initializer }
        for (k, n) in nodes.enumerated() {
            var own = Set<String>()
            for o in n.outputs where !o.isEmpty {
                guard own.insert(o).inserted else { return "\(describe(n)) writes '\(o)' twice" }
                switch definitions[o] {
                case nil: definitions[o] = .node(k)
                case .input?: return "\(describe(n)) writes '\(o)', which is also a graph input (each value has one definition)"
                case .initializer?: return "\(describe(n)) writes '\(o)', which is also an initializer (each value has one definition)"
                case .node(let j)?: return "\(describe(n)) writes '\(o)', which \(describe(nodes[j])) also writes (each value has one definition)"
                }
            }
        }
        // Reads: defined before the node (in this graph or an enclosing one).
        var known = outer.union(inputNames).union(initializers.map(\.name)).union(sparseInitializerNames)
        known.insert("")
        for (k, n) in nodes.enumerated() {
            var reads = n.inputs
            if n.hasSubgraphs { reads += n.subgraphReads().sorted() }
            for i in reads where !known.contains(i) {
                guard case .node(let j)? = definitions[i] else {
                    return "\(describe(n)) reads '\(i)', which no node produces and which is not a graph input or an initializer"
                }
                if j == k { return "\(describe(n)) reads its own output '\(i)' (a cycle)" }
                if dependsOn(node: j, value: n.outputs, definitions: definitions.compactMapValues { if case .node(let x) = $0 { return x }; return nil }) {
                    return "\(describe(n)) reads '\(i)', written by \(describe(nodes[j])), which depends on \(describe(n))'s own outputs: the graph has a cycle"
                }
                return "\(describe(n)) reads '\(i)' before \(describe(nodes[j])) writes it: the nodes are not in topological order, as ONNX requires"
            }
            if n.hasSubgraphs {
                for a in n.attributes {
                    let bodies: [Graph]
                    switch a.value {
                    case .graph(let g): bodies = [g]
                    case .graphs(let gs): bodies = gs
                    default: bodies = []
                    }
                    for b in bodies {
                        if let why = b.validationProblem(outer: known) {
                            return "in body '\(a.name)' of \(describe(n)): \(why)"
                        }
                    }
                }
            }
            known.formUnion(n.outputs)
        }
        var outputNames = Set<String>()
        for o in outputs {
            guard outputNames.insert(o.name).inserted else { return "graph output '\(o.name)' is listed twice" }
            guard !o.name.isEmpty, known.contains(o.name) else {
                return "graph output '\(o.name)' is not produced by any node and is not a graph input or an initializer"
            }
        }
        return nil
    }

    /// Whether node `start` (transitively, through the values it reads) depends on any of `values`.
    private func dependsOn(node start: Int, value values: [String], definitions: [String: Int]) -> Bool {
        let targets = Set(values.filter { !$0.isEmpty })
        var seen: Set<Int> = [start]
        var stack = [start]
        while let k = stack.popLast() {
            let n = nodes[k]
            var reads = n.inputs
            if n.hasSubgraphs { reads += n.subgraphReads() }
            for r in reads {
                if targets.contains(r) { return true }
                if let j = definitions[r], seen.insert(j).inserted { stack.append(j) }
            }
        }
        return false
    }
}
