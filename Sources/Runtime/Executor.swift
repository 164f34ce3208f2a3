import Foundation
import ModelIR
import Passes
import TensorCore

#if os(Linux)
/// glibc's `mallopt` (malloc.h is not part of the Glibc module map).
@_silgen_name("mallopt") private func glibcMallopt(_ param: Int32, _ value: Int32) -> Int32
#endif

/// Observes tensors during a run, by value name, without editing the graph (calibration,
/// sensitivity sweeps, feature distillation).
///
/// Hooks see the plan that runs: any value of the optimized graph (`Executor.optimizedGraph`),
/// graph inputs and initializers included. A value the passes removed (a Conv output folded into
/// its BatchNormalization, an activation input fused away) cannot be observed; `Executor.run`
/// refuses such names, saying where each went. To observe those, plan without passes
/// (`Executor(model:passes: .none)`).
public struct ExecutionHooks {
    /// Names to observe; nil observes every graph input and every value a step produces.
    public var names: Set<String>?
    public var observe: (String, Tensor) -> Void
    public init(names: Set<String>? = nil, observe: @escaping (String, Tensor) -> Void) {
        self.names = names
        self.observe = observe
    }
}

/// Runs a model's graph on the CPU.
///
/// The plan is made once: the graph (a copy; the model is untouched) is rewritten by a
/// `PassPipeline` (by default Constant lifting, Identity removal, BN folding, Pad folding and
/// activation fusion by dataflow), every operator is looked up (an unsupported one fails before
/// anything runs, naming op, opset and node), and each intermediate tensor is released after its
/// last reader. The plan is one step per node of the optimized graph.
public final class Executor {
    public let model: Model
    public let registry: OpRegistry

    /// One step of the plan. Values live in numbered slots of the run's environment (numbered
    /// once, when planning), so a run indexes an array instead of hashing names.
    /// A class, not a struct: a run walks the plan every time, and copying a struct step (and
    /// its context) retained each of its dozen references per step.
    final class Step {
        let node: Node
        let impl: OpImplementation
        let opset: Int
        let fused: FusedActivation?
        /// The context handed to the kernel (made once; a run adds `runSubgraph` only for steps
        /// whose node has subgraph attributes).
        let context: KernelContext
        /// Slot of each input (-1: omitted optional input) and output (-1: unnamed output).
        var inputSlots: [Int] = []
        var outputSlots: [Int] = []
        /// Whether the node has subgraphs (If/Loop/Scan bodies), which read outer values by name.
        let hasSubgraphs: Bool
        /// Slots of the values whose last reader is this step (or, never read, that it produced).
        var release: [Int] = []

        init(node: Node, impl: OpImplementation, opset: Int, fused: FusedActivation?, context: KernelContext, hasSubgraphs: Bool) {
            self.node = node
            self.impl = impl
            self.opset = opset
            self.fused = fused
            self.context = context
            self.hasSubgraphs = hasSubgraphs
        }
    }

    /// One step of the plan, for inspection: the node it runs and the activation fused into it.
    public struct PlanStep: Equatable, CustomStringConvertible {
        public let name: String
        public let opType: String
        public let inputs: [String]
        public let outputs: [String]
        public let fusedActivation: FusedActivation?
        public var description: String {
            "\(opType)\(fusedActivation.map { "+\($0)" } ?? "")(\(inputs.joined(separator: ", "))) -> \(outputs.joined(separator: ", "))"
        }
    }

    private var plan: [Step] = []
    private let packWeights: Bool
    /// The slot of every value the plan names (graph inputs, initializers, step outputs).
    private var slotOf: [String: Int] = [:]
    /// The environment a run starts from: initializers in their slots, every other slot empty.
    private var initialEnvironment: [Tensor?] = []
    /// Graph inputs the caller feeds (not initializers), with their slots.
    private var runtimeInputSlots: [(info: ValueInfo, slot: Int)] = []
    /// Graph outputs with their slots.
    private var outputSlots: [(name: String, slot: Int)] = []
    /// The graph the plan runs: the model's graph rewritten by the passes.
    public private(set) var optimizedGraph: Graph
    /// Values of the model's graph the passes removed, with where each went.
    public private(set) var removedValues: [String: String] = [:]
    /// Values a hook may observe: graph inputs, initializers and step outputs of the plan.
    private var observable: Set<String> = []
    /// The names a feed may have: the model's graph inputs (before the passes).
    private var modelInputNames: Set<String> = []

    /// The steps of the plan, in the order they run.
    public var steps: [PlanStep] {
        plan.map { PlanStep(name: $0.node.name, opType: $0.node.opType, inputs: $0.node.inputs, outputs: $0.node.outputs, fusedActivation: $0.fused) }
    }

    /// Plans `model`.
    /// - Parameter passes: the rewrites applied to a copy of the graph before planning
    ///   (`PassPipeline.none` runs the graph as written).
    /// - Parameter packWeights: let kernels keep repacked constant weights for later runs; pass
    ///   false when the plan runs only once or twice (see `KernelContext.packWeights`).
    /// - Throws: `RuntimeError.unsupported` for the first operator the registry lacks.
    public init(model: Model, registry: OpRegistry = .standard, passes: PassPipeline = .executorDefault,
                packWeights: Bool = true) throws {
        self.model = model
        self.packWeights = packWeights
        self.registry = registry
        optimizedGraph = model.graph
        modelInputNames = Set(model.graph.inputs.map(\.name))
        try Executor.checkSupported(model.graph, model: model, registry: registry)
        Executor.reserveAllocatorMemory()
        removedValues = try passes.run(on: &optimizedGraph).removedValues
        plan = try makePlan(optimizedGraph)
        observable = Set(optimizedGraph.inputs.map(\.name)).union(optimizedGraph.initializers.map(\.name))
        for n in optimizedGraph.nodes { observable.formUnion(n.outputs.filter { !$0.isEmpty }) }
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

    /// One step per node; the activation `ActivationFusion` recorded on a node is handed to its
    /// kernel. Each value is released after its last reader (graph outputs and initializers are kept).
    private func makePlan(_ g: Graph) throws -> [Step] {
        var slots: [String: Int] = [:]
        func slot(_ name: String) -> Int {
            if let s = slots[name] { return s }
            slots[name] = slots.count
            return slots.count - 1
        }
        for i in g.initializers { _ = slot(i.name) }
        for v in g.inputs { _ = slot(v.name) }
        var steps: [Step] = []
        steps.reserveCapacity(g.nodes.count)
        for n in g.nodes {
            let opset = model.opset(for: n.domain) ?? 0
            guard let impl = registry.implementation(n.opType, domain: n.domain, opset: opset) else {
                throw RuntimeError.unsupported(op: n.opType, domain: n.domain, opset: opset, node: n.label)
            }
            let fused = n.fusedActivation.map(FusedActivation.init)
            let hasSubgraphs = n.attributes.contains { a in
                switch a.value { case .graph, .graphs: return true; default: return false }
            }
            var context = KernelContext(node: n, opset: opset, fusedActivation: fused)
            context.packWeights = packWeights
            context.constantInputs = Set(n.inputs.indices.filter { !n.inputs[$0].isEmpty && g.isInitializer(n.inputs[$0]) })
            context.memo = KernelMemo()
            let step = Step(node: n, impl: impl, opset: opset, fused: fused, context: context, hasSubgraphs: hasSubgraphs)
            step.inputSlots = n.inputs.map { $0.isEmpty ? -1 : slot($0) }
            step.outputSlots = n.outputs.map { $0.isEmpty ? -1 : slot($0) }
            steps.append(step)
        }
        let index = UseDefIndex(g)
        for (i, n) in g.nodes.enumerated() {
            for o in n.outputs where !o.isEmpty && !index.isGraphOutput(o) {
                let last = index.readers(of: o).last?.node ?? i
                steps[max(last, i)].release.append(slots[o]!)
            }
        }
        for o in g.outputs { _ = slot(o.name) }
        var initial = [Tensor?](repeating: nil, count: slots.count)
        for i in g.initializers { initial[slots[i.name]!] = i.tensor }
        initialEnvironment = initial
        slotOf = slots
        runtimeInputSlots = g.runtimeInputs.map { ($0, slots[$0.name]!) }
        outputSlots = g.outputs.map { ($0.name, slots[$0.name]!) }
        return steps
    }

    /// An executor whose hooks can see every value in `names`: with the shared plan-time passes
    /// (fusion, folding) when every name survives them; else `PassPipeline.executorObservable`
    /// (squeeze-and-excitation products and Conv outputs before a residual Add are what a
    /// quantizer quantizes and a distiller may compare); else one without passes.
    public static func observing(_ model: Model, names: some Collection<String>, registry: OpRegistry = .standard) throws -> Executor {
        let fast = try Executor(model: model, registry: registry)
        guard names.contains(where: { fast.removedValues[$0] != nil }) else { return fast }
        let middle = try Executor(model: model, registry: registry, passes: .executorObservable)
        guard names.contains(where: { middle.removedValues[$0] != nil }) else { return middle }
        return try Executor(model: model, registry: registry, passes: .none)
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

    /// Runs the graph on `feeds` (one tensor per runtime input, by name).
    /// - Returns: the graph outputs by name.
    /// - Throws: `RuntimeError` naming the input or node that failed.
    /// - Parameter stepDone: called after each step of the plan with the node it ran (for a
    ///   fused Conv/Gemm + activation, the producer), so a profiler can time the plan as it runs.
    /// - Throws: also when `hooks` name a value the plan does not compute (removed by a pass, or
    ///   no value of the graph), listing each with where it went.
    public func run(_ feeds: [String: Tensor], hooks: ExecutionHooks? = nil, stepDone: ((Node) -> Void)? = nil) throws -> [String: Tensor] {
        if let names = hooks?.names { try checkObservable(names) }
        let g = optimizedGraph
        var env = initialEnvironment
        // A feed for a name the model has no input of would otherwise be dropped silently
        // (and the caller believe it was used).
        if let unknown = feeds.keys.filter({ !modelInputNames.contains($0) }).sorted().first {
            let all = model.graph.inputs.map { "'\($0.name)'" }.joined(separator: ", ")
            throw RuntimeError.badInput("a value was given for '\(unknown)', which is not an input of the model (its inputs: \(all.isEmpty ? "none" : all))")
        }
        for (v, slot) in runtimeInputSlots {
            guard let t = feeds[v.name] else { throw RuntimeError.missingInput(v.name) }
            try Executor.checkFeed(t, against: v)
            env[slot] = t
        }
        if let h = hooks {
            // Graph inputs (without names: the fed ones), then initializers asked for by name.
            let listed = Set(g.inputs.map(\.name))
            for v in g.inputs where h.names?.contains(v.name) ?? !g.isInitializer(v.name) { if let t = env[slotOf[v.name]!] { h.observe(v.name, t) } }
            if let names = h.names {
                for i in g.initializers where names.contains(i.name) && !listed.contains(i.name) { h.observe(i.name, i.tensor) }
            }
        }
        var inputs: [Tensor?] = []
        for step in plan {
            inputs.removeAll(keepingCapacity: true)
            for (k, slot) in step.inputSlots.enumerated() {
                guard slot >= 0 else { inputs.append(nil); continue }
                guard let t = env[slot] else {
                    throw RuntimeError.node(step.node.label, step.node.opType, "input '\(step.node.inputs[k])' has no value (graph not in topological order?)")
                }
                inputs.append(t)
            }
            let outs: [Tensor]
            do {
                if step.hasSubgraphs {
                    // Bodies read outer values by name: hand them the environment as it is now.
                    var ctx = step.context
                    let outer = namedEnvironment(env)
                    ctx.runSubgraph = { [unowned self] sub, bound in try self.runSubgraph(sub, bound: bound, outer: outer) }
                    outs = try step.impl.kernel(inputs, ctx)
                } else {
                    outs = try step.impl.kernel(inputs, step.context)
                }
            } catch let e as RuntimeError { throw e } catch {
                throw RuntimeError.node(step.node.label, step.node.opType, "\(error)")
            }
            for (k, slot) in step.outputSlots.enumerated() where slot >= 0 && k < outs.count {
                env[slot] = outs[k]
                if let h = hooks { let name = step.node.outputs[k]; if h.names?.contains(name) ?? true { h.observe(name, outs[k]) } }
            }
            for slot in step.release { env[slot] = nil }
            stepDone?(step.node)
        }
        var result: [String: Tensor] = [:]
        for (name, slot) in outputSlots {
            guard let t = env[slot] else { throw RuntimeError.badInput("graph output '\(name)' was not produced") }
            result[name] = t
        }
        return result
    }

    /// The values a run holds now, by name (what subgraph bodies see of the outer scope).
    private func namedEnvironment(_ env: [Tensor?]) -> [String: Tensor] {
        var named: [String: Tensor] = [:]
        named.reserveCapacity(slotOf.count)
        for (name, slot) in slotOf { if let t = env[slot] { named[name] = t } }
        return named
    }

    /// Throws when a hook asks for values the plan does not compute, naming where each went.
    func checkObservable(_ names: Set<String>) throws {
        let missing = names.subtracting(observable).sorted()
        guard !missing.isEmpty else { return }
        let what = missing.map { name in "'\(name)' (\(removedValues[name] ?? "no value of the graph has this name"))" }
        throw RuntimeError.badInput("hooks ask for values the optimized plan does not compute: " + what.joined(separator: "; ")
            + ". Plan without passes (Executor(model:passes: .none)) to observe values the passes remove.")
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
