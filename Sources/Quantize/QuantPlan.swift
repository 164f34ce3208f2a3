import ModelIR
import Runtime
import TensorCore

/// Where a quantized model's integers go, decided on the deployed graph as ONNX Runtime's QDQ
/// registry decides (onnxruntime/python/tools/quantization/registry.py and operators/*.py):
/// - weighted ops (Conv, ConvTranspose, Gemm, MatMul with a float32 constant weight): the data
///   input and the weight (and the bias) are quantized (`QDQConv`, `QDQGemm`, `QDQMatMul`);
/// - activation ops (Add, Mul, Concat, GlobalAveragePool, Sigmoid, HardSigmoid, HardSwish,
///   LeakyRelu, Softmax): every float activation input (`QDQOperatorBase`); a Softmax output
///   that is quantized gets the range [0, 1] (`adjust_tensor_ranges`);
/// - pass-through ops (Reshape, Transpose, Squeeze, Unsqueeze, Flatten, MaxPool ≥ opset 12,
///   AveragePool, Resize ≥ opset 11, `QDQDirect8BitOp`): the output shares the input's scale and
///   zero point, when the input is itself quantized in ONNX Runtime's sense (produced by a
///   quantized op, or by a Relu/Clip or pass-through op whose input is, or read by a quantized op).
/// Pairs are placed where a quantized node reads (consumers quantize their inputs), never on a
/// Conv's output before the Relu/Clip it feeds; every pair placed is one ONNX Runtime places too.
/// Nor, unless `quantizeEpilogues`, before the activation function a weighted op feeds (its
/// fused epilogue in TensorRT and in compress's executor; `epilogueNodes`): Sigmoid, HardSigmoid,
/// HardSwish and LeakyRelu reading a weighted op's output, and SiLU's Mul(x, Sigmoid(x)) /
/// HardSwish's Mul(x, HardSigmoid(x)) over such an output, stay in float; whatever reads their
/// output quantizes it as usual.
public struct QuantPlan: Sendable {
    public enum Role: Sendable { case weighted, activation, passThrough }
    public var roles: [Int: Role] = [:]
    /// Activations given a Q → DQ pair, in the order of their first quantized reader.
    public var tensors: [String] = []
    /// The quantized readers of each such activation: (node index, input slot).
    public var readers: [String: [Reader]] = [:]
    /// A pass-through output and the tensor whose scale and zero point it takes.
    public var sharesWith: [String: String] = [:]
    /// Ranges fixed by the op rather than calibrated (a Softmax output: [0, 1]).
    public var fixedRanges: [String: ClosedRange<Float>] = [:]

    public struct Reader: Sendable, Hashable { public var node: Int; public var slot: Int }

    /// Quantized nodes in graph order.
    public var nodes: [Int] { roles.keys.sorted() }
    public var weighted: [Int] { roles.filter { $0.value == .weighted }.map(\.key).sorted() }
    /// The tensor whose calibrated range gives `t` its scale.
    public func root(_ t: String) -> String {
        var t = t
        while let s = sharesWith[t] { t = s }
        return t
    }
    /// Activations whose range is calibrated (the pairs' own scales), in order.
    public var calibrated: [String] { tensors.filter { sharesWith[$0] == nil && fixedRanges[$0] == nil } }
}

extension QuantizeOptions {
    public static let weightedOps: Set<String> = ["Conv", "ConvTranspose", "Gemm", "MatMul"]
    public static let activationOps: Set<String> = ["Add", "Mul", "Concat", "GlobalAveragePool", "Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu", "Softmax"]
    public static let passThroughOps: Set<String> = ["Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "MaxPool", "AveragePool", "Resize"]
    public static let allOps = weightedOps.union(activationOps).union(passThroughOps)
}

extension Quantizer {
    /// The activation-function nodes that are a weighted op's epilogue: a Sigmoid, HardSigmoid,
    /// HardSwish or LeakyRelu whose input is the output x of one of `producers` (the nodes
    /// quantized as weighted ops: Conv, ConvTranspose, Gemm or MatMul with a constant weight),
    /// and a Mul of x with such a Sigmoid/HardSigmoid of x (SiLU, HardSwish written out), when
    /// every reader of x is one of these nodes (a Conv output also read elsewhere is quantized
    /// there anyway, so its epilogue gains nothing).
    public static func epilogueNodes(_ g: Graph, index: UseDefIndex, producers: Set<Int>) -> Set<Int> {
        let unary: Set<String> = ["Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu"]
        var out = Set<Int>()
        for pi in producers.sorted() {
            let p = g.nodes[pi]
            guard !p.outputs.isEmpty else { continue }
            let x = p.outputs[0]
            guard !x.isEmpty, !index.isGraphOutput(x) else { continue }
            let readers = index.readers(of: x).map(\.node)
            guard !readers.isEmpty else { continue }
            var found = Set<Int>()
            var ok = true
            for r in Set(readers) {
                let n = g.nodes[r]
                guard n.isDefaultDomain else { ok = false; break }
                if unary.contains(n.opType), n.inputs.first == x {
                    found.insert(r)
                } else if n.opType == "Mul", n.inputs.count == 2, n.inputs.contains(x) {
                    // The other factor: a Sigmoid/HardSigmoid of x itself.
                    let other = n.inputs[0] == x ? n.inputs[1] : n.inputs[0]
                    guard let si = index.producer(of: other), ["Sigmoid", "HardSigmoid"].contains(g.nodes[si].opType),
                          g.nodes[si].isDefaultDomain, g.nodes[si].inputs.first == x,
                          index.readers(of: other).allSatisfy({ $0.node == r }) else { ok = false; break }
                    found.insert(r)
                } else {
                    ok = false
                    break
                }
            }
            if ok { out.formUnion(found) }
        }
        return out
    }

    /// The float32 values of the graph (shape inference over the deployed model, falling back on
    /// its value_info): only those are quantized.
    static func floatValues(_ m: Model) -> Set<String> {
        var out = Set<String>()
        if let s = try? ShapeInference(model: m, strict: false) {
            for (k, v) in s.types where v.dtype == .float32 { out.insert(k) }
        }
        for vi in m.graph.inputs + m.graph.valueInfo + m.graph.outputs where vi.type?.elementType == .float32 { out.insert(vi.name) }
        return out
    }

    /// The plan for `m` (the deployed graph); `only` restricts the weighted and activation nodes
    /// to a subset (layers kept in float), the pass-through ones following.
    public static func plan(_ m: Model, options: QuantizeOptions, only: Set<Int>? = nil) -> QuantPlan {
        let g = m.graph
        let floats = floatValues(m)
        let opset = m.opset(for: "") ?? 0
        var p = QuantPlan()
        func isActivation(_ v: String) -> Bool { !v.isEmpty && floats.contains(v) && g.constantTensor(named: v) == nil }
        func need(_ t: String, _ i: Int, _ slot: Int) {
            if p.readers[t] == nil { p.tensors.append(t) }
            p.readers[t, default: []].append(.init(node: i, slot: slot))
        }
        /// Whether node `n` is quantized as a weighted op (a constant float32 weight, op type and
        /// name allowed), `only` aside.
        func weightedOp(_ n: Node) -> Bool {
            guard n.isDefaultDomain, QuantizeOptions.weightedOps.contains(n.opType), options.ops.contains(n.opType),
                  !options.exclude.contains(where: { Glob.matches($0, n.name) }),
                  n.inputs.count > 1, let w = g.constantTensor(named: n.inputs[1]), w.dtype == .float32, isActivation(n.inputs[0]) else { return false }
            if n.opType == "Gemm", (n.int("transA") ?? 0) != 0 { return false }
            if n.opType == "MatMul", w.rank != 2 { return false }
            // ONNX Runtime quantizes a ConvTranspose weight along axis 1, which is the output
            // channel only without groups (the int32 bias needs one scale per output channel).
            if n.opType == "ConvTranspose", (n.int("group") ?? 1) != 1 { return false }
            return true
        }
        let index = UseDefIndex(g)
        let epilogues = options.quantizeEpilogues ? [] : epilogueNodes(g, index: index, producers: Set(g.nodes.indices.filter { weightedOp(g.nodes[$0]) }))
        var passCandidates = Set<Int>()
        // Nodes whose output ORT quantizes, `only` aside: a layer kept in float does not change
        // which pass-through ops share scales, so the calibrated set stays the full plan's.
        var outputQuantized = Set<Int>()
        for (i, n) in g.nodes.enumerated() where n.isDefaultDomain && options.ops.contains(n.opType) {
            // `only` picks the weighted and activation nodes; pass-through ops follow them (a
            // pass-through output's scale is its input's, so the two stay in step).
            if options.exclude.contains(where: { Glob.matches($0, n.name) }) { continue }
            let chosen = only == nil || only!.contains(i) || QuantizeOptions.passThroughOps.contains(n.opType)
            if QuantizeOptions.weightedOps.contains(n.opType) {
                guard weightedOp(n) else { continue }
                outputQuantized.insert(i)
                guard chosen else { continue }
                p.roles[i] = .weighted
                need(n.inputs[0], i, 0)
            } else if QuantizeOptions.activationOps.contains(n.opType) {
                if epilogues.contains(i) { continue }
                let slots: [Int]
                switch n.opType {
                case "Add", "Mul": slots = [0, 1]
                case "Concat": slots = Array(n.inputs.indices)
                default: slots = [0]
                }
                let act = slots.filter { $0 < n.inputs.count && isActivation(n.inputs[$0]) }
                guard !act.isEmpty else { continue }
                outputQuantized.insert(i)
                guard chosen else { continue }
                p.roles[i] = .activation
                for s in act { need(n.inputs[s], i, s) }
            } else if !n.inputs.isEmpty, isActivation(n.inputs[0]), n.outputs.count >= 1 {
                if n.opType == "MaxPool", opset < 12 || n.outputs.count > 1 && !n.outputs[1].isEmpty { continue }
                if n.opType == "Resize", opset < 11 { continue }
                passCandidates.insert(i)
            }
        }
        func quantizedInORT(_ v: String, _ depth: Int = 0) -> Bool {
            if p.readers[v] != nil { return true }
            guard depth < 10_000, let pi = index.producer(of: v) else { return false }
            if outputQuantized.contains(pi) { return true }
            let pn = g.nodes[pi]
            if passCandidates.contains(pi) || (pn.isDefaultDomain && (pn.opType == "Relu" || pn.opType == "Clip")) {
                return quantizedInORT(pn.inputs[0], depth + 1)
            }
            return false
        }
        // With `only`, a pass-through op shares its input's scale where the full plan has it
        // share (and a quantized node reads its output): keeping a reader of its input in float
        // must not turn its output into a tensor of its own, which calibration (run for the full
        // plan) never observed.
        let fullPassThrough: Set<Int>? = only == nil ? nil
            : Set(plan(m, options: options).roles.filter { $0.value == .passThrough }.map(\.key))
        // Pass-through ops from the last: a reader downstream is settled before its producer.
        for i in passCandidates.sorted(by: >) {
            let n = g.nodes[i]
            guard p.readers[n.outputs[0]] != nil, fullPassThrough.map({ $0.contains(i) }) ?? quantizedInORT(n.inputs[0]) else { continue }
            p.roles[i] = .passThrough
            p.sharesWith[n.outputs[0]] = n.inputs[0]
            need(n.inputs[0], i, 0)
        }
        for t in p.tensors where p.sharesWith[t] == nil {
            // (A Softmax kept in float by `only` still gives [0, 1]: its output is not calibrated.)
            if let pi = index.producer(of: t), p.roles[pi] == .activation || outputQuantized.contains(pi),
               g.nodes[pi].opType == "Softmax" { p.fixedRanges[t] = 0...1 }
        }
        // Order by first reader (a pass-through added last may read earlier than others).
        let first = Dictionary(uniqueKeysWithValues: p.tensors.map { ($0, p.readers[$0]!.map(\.node).min()!) })
        p.tensors.sort { (first[$0]!, $0) < (first[$1]!, $1) }
        return p
    }
}
