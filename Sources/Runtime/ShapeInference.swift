import ModelIR
import TensorCore

/// Concrete output types for every node of a graph, computed without running the model.
///
/// Runs the operator registry in shape-only mode (each op's `ShapeFunction`). Values that are
/// small and fully constant — Shape → Gather → Concat → Reshape chains, Range, ConstantOfShape,
/// Constant nodes — are evaluated with the real kernels (constant folding), so exports with shape
/// arithmetic get concrete shapes. Weight payloads are never read: only initializers no larger
/// than `foldLimit` elements take part in folding.
public struct ShapeInference {
    /// Types of every value that could be inferred (inputs, initializers, node outputs).
    public var types: [String: TensorInfo] = [:]
    /// Contents of the values known ahead of time (small initializers, folded constants).
    public var values: [String: Tensor] = [:]
    /// Nodes whose output types could not be inferred, with the reason; empty in strict mode.
    public var unresolved: [(node: String, reason: String)] = []

    /// Largest tensor (elements) constant folding reads or produces.
    public static let foldLimit = 1 << 16

    /// Infers types for `model` with its inputs resolved from `pins` (see `InputShapes`).
    /// - Parameter strict: throw on the first node that cannot be inferred (executor, prune);
    ///   otherwise record it in `unresolved` and go on (profile).
    public init(model: Model, pins: [String: [Int]] = [:], registry: OpRegistry = .standard, strict: Bool = true) throws {
        let g = model.graph
        for (name, info) in try InputShapes.resolve(graph: g, pins: pins) { types[name] = info }
        for i in g.initializers {
            types[i.name] = TensorInfo(i.tensor)
            if i.tensor.count <= Self.foldLimit && i.tensor.dtype != .string { values[i.name] = i.tensor }
        }
        try infer(graph: g, model: model, registry: registry, strict: strict)
    }

    /// `model` with the inferred type of every intermediate value written into its value_info
    /// (`Graph.recordTypes`), and graph outputs that declare no shape given one.
    /// - Throws: as `init(model:pins:registry:strict:)`; with `strict: false` values that could
    ///   not be inferred are simply left without an entry.
    public static func annotate(model: Model, pins: [String: [Int]] = [:], registry: OpRegistry = .standard,
                                strict: Bool = false) throws -> Model {
        let inference = try ShapeInference(model: model, pins: pins, registry: registry, strict: strict)
        var m = model
        m.graph.recordTypes(inference.types.mapValues { ($0.dtype, $0.shape) })
        return m
    }

    /// Runs inference over `graph`'s nodes with the current `types`/`values` as the outer scope.
    mutating func infer(graph g: Graph, model: Model, registry: OpRegistry, strict: Bool) throws {
        let declared = Dictionary((g.valueInfo + g.outputs).compactMap { v -> (String, TensorInfo)? in
            guard let t = v.type, let d = t.elementType, let s = t.fixedShape, TensorInfo(d, s).isAddressable else { return nil }
            return (v.name, TensorInfo(d, s))
        }, uniquingKeysWith: { a, _ in a })
        for n in g.nodes {
            let opset = model.opset(for: n.domain) ?? 0
            let ctx = KernelContext(node: n, opset: opset)
            let inTypes: [TensorInfo?] = n.inputs.map { $0.isEmpty ? nil : types[$0] }
            let missing = zip(n.inputs, inTypes).filter { !$0.0.isEmpty && $0.1 == nil }.map(\.0)
            func fail(_ reason: String) throws {
                if strict { throw RuntimeError.node(n.label, n.opType, reason) }
                unresolved.append((n.label, reason))
                // Fall back on types the model itself declares for the outputs.
                for o in n.outputs { if let d = declared[o] { types[o] = d } }
            }
            guard missing.isEmpty else {
                try fail("type of input '\(missing[0])' is unknown")
                continue
            }
            guard let impl = registry.implementation(n.opType, domain: n.domain, opset: opset) else {
                try fail(RuntimeError.unsupported(op: n.opType, domain: n.domain, opset: opset, node: n.label).description)
                continue
            }
            // Shape and Size depend only on their input's type, so their value is known here even
            // when the input's contents are not (this starts Shape -> Gather -> Concat -> Reshape chains).
            if let info = inTypes.first ?? nil, let v = try? StandardOps.metadataValue(n, opset: opset, input: info),
               let o = n.outputs.first, !o.isEmpty {
                types[o] = TensorInfo(v)
                values[o] = v
                continue
            }
            let inValues: [Tensor?] = n.inputs.map { $0.isEmpty ? nil : values[$0] }
            let allConstant = zip(n.inputs, inValues).allSatisfy { $0.0.isEmpty || $0.1 != nil }
            let hasSubgraph = n.attributes.contains { if case .graph = $0.value { return true }; return false }
            // Folding runs the kernel: outputs the type rules predict to be large (a constant
            // shape of 2^20 x 2^20 fed to Expand) are not computed.
            let foldable = (try? impl.infer(inTypes, inValues, ctx)).map { $0.allSatisfy { $0.isAddressable && $0.count <= Self.foldLimit } } ?? true
            if allConstant && foldable && !hasSubgraph && !Self.nonDeterministic.contains(n.opType) {
                if let outs = try? impl.kernel(inValues, ctx), outs.allSatisfy({ $0.count <= Self.foldLimit }) {
                    for (o, t) in zip(n.outputs, outs) where !o.isEmpty {
                        types[o] = TensorInfo(t)
                        values[o] = t
                    }
                    continue
                }
            }
            do {
                let outs = try impl.infer(inTypes, inValues, ctx)
                if let (o, t) = zip(n.outputs, outs).first(where: { !$0.1.isAddressable }) {
                    try fail("output '\(o)' would have shape \(t.shape): its size overflows (more than 2^50 bytes)")
                    continue
                }
                for (o, t) in zip(n.outputs, outs) where !o.isEmpty { types[o] = t }
            } catch let e as RuntimeError {
                if case .node(_, _, let msg) = e { try fail(msg) } else { try fail(e.description) }
            } catch {
                try fail("\(error)")
            }
        }
    }

    /// The value of a Shape or Size node given its input's type (nil for any other node), as
    /// inference folds it; `compress fuse`'s constant folding uses it for shape arithmetic.
    public static func metadataValue(of node: Node, opset: Int, input: TensorInfo) throws -> Tensor? {
        try StandardOps.metadataValue(node, opset: opset, input: input)
    }

    /// Ops whose output must not be folded (random generators).
    public static let nonDeterministic: Set<String> = ["RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"]
}
