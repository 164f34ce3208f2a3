import Foundation
import ModelIR
import TensorCore

#if os(Linux)
/// glibc's `mallopt` (malloc.h is not part of the Glibc module map).
@_silgen_name("mallopt") private func glibcMallopt(_ param: Int32, _ value: Int32) -> Int32
#endif

/// Observes intermediate tensors during a run, by value name, without editing the graph
/// (calibration, sensitivity sweeps, feature distillation).
public struct ExecutionHooks {
    /// Names to observe; nil observes every value a node produces.
    public var names: Set<String>?
    public var observe: (String, Tensor) -> Void
    public init(names: Set<String>? = nil, observe: @escaping (String, Tensor) -> Void) {
        self.names = names
        self.observe = observe
    }
}

/// Runs a model's graph on the CPU.
///
/// The plan is made once: every operator is looked up (an unsupported one fails before anything
/// runs, naming op, opset and node), each intermediate tensor is released after its last
/// consumer, and an activation that is the only consumer of a Conv/Gemm output is fused into it.
public final class Executor {
    public let model: Model
    public let registry: OpRegistry

    struct Step {
        let node: Node
        let impl: OpImplementation
        let opset: Int
        var fused: FusedActivation?
        /// The node whose output this step also produces (the fused activation's output name).
        var outputs: [String]
        /// Values whose last reader is this step.
        var release: [String] = []
    }

    private var fusedPlan: [Step] = []
    private var plainPlan: [Step] = []
    /// The graph the fused plan runs: BatchNormalization folded into the Conv before it.
    public private(set) var optimizedGraph: Graph
    /// Values the optimized plan never materializes (fused or folded away).
    private var fusedAway: Set<String> = []

    /// Producers whose kernels honour `KernelContext.fusedActivation`.
    public static let fusableProducers: Set<String> = ["Conv", "Gemm"]

    public init(model: Model, registry: OpRegistry = .standard, fuseActivations: Bool = true) throws {
        self.model = model
        self.registry = registry
        optimizedGraph = model.graph
        try Executor.checkSupported(model.graph, model: model, registry: registry)
        Executor.reserveAllocatorMemory()
        plainPlan = try makePlan(model.graph, fuse: false)
        if fuseActivations {
            fusedAway = ConvBatchNormFolding.fold(&optimizedGraph)
            fusedPlan = try makePlan(optimizedGraph, fuse: true)
        } else {
            fusedPlan = plainPlan
        }
    }

    /// Fails on the first node (in subgraphs too) whose operator the registry lacks.
    static func checkSupported(_ graph: Graph, model: Model, registry: OpRegistry) throws {
        for n in graph.nodes {
            let opset = model.opset(for: n.domain) ?? 0
            guard registry.implementation(n.opType, domain: n.domain, opset: opset) != nil else {
                throw RuntimeError.unsupported(op: n.opType, domain: n.domain, opset: opset, node: n.label)
            }
            for a in n.attributes {
                if case .graph(let g) = a.value { try checkSupported(g, model: model, registry: registry) }
                if case .graphs(let gs) = a.value { for g in gs { try checkSupported(g, model: model, registry: registry) } }
            }
        }
    }

    private func makePlan(_ g: Graph, fuse: Bool) throws -> [Step] {
        var steps: [Step] = []
        let index = UseDefIndex(g)
        let graphOutputs = index.graphOutputs
        var skip = Set<Int>()
        for (idx, n) in g.nodes.enumerated() where !skip.contains(idx) {
            let opset = model.opset(for: n.domain) ?? 0
            let impl = registry.implementation(n.opType, domain: n.domain, opset: opset)!
            var step = Step(node: n, impl: impl, opset: opset, fused: nil, outputs: n.outputs)
            if fuse, n.isDefaultDomain, Executor.fusableProducers.contains(n.opType), n.outputs.count == 1,
               let out = n.outputs.first, index.readCount(of: out) == 1, !graphOutputs.contains(out),
               idx + 1 < g.nodes.count {
                // Only the immediately following node(s), so the order stays topological.
                let next = g.nodes[idx + 1]
                if next.inputs.first == out, let act = Executor.activation(next, graph: g) {
                    step.fused = act
                    step.outputs = next.outputs
                    skip.insert(idx + 1)
                    fusedAway.insert(out)
                }
            } else if fuse, n.isDefaultDomain, n.opType == "Conv", n.outputs.count == 1,
                      let out = n.outputs.first, index.readCount(of: out) == 2, !graphOutputs.contains(out), idx + 2 < g.nodes.count,
                      let mul = Executor.siluTail(after: out, sigmoid: g.nodes[idx + 1], mul: g.nodes[idx + 2]),
                      index.readCount(of: g.nodes[idx + 1].outputs[0]) == 1, !graphOutputs.contains(g.nodes[idx + 1].outputs[0]) {
                // Conv → Sigmoid → Mul(conv, sigmoid): SiLU / Swish, one pass in the Conv's store.
                step.fused = .silu
                step.outputs = mul.outputs
                skip.formUnion([idx + 1, idx + 2])
                fusedAway.formUnion([out, g.nodes[idx + 1].outputs[0]])
            }
            steps.append(step)
        }
        // Release each value after its last reader (graph outputs are kept).
        var lastUse: [String: Int] = [:]
        for (i, s) in steps.enumerated() {
            for name in s.node.inputs where !name.isEmpty { lastUse[name] = i }
            for name in s.node.subgraphReads() { lastUse[name] = i }
            if s.fused != nil { for name in s.outputs { lastUse[name] = max(lastUse[name] ?? i, i) } }
        }
        for (name, i) in lastUse where !graphOutputs.contains(name) && !g.isInitializer(name) { steps[i].release.append(name) }
        return steps
    }

    /// Raises glibc's mmap and trim thresholds once per process, so the large activation buffers
    /// a run allocates and frees are recycled from the heap instead of being mapped from the OS
    /// (and page-faulted in) again on every run. Measured on MobileNetV2: 31 -> ~20 ms.
    static let reserveOnce: Void = {
        #if os(Linux)
        _ = glibcMallopt(-3, 256 << 20)  // M_MMAP_THRESHOLD (malloc.h)
        _ = glibcMallopt(-1, 512 << 20)  // M_TRIM_THRESHOLD
        #endif
    }()
    static func reserveAllocatorMemory() { _ = reserveOnce }

    /// The activation `node` applies, when it is one a producer can fuse.
    static func activation(_ node: Node, graph: Graph) -> FusedActivation? {
        guard node.isDefaultDomain, node.inputs.count >= 1 else { return nil }
        switch node.opType {
        case "Relu": return .relu
        case "LeakyRelu": return .leakyRelu(alpha: node.float("alpha") ?? 0.01)
        case "Sigmoid": return .sigmoid
        case "Clip":
            if node.inputs.count == 1 {
                return .clip(min: node.float("min") ?? -Float.greatestFiniteMagnitude, max: node.float("max") ?? Float.greatestFiniteMagnitude)
            }
            func bound(_ i: Int, _ dflt: Float) -> Float? {
                guard i < node.inputs.count, !node.inputs[i].isEmpty else { return dflt }
                guard let t = graph.initializer(named: node.inputs[i])?.tensor, t.count == 1, t.dtype == .float32 else { return nil }
                return t.scalars(as: Float.self)[0]
            }
            guard let lo = bound(1, -Float.greatestFiniteMagnitude), let hi = bound(2, Float.greatestFiniteMagnitude) else { return nil }
            return .clip(min: lo, max: hi)
        default: return nil
        }
    }

    /// The Mul node when `sigmoid` is a Sigmoid of `value` and `mul` multiplies `value` by its
    /// output (either order): the SiLU pattern exporters write.
    static func siluTail(after value: String, sigmoid: Node, mul: Node) -> Node? {
        guard sigmoid.isDefaultDomain, sigmoid.opType == "Sigmoid", sigmoid.inputs == [value], sigmoid.outputs.count == 1,
              mul.isDefaultDomain, mul.opType == "Mul", mul.inputs.count == 2, mul.outputs.count == 1 else { return nil }
        let s = sigmoid.outputs[0]
        return Set(mul.inputs) == Set([value, s]) && value != s ? mul : nil
    }

    /// Runs the graph on `feeds` (one tensor per runtime input, by name).
    /// - Returns: the graph outputs by name.
    /// - Throws: `RuntimeError` naming the input or node that failed.
    /// - Parameter stepDone: called after each step of the plan with the node it ran (for a
    ///   fused Conv/Gemm + activation, the producer), so a profiler can time the plan as it runs.
    public func run(_ feeds: [String: Tensor], hooks: ExecutionHooks? = nil, stepDone: ((Node) -> Void)? = nil) throws -> [String: Tensor] {
        let useFused = hooks.map { h in h.names.map { $0.isDisjoint(with: fusedAway) } ?? false } ?? true
        let g = useFused ? optimizedGraph : model.graph
        var env: [String: Tensor] = [:]
        env.reserveCapacity(g.nodes.count * 2)
        for i in g.initializers { env[i.name] = i.tensor }
        for v in g.runtimeInputs {
            guard let t = feeds[v.name] else { throw RuntimeError.missingInput(v.name) }
            try Executor.checkFeed(t, against: v)
            env[v.name] = t
        }
        let plan = useFused ? fusedPlan : plainPlan
        for step in plan {
            let inputs: [Tensor?] = step.node.inputs.map { $0.isEmpty ? nil : env[$0] }
            for (k, name) in step.node.inputs.enumerated() where !name.isEmpty && inputs[k] == nil {
                throw RuntimeError.node(step.node.label, step.node.opType, "input '\(name)' has no value (graph not in topological order?)")
            }
            let ctx = KernelContext(node: step.node, opset: step.opset, fusedActivation: step.fused,
                                    runSubgraph: { [unowned self] sub, bound in try self.runSubgraph(sub, bound: bound, outer: env) })
            let outs: [Tensor]
            do { outs = try step.impl.kernel(inputs, ctx) } catch let e as RuntimeError { throw e } catch {
                throw RuntimeError.node(step.node.label, step.node.opType, "\(error)")
            }
            for (k, name) in step.outputs.enumerated() where !name.isEmpty && k < outs.count {
                env[name] = outs[k]
                if let h = hooks, h.names?.contains(name) ?? true { h.observe(name, outs[k]) }
            }
            for name in step.release { env[name] = nil }
            stepDone?(step.node)
        }
        var result: [String: Tensor] = [:]
        for o in g.outputs {
            guard let t = env[o.name] else { throw RuntimeError.badInput("graph output '\(o.name)' was not produced") }
            result[o.name] = t
        }
        return result
    }

    /// Runs a subgraph with `bound` inputs; values it does not define come from `outer`.
    func runSubgraph(_ g: Graph, bound: [String: Tensor], outer: [String: Tensor]) throws -> [Tensor] {
        var env = outer
        for i in g.initializers { env[i.name] = i.tensor }
        for (k, v) in bound { env[k] = v }
        for n in g.nodes {
            let opset = model.opset(for: n.domain) ?? 0
            guard let impl = registry.implementation(n.opType, domain: n.domain, opset: opset) else {
                throw RuntimeError.unsupported(op: n.opType, domain: n.domain, opset: opset, node: n.label)
            }
            let inputs: [Tensor?] = n.inputs.map { $0.isEmpty ? nil : env[$0] }
            let snapshot = env
            let ctx = KernelContext(node: n, opset: opset, runSubgraph: { [unowned self] sub, b in try self.runSubgraph(sub, bound: b, outer: snapshot) })
            let outs = try impl.kernel(inputs, ctx)
            for (k, name) in n.outputs.enumerated() where !name.isEmpty && k < outs.count { env[name] = outs[k] }
        }
        return try g.outputs.map { o in
            guard let t = env[o.name] else { throw RuntimeError.badInput("subgraph output '\(o.name)' was not produced") }
            return t
        }
    }

    /// Checks a fed tensor against the declared input type (dtype, rank, fixed dims).
    static func checkFeed(_ t: Tensor, against v: ValueInfo) throws {
        guard let type = v.type else { return }
        if let d = type.elementType, d != t.dtype {
            throw RuntimeError.badInput("input '\(v.name)': the model expects \(d) data, got \(t.dtype)")
        }
        if let s = type.shape {
            let ok = s.count == t.rank && zip(s, t.shape).allSatisfy { d, n in d.value.map { $0 == n } ?? true }
            if !ok {
                throw RuntimeError.badInput("input '\(v.name)': the model expects shape \(type.shapeDescription), got \(t.shape)")
            }
        }
    }
}
