import ModelIR

/// An elementwise activation a Conv/Gemm/MatMul applies to its output in the same pass.
public enum FusableActivation: Equatable, Sendable {
    case relu
    case clip(min: Float, max: Float)
    case leakyRelu(alpha: Float)
    /// max(0, min(1, α·x + β)) (ONNX HardSigmoid; α = 0.2, β = 0.5 by default).
    case hardSigmoid(alpha: Float, beta: Float)
    case hardSwish
    case sigmoid
    /// x · σ(x): a Sigmoid whose output multiplies its own input (SiLU / Swish, as exported).
    case silu
}

/// Fuses an activation into the Conv, Gemm or MatMul that feeds it, found by dataflow (the
/// activation reads the producer's output), not by position: exporters put Constant nodes and
/// unrelated branches between the two.
///
/// Before: `c = Conv(x, W, b)`, `y = Relu(c)`.
/// After: `y = Conv(x, W, b)` carrying the attribute `_compress_fused_activation = "Relu"`.
/// SiLU: `c = Conv(…)`, `s = Sigmoid(c)`, `y = Mul(c, s)` (either operand order) becomes
/// `y = Conv(…)` with `"SiLU"`; likewise `y = Mul(c, HardSigmoid(c))` with α = 1/6, β = 1/2
/// becomes `"HardSwish"`, and so does the exported `x · relu6(x + 3) / 6` (Add, Clip, Div and
/// Mul; see `hardSwishChain`); `y = Div(Clip(Add(c, 3), 0, 6), 6)`, the squeeze-and-excitation
/// gate as exported, becomes `"HardSigmoid"` with α = 1/6, β = 1/2 (`hardSigmoidChain`).
/// Activations: Relu; Clip with constant bounds (Clip-6 attributes, or Clip-11+ inputs from
/// initializers or Constant nodes; an omitted bound is ±greatest finite float); LeakyRelu (α =
/// 0.01 by default); HardSigmoid (α = 0.2, β = 0.5); HardSwish; Sigmoid; SiLU.
///
/// Why an attribute: the executor sits above this target and applies the activation in the
/// kernel's store (`KernelContext.fusedActivation`), so the fusion has to reach it through the
/// graph. Recording it on the node (name `_compress_fused_activation`, parameters in
/// `_compress_fused_activation_params`) keeps the rewritten graph self-describing — the plan is
/// one step per node, node names and order stay those of the graph — where a side table keyed
/// by node name would break on unnamed or renamed nodes. The attribute is compress-internal:
/// a graph carrying it is not standard ONNX, so this pass is in `PassPipeline.executorDefault`
/// and not in `PassPipeline.exportable`.
///
/// Does not apply when: the producer's output has any other reader (direct or inside a body) or
/// is a graph output; the activation reads it through an input other than 0; a Clip bound is not
/// a constant one-element float32; the producer already carries a fused activation; for SiLU,
/// the Sigmoid's output has a reader other than the Mul or is a graph output (likewise the
/// HardSigmoid's for HardSwish); the producer already adds a residual (`ResidualAddIntoConv`:
/// the activation would then apply before the sum); a chain's Add/Div constant has rank above 1.
public struct ActivationFusion: GraphPass {
    public let name = "ActivationFusion"
    public init() {}

    /// Producers whose kernels apply a fused activation.
    public static let producers: Set<String> = ["Conv", "Gemm", "MatMul"]
    public static let attribute = "_compress_fused_activation"
    public static let parametersAttribute = "_compress_fused_activation_params"

    public func apply(to graph: inout Graph) throws -> PassResult {
        var result = PassResult()
        let index = UseDefIndex(graph)
        var drop = Set<Int>()
        for (pi, producer) in graph.nodes.enumerated()
        where producer.isDefaultDomain && Self.producers.contains(producer.opType) && producer.outputs.count == 1 && producer.fusedActivation == nil
            && !producer.hasFusedResidual {
            let out = producer.outputs[0]
            guard !out.isEmpty, !index.isGraphOutput(out) else { continue }
            let uses = index.readers(of: out)
            var fused: (FusableActivation, outputs: [String], dropped: [Int])?
            if uses.count == 1, uses[0].slot == 0, let act = Self.activation(graph.nodes[uses[0].node], graph, index),
               graph.nodes[uses[0].node].outputs.count == 1 {
                fused = (act, graph.nodes[uses[0].node].outputs, [uses[0].node])
            } else if uses.count == 2, uses.allSatisfy({ $0.slot != nil }),
                      let si = uses.first(where: { Self.gateActivation(graph.nodes[$0.node]) != nil })?.node,
                      let mi = uses.first(where: { graph.nodes[$0.node].opType == "Mul" })?.node,
                      let act = Self.gateActivation(graph.nodes[si]) {
                let sig = graph.nodes[si], mul = graph.nodes[mi]
                if sig.isDefaultDomain, sig.inputs == [out], sig.outputs.count == 1, mul.isDefaultDomain, mul.outputs.count == 1,
                   let s = sig.outputs.first, let use = index.hasSingleDirectReader(s), use.node == mi,
                   mul.inputs.count == 2, Set(mul.inputs) == [out, s] {
                    fused = (act, mul.outputs, [si, mi])
                    result.removedValues[s] = "fused into \(producer.reportLabel) (\(act.onnxName))"
                }
            }
            if fused == nil, let (outputs, dropped, inner) = Self.hardSwishChain(out, uses, graph, index) {
                fused = (.hardSwish, outputs, dropped)
                for v in inner { result.removedValues[v] = "fused into \(producer.reportLabel) (HardSwish)" }
            }
            if fused == nil, uses.count == 1, let (outputs, dropped, inner) = Self.hardSigmoidChain(out, uses[0], graph, index) {
                fused = (Self.chainHardSigmoid, outputs, dropped)
                for v in inner { result.removedValues[v] = "fused into \(producer.reportLabel) (HardSigmoid)" }
            }
            guard let (act, outputs, dropped) = fused, dropped.allSatisfy({ !drop.contains($0) }) else { continue }
            var rewritten = producer
            rewritten.outputs = outputs
            rewritten.fusedActivation = act
            graph.nodes[pi] = rewritten
            drop.formUnion(dropped)
            result.removedValues[out] = "fused into \(producer.reportLabel) (\(act.onnxName) applied in its store)"
        }
        graph.removeNodes(at: drop)
        result.rewrites = drop.count
        return result
    }

    /// HardSwish as `x · relu6(x + 3) / 6` is exported: `a = Add(c, 3)`, `k = Clip(a, 0, 6)`, then
    /// `Mul(c, Div(k, 6))` or `Div(Mul(c, k), 6)` (operands of Add and Mul in either order,
    /// constants from initializers or Constant nodes, each intermediate read once). Returns the
    /// chain's output, its nodes and its inner values. The kernel computes x · clamp(x/6 + 1/2)
    /// instead, which may differ from the chain in the last bit or two of the product.
    static func hardSwishChain(_ c: String, _ uses: [ValueUse], _ graph: Graph, _ index: UseDefIndex)
        -> (outputs: [String], dropped: [Int], inner: [String])? {
        guard uses.count == 2, uses.allSatisfy({ $0.slot != nil }) else { return nil }
        func node(_ i: Int, _ op: String) -> Node? {
            let n = graph.nodes[i]
            return n.isDefaultDomain && n.opType == op && n.outputs.count == 1 && !n.outputs[0].isEmpty ? n : nil
        }
        // Rank at most 1: a one-element constant of higher rank would broadcast the output up.
        func constant(_ name: String, _ value: Float) -> Bool {
            ConstantValue.scalar(name, graph, index) == value && (ConstantValue.tensor(name, graph, index)?.rank ?? 2) <= 1
        }
        // The one reader of `v`, when it is an `op` node.
        func next(_ v: String, _ op: String) -> Int? {
            guard let u = index.hasSingleDirectReader(v), node(u.node, op) != nil else { return nil }
            return u.node
        }
        guard let ai = uses.first(where: { node($0.node, "Add") != nil })?.node,
              let mi0 = uses.first(where: { node($0.node, "Mul") != nil })?.node, ai != mi0 else { return nil }
        let add = graph.nodes[ai]
        guard add.inputs.count == 2, add.inputs.contains(c), constant(add.inputs[add.inputs[0] == c ? 1 : 0], 3),
              let ci = next(add.outputs[0], "Clip") else { return nil }
        let clip = graph.nodes[ci]
        guard clip.inputs.first == add.outputs[0] else { return nil }
        if clip.inputs.count == 1 {
            guard clip.float("min") == 0, clip.float("max") == 6 else { return nil }
        } else {
            guard clip.inputs.count == 3, constant(clip.inputs[1], 0), constant(clip.inputs[2], 6) else { return nil }
        }
        let k = clip.outputs[0]
        let mul = graph.nodes[mi0]
        guard mul.inputs.count == 2, mul.inputs.contains(c) else { return nil }
        if let di = next(k, "Div") {
            // Mul(c, Div(k, 6))
            let div = graph.nodes[di]
            guard div.inputs.count == 2, div.inputs[0] == k, constant(div.inputs[1], 6),
                  let use = index.hasSingleDirectReader(div.outputs[0]), use.node == mi0,
                  Set(mul.inputs) == [c, div.outputs[0]] else { return nil }
            return (mul.outputs, [ai, ci, di, mi0], [add.outputs[0], k, div.outputs[0]])
        }
        // Div(Mul(c, k), 6)
        guard let use = index.hasSingleDirectReader(k), use.node == mi0, Set(mul.inputs) == [c, k],
              let di = next(mul.outputs[0], "Div") else { return nil }
        let div = graph.nodes[di]
        guard div.inputs.count == 2, div.inputs[0] == mul.outputs[0], constant(div.inputs[1], 6) else { return nil }
        return (div.outputs, [ai, ci, mi0, di], [add.outputs[0], k, mul.outputs[0]])
    }

    /// The HardSigmoid `relu6(x + 3) / 6` is: α = 1/6, β = 1/2.
    static let chainHardSigmoid = FusableActivation.hardSigmoid(alpha: Float(1) / 6, beta: 0.5)

    /// HardSigmoid as `relu6(x + 3) / 6` is exported (the gate of MobileNetV3's squeeze-and-
    /// excitation blocks as many implementations write it): `a = Add(c, 3)`, `k = Clip(a, 0, 6)`,
    /// `Div(k, 6)`, each the single reader of the one before (Add's operands in either order,
    /// constants from initializers or Constant nodes, Clip's bounds as inputs or attributes).
    /// Returns the chain's output, its nodes and its inner values. The kernel computes
    /// clamp(x/6 + 1/2), which may differ from the chain in the last bit.
    static func hardSigmoidChain(_ c: String, _ use: ValueUse, _ graph: Graph, _ index: UseDefIndex)
        -> (outputs: [String], dropped: [Int], inner: [String])? {
        func node(_ i: Int, _ op: String) -> Node? {
            let n = graph.nodes[i]
            return n.isDefaultDomain && n.opType == op && n.outputs.count == 1 && !n.outputs[0].isEmpty ? n : nil
        }
        // Rank at most 1: a one-element constant of higher rank would broadcast the output up.
        func constant(_ name: String, _ value: Float) -> Bool {
            ConstantValue.scalar(name, graph, index) == value && (ConstantValue.tensor(name, graph, index)?.rank ?? 2) <= 1
        }
        guard use.slot != nil, let add = node(use.node, "Add"), add.inputs.count == 2, add.inputs.contains(c),
              add.inputs[0] != add.inputs[1], constant(add.inputs[add.inputs[0] == c ? 1 : 0], 3),
              let cu = index.hasSingleDirectReader(add.outputs[0]), cu.slot == 0, let clip = node(cu.node, "Clip") else { return nil }
        if clip.inputs.count == 1 {
            guard clip.float("min") == 0, clip.float("max") == 6 else { return nil }
        } else {
            guard clip.inputs.count == 3, constant(clip.inputs[1], 0), constant(clip.inputs[2], 6) else { return nil }
        }
        guard let du = index.hasSingleDirectReader(clip.outputs[0]), du.slot == 0, let div = node(du.node, "Div"),
              div.inputs.count == 2, constant(div.inputs[1], 6) else { return nil }
        return (div.outputs, [use.node, cu.node, du.node], [add.outputs[0], clip.outputs[0]])
    }

    /// The activation `x · gate(x)` is when `node` is the gate: SiLU for a Sigmoid, HardSwish for
    /// a HardSigmoid with α = 1/6 and β = 1/2 exactly (HardSwish's definition, as opset < 14
    /// exports write it; the kernel computes the same float operations, so the results are equal).
    static func gateActivation(_ node: Node) -> FusableActivation? {
        guard node.isDefaultDomain, node.inputs.count == 1 else { return nil }
        switch node.opType {
        case "Sigmoid": return .silu
        case "HardSigmoid" where node.float("alpha") == Float(1) / 6 && node.float("beta") ?? 0.5 == 0.5: return .hardSwish
        default: return nil
        }
    }

    /// The activation `node` applies, when it is one a producer can fuse.
    static func activation(_ node: Node, _ graph: Graph, _ index: UseDefIndex) -> FusableActivation? {
        guard node.isDefaultDomain, node.inputs.count >= 1 else { return nil }
        switch node.opType {
        case "Relu": return .relu
        case "LeakyRelu": return .leakyRelu(alpha: node.float("alpha") ?? 0.01)
        case "HardSigmoid": return .hardSigmoid(alpha: node.float("alpha") ?? 0.2, beta: node.float("beta") ?? 0.5)
        case "HardSwish": return .hardSwish
        case "Sigmoid": return .sigmoid
        case "Clip":
            if node.inputs.count == 1 {
                return .clip(min: node.float("min") ?? -Float.greatestFiniteMagnitude, max: node.float("max") ?? Float.greatestFiniteMagnitude)
            }
            func bound(_ i: Int, _ dflt: Float) -> Float? {
                guard i < node.inputs.count, !node.inputs[i].isEmpty else { return dflt }
                return ConstantValue.scalar(node.inputs[i], graph, index)
            }
            guard let lo = bound(1, -Float.greatestFiniteMagnitude), let hi = bound(2, Float.greatestFiniteMagnitude) else { return nil }
            return .clip(min: lo, max: hi)
        default: return nil
        }
    }
}

extension FusableActivation {
    /// The ONNX operator (or pattern) name, as stored in `_compress_fused_activation`.
    public var onnxName: String {
        switch self {
        case .relu: return "Relu"
        case .clip: return "Clip"
        case .leakyRelu: return "LeakyRelu"
        case .hardSigmoid: return "HardSigmoid"
        case .hardSwish: return "HardSwish"
        case .sigmoid: return "Sigmoid"
        case .silu: return "SiLU"
        }
    }

    var parameters: [Float] {
        switch self {
        case .clip(let lo, let hi): return [lo, hi]
        case .leakyRelu(let a): return [a]
        case .hardSigmoid(let a, let b): return [a, b]
        default: return []
        }
    }

    init?(name: String, parameters p: [Float]) {
        switch (name, p.count) {
        case ("Relu", _): self = .relu
        case ("Clip", 2): self = .clip(min: p[0], max: p[1])
        case ("LeakyRelu", 1): self = .leakyRelu(alpha: p[0])
        case ("HardSigmoid", 2): self = .hardSigmoid(alpha: p[0], beta: p[1])
        case ("HardSwish", _): self = .hardSwish
        case ("Sigmoid", _): self = .sigmoid
        case ("SiLU", _): self = .silu
        default: return nil
        }
    }
}

extension Node {
    /// The activation `ActivationFusion` recorded on this node, if any.
    public var fusedActivation: FusableActivation? {
        get {
            guard let name = string(ActivationFusion.attribute) else { return nil }
            return FusableActivation(name: name, parameters: floats(ActivationFusion.parametersAttribute) ?? [])
        }
        set {
            self[attribute: ActivationFusion.attribute] = newValue.map { .string($0.onnxName) }
            let p = newValue?.parameters ?? []
            self[attribute: ActivationFusion.parametersAttribute] = p.isEmpty ? nil : .floats(p)
        }
    }
}
