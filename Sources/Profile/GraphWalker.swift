import ModelIR
import Runtime
import TensorCore

/// A constant value as it sits in memory: an int8 weight behind a DequantizeLinear is stored
/// as int8 (plus its scales and zero points), whatever dtype the graph computes it in.
struct StoredConstant {
    var dtype: DType
    var bytes: Int
    /// Whether the value is the dequantized form of a quantized tensor.
    var quantized: Bool
}

/// What a subgraph body sees of the graphs around it.
struct OuterScope {
    var constants: Set<String> = []
    var stored: [String: StoredConstant] = [:]
    var types: [String: TensorInfo] = [:]
    var values: [String: Tensor] = [:]
}

/// Walks a graph (and its subgraph bodies) producing one `NodeProfile` per node.
struct GraphWalker {
    let model: Model
    var nodes: [NodeProfile] = []
    var warnings: [String] = []

    init(model: Model) { self.model = model }

    /// Operators that keep their input's bytes when folded (a view of a stored constant).
    static let storagePreserving: Set<String> = ["Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Transpose"]
    static let nonDeterministic: Set<String> = ["RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"]

    mutating func walk(_ g: Graph, scope: String, inference: ShapeInference, outer: OuterScope, repeats: Int) {
        let types = inference.types
        let reasons = Dictionary(inference.unresolved.map { ($0.node, $0.reason) }, uniquingKeysWith: { a, _ in a })
        var constants = outer.constants
        var stored = outer.stored
        for i in g.initializers {
            constants.insert(i.name)
            stored[i.name] = StoredConstant(dtype: i.tensor.dtype, bytes: i.tensor.byteCount, quantized: false)
        }
        let index = UseDefIndex(g)
        let graphOutputs = index.graphOutputs

        // Values written directly in quantized form: produced by a node and read only by
        // QuantizeLinear nodes, which fuse into the producer.
        var quantizedOutput: [String: DType] = [:]
        for n in g.nodes {
            for o in n.outputs where !o.isEmpty && !graphOutputs.contains(o) {
                let cs = index.readingNodes(of: o)
                guard !cs.isEmpty,
                      cs.allSatisfy({ g.nodes[$0].opType == "QuantizeLinear" && g.nodes[$0].isDefaultDomain && g.nodes[$0].inputs.first == o }),
                      n.opType != "DequantizeLinear" else { continue }
                quantizedOutput[o] = types[g.nodes[cs[0]].outputs[0]]?.dtype ?? .int8
            }
        }
        var effective: [String: DType] = [:]
        func dtype(_ v: String) -> DType? { effective[v] ?? quantizedOutput[v] ?? types[v]?.dtype }
        func bytes(_ v: String) -> Int {
            guard let t = types[v], let d = dtype(v) else { return 0 }
            return d.byteCount(elements: t.count)
        }

        for n in g.nodes {
            var row = NodeProfile(name: n.label, opType: n.opType, domain: n.domain, scope: scope)
            let firstOut = n.outputs.first.flatMap { types[$0] }
            row.outputShape = firstOut?.shape
            row.outputDType = n.outputs.first.flatMap(dtype)
            row.repeats = repeats
            let live = n.inputs.filter { !$0.isEmpty }
            let subgraphs = n.attributes.compactMap { a -> (String, Graph)? in if case .graph(let g) = a.value { return (a.name, g) }; return nil }

            // Folded at load: every input constant, or every output known by value to shape inference.
            // Shape and Size of a value whose type is known are fixed before the run.
            let outputsKnown = (!n.outputs.isEmpty && n.outputs.allSatisfy { $0.isEmpty || inference.values[$0] != nil })
                || (["Shape", "Size"].contains(n.opType) && n.inputs.first.flatMap { types[$0] } != nil)
            if n.isDefaultDomain && subgraphs.isEmpty && !Self.nonDeterministic.contains(n.opType)
                && (n.opType == "Constant" || outputsKnown || (!live.isEmpty && live.allSatisfy(constants.contains))) {
                for o in n.outputs where !o.isEmpty {
                    constants.insert(o)
                    stored[o] = storedForm(n, output: o, types: types, stored: stored)
                }
                row.status = .constant
                row.note = "constant: computed once at load"
                nodes.append(row)
                continue
            }

            // QDQ: DequantizeLinear fuses into its consumers, QuantizeLinear into its producer.
            if n.isDefaultDomain && n.opType == "DequantizeLinear", let x = n.inputs.first, let y = n.outputs.first,
               !graphOutputs.contains(y), index.isLive(y), let d = dtype(x) {
                effective[y] = d
                row.outputDType = d
                row.status = .fused
                row.note = "QDQ: fused into its consumer, which reads the \(d.name) tensor"
                nodes.append(row)
                continue
            }
            if n.isDefaultDomain && n.opType == "QuantizeLinear", let x = n.inputs.first, quantizedOutput[x] != nil {
                row.status = .fused
                row.note = "QDQ: fused into the producer of its input, which writes the \(quantizedOutput[x]!.name) tensor"
                nodes.append(row)
                continue
            }

            if n.isDefaultDomain && ["If", "Loop", "Scan"].contains(n.opType) && !subgraphs.isEmpty {
                row.status = .control
                nodes.append(row)
                let inner = OuterScope(constants: constants, stored: stored,
                                       types: outer.types.merging(types) { $1 }, values: outer.values.merging(inference.values) { $1 })
                controlFlow(n, rowIndex: nodes.count - 1, scope: scope, inference: inference, inner: inner, repeats: repeats)
                continue
            }

            guard n.isDefaultDomain && OpCost.knownOps.contains(n.opType) && subgraphs.isEmpty else {
                row.status = .notCounted
                row.note = "operator unknown to the profiler"
                nodes.append(row)
                continue
            }
            let inTypes = n.inputs.map { $0.isEmpty ? nil : types[$0] }
            let outTypes = n.outputs.map { $0.isEmpty ? nil : types[$0] }
            if let missing = (zip(n.inputs, inTypes).first { !$0.0.isEmpty && $0.1 == nil } ?? zip(n.outputs, outTypes).first { !$0.0.isEmpty && $0.1 == nil }) {
                row.status = .unresolved
                row.note = reasons[n.label].map { "shape unknown: \($0)" } ?? "shape unknown: type of '\(missing.0)' was not inferred"
                nodes.append(row)
                continue
            }
            let work: Work
            do {
                guard let w = try OpCost.work(n, inputs: inTypes, outputs: outTypes) else {
                    row.status = .notCounted
                    row.note = "operator unknown to the profiler"
                    nodes.append(row)
                    continue
                }
                work = w
            } catch {
                row.status = .unresolved
                row.note = "cannot count: \(error)"
                nodes.append(row)
                continue
            }
            row.macs = work.macs * repeats
            row.flops = work.flops * repeats
            if work.movesData {
                let paramSlots = ParameterSlots.parameters(n.opType) ?? []
                let bufferSlots = ParameterSlots.buffers(n.opType)
                let elementwise = ParameterSlots.elementwise.contains(n.opType)
                let integerOp = ParameterSlots.integerWeightOps.contains(n.opType)
                for (slot, name) in n.inputs.enumerated() where !name.isEmpty {
                    guard let t = types[name] else { continue }
                    if constants.contains(name) {
                        let s = stored[name] ?? StoredConstant(dtype: t.dtype, bytes: t.byteCount, quantized: false)
                        row.weightBytes += s.bytes * repeats
                        let weightLike = t.dtype.isFloatingPoint || s.quantized || integerOp
                        let isBuffer = bufferSlots.contains(slot)
                        let isParam = !isBuffer && weightLike && (paramSlots.contains(slot) || (elementwise && t.count > 1))
                        if isParam { row.params += t.count }
                        if isBuffer { row.buffers += t.count }
                        if isParam || isBuffer { row.constantKeys.append((name, t.count, s.bytes, isBuffer)) }
                    } else {
                        row.inputBytes += bytes(name) * repeats
                    }
                }
                for o in n.outputs where !o.isEmpty { row.outputBytes += bytes(o) * repeats }
            }
            let activation = n.inputs.first { !$0.isEmpty && !constants.contains($0) }
            row.precision = Self.precision(of: activation.flatMap(dtype) ?? row.outputDType ?? .float32)
            nodes.append(row)
        }
    }

    /// The precision whose peak applies to work on `d`: 8-bit (and narrower) integer and float8
    /// use the int8 rate, float16/bfloat16 the fp16 rate, anything else fp32.
    static func precision(of d: DType) -> Precision {
        switch d {
        case .int8, .uint8, .int4, .uint4, .int2, .uint2, .float8e4m3fn, .float8e4m3fnuz, .float8e5m2, .float8e5m2fnuz: return .int8
        case .float16, .bfloat16: return .fp16
        default: return .fp32
        }
    }

    /// How a folded node's output is stored: a DequantizeLinear keeps its quantized input
    /// (plus scale and zero point), a view keeps its input's storage, anything else its own type.
    func storedForm(_ n: Node, output o: String, types: [String: TensorInfo], stored: [String: StoredConstant]) -> StoredConstant {
        let own = types[o].map { StoredConstant(dtype: $0.dtype, bytes: $0.byteCount, quantized: false) }
            ?? StoredConstant(dtype: .float32, bytes: 0, quantized: false)
        if n.opType == "DequantizeLinear", let x = n.inputs.first, let s = stored[x] {
            let extra = n.inputs.dropFirst().filter { !$0.isEmpty }.reduce(0) { $0 + (stored[$1]?.bytes ?? 0) }
            return StoredConstant(dtype: s.dtype, bytes: s.bytes + extra, quantized: true)
        }
        if Self.storagePreserving.contains(n.opType), let x = n.inputs.first, let s = stored[x] {
            return s
        }
        return own
    }
}
