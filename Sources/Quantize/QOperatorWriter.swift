import Foundation
import ModelIR
import TensorCore

/// QOperator output, as ONNX Runtime's QLinear registry writes it (registry.py's
/// `QLinearOpsRegistry`): each quantizable node becomes its integer operator —
/// Conv → QLinearConv, MatMul → QLinearMatMul (ai.onnx), Gemm → QGemm, Add/Mul → QLinearAdd/
/// QLinearMul, Concat → QLinearConcat, GlobalAveragePool → QLinearGlobalAveragePool,
/// AveragePool → QLinearAveragePool, Sigmoid → QLinearSigmoid, LeakyRelu → QLinearLeakyRelu
/// (com.microsoft) — reading and writing int8/uint8 with the calibrated scales of its inputs and
/// output. Reshape, Transpose, Squeeze, Unsqueeze, Flatten and MaxPool run on the integers when
/// their input is quantized, sharing its scale (`Direct8BitOp`). A QuantizeLinear is placed
/// where a float value enters an integer operator, a DequantizeLinear where an integer value is
/// read as float (graph outputs, float ops). An integer operator's output read only by a Relu or
/// Clip takes the Relu's range (`adjust_tensor_ranges`); with asymmetric (uint8) activations
/// the Relu is then dropped (`QLinearActivation.QuantizeClipRelu`), with symmetric ones it stays
/// in float.
/// ConvTranspose, HardSigmoid, HardSwish, Softmax and Resize have no integer form here and stay float.
enum QOperatorWriter {
    enum Kind { case conv, matmul, gemm, add, mul, concat, globalAveragePool, averagePool, sigmoid, leakyRelu, direct }

    struct Plan {
        var kinds: [Int: Kind] = [:]
        /// Relu/Clip nodes absorbed into the integer operator before them, with that operator's output.
        var absorbed: [Int: String] = [:]
        /// The range an output takes instead of its own (the absorbed Relu's output).
        var rangeOf: [String: String] = [:]
        var calibrated: [String] = []
        var nodes: [Int] { kinds.filter { $0.value != .direct }.map(\.key).sorted() }
    }

    static let nothingConvertible = QuantizeError.nothingToQuantize("--quant-format qoperator: no node has an integer form (QLinearConv, QLinearMatMul, QGemm, QLinearAdd, QLinearMul, QLinearConcat, QLinearGlobalAveragePool, QLinearAveragePool, QLinearSigmoid, QLinearLeakyRelu); ConvTranspose, HardSigmoid, HardSwish, Softmax and Resize have none (use --quant-format qdq)")

    static let directOps: Set<String> = ["Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "MaxPool"]

    static func plan(_ m: Model, options: QuantizeOptions, only: Set<Int>? = nil) -> Plan {
        let g = m.graph
        let floats = Quantizer.floatValues(m)
        let opset = m.opset(for: "") ?? 0
        let index = UseDefIndex(g)
        func isActivation(_ v: String) -> Bool { !v.isEmpty && floats.contains(v) && g.constantTensor(named: v) == nil }
        var p = Plan()
        var calibrated: [String] = [], seen = Set<String>()
        func calibrate(_ v: String) { if seen.insert(v).inserted { calibrated.append(v) } }
        var quantized = Set<String>()   // values available as integers (ORT's quantized_value_map)
        // With `only` (layers kept in float), a value the full plan passes through a direct op
        // (Reshape, MaxPool, …) from an integer output may now be float where a quantized node
        // reads it: it takes the range the full plan gives that chain's source, which
        // calibration (run for the full plan) observed, not a range of its own.
        var directInput: [String: String] = [:], fullRangeOf: [String: String] = [:]
        if only != nil {
            let full = plan(m, options: options)
            for (i, k) in full.kinds where k == .direct { directInput[g.nodes[i].outputs[0]] = g.nodes[i].inputs[0] }
            fullRangeOf = full.rangeOf
        }
        func calibrateInput(_ v: String) {
            var src = v, hops = 0
            while let s = directInput[src], hops < g.nodes.count { src = s; hops += 1 }
            if src == v { calibrate(v); return }
            let r = fullRangeOf[src] ?? src
            p.rangeOf[v] = r
            calibrate(r)
        }
        for (i, n) in g.nodes.enumerated() where n.isDefaultDomain && options.ops.contains(n.opType) && !n.inputs.isEmpty && !n.outputs.isEmpty {
            if let only, !only.contains(i) { continue }
            if options.exclude.contains(where: { Glob.matches($0, n.name) }) { continue }
            guard isActivation(n.inputs[0]), floats.contains(n.outputs[0]) else { continue }
            var kind: Kind?
            var inputs = [n.inputs[0]]
            switch n.opType {
            case "Conv", "MatMul", "Gemm":
                guard n.inputs.count > 1, let w = g.constantTensor(named: n.inputs[1]), w.dtype == .float32 else { break }
                // QLinearConv takes the bias as int32: it must be a float32 constant, one per channel.
                if n.opType == "Conv" {
                    let b = n.inputs.count > 2 && !n.inputs[2].isEmpty ? g.constantTensor(named: n.inputs[2]) : nil
                    if n.inputs.count < 3 || n.inputs[2].isEmpty || (b?.dtype == .float32 && b?.rank == 1 && b?.count == w.shape[0]) { kind = .conv }
                }
                if n.opType == "MatMul", w.rank == 2 { kind = .matmul }
                if n.opType == "Gemm", w.rank == 2, (n.int("transA") ?? 0) == 0, (n.float("alpha") ?? 1) == 1, (n.float("beta") ?? 1) == 1 {
                    let c = n.inputs.count > 2 && !n.inputs[2].isEmpty ? g.constantTensor(named: n.inputs[2]) : nil
                    let cols = (n.int("transB") ?? 0) == 1 ? w.shape[0] : w.shape[1]
                    if n.inputs.count < 3 || n.inputs[2].isEmpty || (c?.dtype == .float32 && c?.rank == 1 && c?.count == cols) { kind = .gemm }
                }
            case "Add", "Mul":
                guard n.inputs.count == 2, isActivation(n.inputs[1]) else { break }
                kind = n.opType == "Add" ? .add : .mul
                inputs = n.inputs
            case "Concat":
                guard n.inputs.allSatisfy(isActivation) else { break }
                kind = .concat
                inputs = n.inputs
            case "GlobalAveragePool": kind = .globalAveragePool
            case "AveragePool": kind = .averagePool
            case "Sigmoid": kind = .sigmoid
            case "LeakyRelu": kind = .leakyRelu
            default:
                if directOps.contains(n.opType), quantized.contains(n.inputs[0]),
                   n.opType != "MaxPool" || (opset >= 12 && (n.outputs.count == 1 || n.outputs[1].isEmpty)) {
                    p.kinds[i] = .direct
                    quantized.insert(n.outputs[0])
                }
                continue
            }
            guard let kind else { continue }
            p.kinds[i] = kind
            for v in inputs where !quantized.contains(v) { calibrateInput(v) }
            quantized.insert(n.outputs[0])
            // A Relu/Clip alone reading the output gives it its range (ORT's adjust_tensor_ranges:
            // what lies below is cut by the Relu anyway); asymmetric, it is absorbed (uint8 with
            // that range is the Relu), symmetric it stays in float after a DequantizeLinear.
            let o = n.outputs[0]
            if !index.isGraphOutput(o), let r = index.hasSingleDirectReader(o), r.slot == 0 {
                let rn = g.nodes[r.node]
                if rn.isDefaultDomain, rn.opType == "Relu" || rn.opType == "Clip", !options.exclude.contains(where: { Glob.matches($0, rn.name) }) {
                    p.rangeOf[o] = rn.outputs[0]
                    calibrate(rn.outputs[0])
                    if !options.symmetricActivations {
                        p.absorbed[r.node] = o
                        quantized.insert(rn.outputs[0])
                    }
                    continue
                }
            }
            calibrate(o)
        }
        p.calibrated = calibrated
        return p
    }

    static func write(_ deployed: Model, nodes: [Int], calibration: MinMaxCalibrator, options: QuantizeOptions,
                      inputMeans: [Int: BiasCorrection.InputMeans]) throws -> (Model, QuantizeSummary) {
        var m = deployed
        let opset = m.opset(for: "") ?? 0
        guard opset >= 10 else { throw QuantizeError.invalid("the model's opset \(opset) predates QLinearConv and QuantizeLinear (opset 10)") }
        // `nodes` may be a subset (layers kept in float); direct ops follow their input.
        let allowed = Set(nodes).union(plan(deployed, options: options).kinds.filter { $0.value == .direct }.map(\.key))
        let p = plan(deployed, options: options, only: allowed)
        guard !p.nodes.isEmpty else { throw nothingConvertible }
        let g = deployed.graph
        var names = NameAllocator(g)
        var summary: [QuantizeSummary.Tensor] = []
        struct QValue { var name: String; var scale: String; var zero: String; var params: QuantParams }
        var qv: [String: QValue] = [:]
        var floatAvailable = Set(g.inputs.map(\.name)).union(g.initializers.map(\.name))
        var out: [Node] = []
        var usedMS = false
        let range = options.activationRange
        var paramNames: [String: (String, String, QuantParams)] = [:]

        func params(_ v: String) throws -> (String, String, QuantParams) {
            if let done = paramNames[v] { return done }
            let src = p.rangeOf[v] ?? v
            let (qp, entry) = try Quantizer.activationParams(src, fixed: nil, calibration: calibration, options: options)
            if !summary.contains(where: { $0.name == src }) { summary.append(entry) }
            let s = names.fresh(v + "_scale"), z = names.fresh(v + "_zero_point")
            m.graph.addInitializer(Initializer(name: s, tensor: TensorCore.Tensor(scalar: qp.scale)))
            m.graph.addInitializer(Initializer(name: z, tensor: Quantizer.zeroPoint(qp.zeroPoint, range.dtype)))
            paramNames[v] = (s, z, qp)
            return (s, z, qp)
        }
        func quantized(_ v: String) throws -> QValue {
            if let q = qv[v] { return q }
            let (s, z, qp) = try params(v)
            let q = QValue(name: names.fresh(v + "_quantized"), scale: s, zero: z, params: qp)
            out.append(Node(name: names.fresh(v + "_QuantizeLinear"), opType: "QuantizeLinear", inputs: [v, s, z], outputs: [q.name]))
            qv[v] = q
            return q
        }
        func float(_ v: String) {
            guard !v.isEmpty, !floatAvailable.contains(v), let q = qv[v] else { return }
            out.append(Node(name: names.fresh(v + "_DequantizeLinear"), opType: "DequantizeLinear", inputs: [q.name, q.scale, q.zero], outputs: [v]))
            floatAvailable.insert(v)
        }
        func outputValue(_ o: String) throws -> QValue {
            let (s, z, qp) = try params(o)
            let q = QValue(name: names.fresh(o + "_quantized"), scale: s, zero: z, params: qp)
            qv[o] = q
            return q
        }
        func constant(_ name: String, _ t: TensorCore.Tensor) -> String {
            let n = names.fresh(name)
            m.graph.addInitializer(Initializer(name: n, tensor: t))
            return n
        }
        var weightCount = 0
        for (i, n) in g.nodes.enumerated() {
            if let o = p.absorbed[i], let q = qv[o] {
                qv[n.outputs[0]] = q   // the Relu's output is the integer output (its range)
                continue
            }
            guard let kind = p.kinds[i] else {
                for v in n.inputs { float(v) }
                for v in n.subgraphReads() { float(v) }
                out.append(n)
                floatAvailable.formUnion(n.outputs)
                continue
            }
            let o = n.outputs[0]
            let label = n.name.isEmpty ? o : n.name
            var attrs = n.attributes
            switch kind {
            case .direct:
                let x = try quantized(n.inputs[0])
                let y = QValue(name: names.fresh(o + "_quantized"), scale: x.scale, zero: x.zero, params: x.params)
                qv[o] = y
                paramNames[o] = (x.scale, x.zero, x.params)
                var node = n
                node.inputs[0] = x.name
                node.outputs[0] = y.name
                for v in n.inputs.dropFirst() { float(v) }
                out.append(node)
            case .conv, .matmul, .gemm:
                let x = try quantized(n.inputs[0])
                guard let w = Quantizer.quantizeWeighted(g, n, inputScale: x.params.scale, options: options, inputMean: inputMeans[i]) else {
                    throw QuantizeError.invalid("node '\(n.label)': weight '\(n.inputs[1])' is not a float32 constant")
                }
                weightCount += 1
                let perAxis = options.perChannel && w.params.count > 1
                let wq = constant(n.inputs[1] + "_quantized", w.weight)
                let ws = constant(n.inputs[1] + "_scale", perAxis ? TensorCore.Tensor(shape: [w.params.count], scalars: w.params.map(\.scale)) : TensorCore.Tensor(scalar: w.params[0].scale))
                let wz = constant(n.inputs[1] + "_zero_point", perAxis ? Quantizer.zeroPoint(0, .int8, count: w.params.count, shape: [w.params.count]) : Quantizer.zeroPoint(0, .int8))
                if n.inputs.count > 2, !n.inputs[2].isEmpty, w.bias == nil {
                    throw QuantizeError.invalid("node '\(n.label)': bias '\(n.inputs[2])' cannot be quantized to int32")
                }
                let y = try outputValue(o)
                let bias = w.bias.map { constant((w.biasCreated ? label + "_bias" : n.inputs[2]) + "_quantized", $0.q) }
                switch kind {
                case .conv:
                    out.append(Node(name: label + "_quant", opType: "QLinearConv", inputs: [x.name, x.scale, x.zero, wq, ws, wz, y.scale, y.zero] + (bias.map { [$0] } ?? []),
                                    outputs: [y.name], attributes: attrs))
                case .matmul:
                    out.append(Node(name: label + "_quant", opType: "QLinearMatMul", inputs: [x.name, x.scale, x.zero, wq, ws, wz, y.scale, y.zero], outputs: [y.name]))
                default:
                    attrs.removeAll { $0.name == "beta" }
                    usedMS = true
                    out.append(Node(name: label + "_quant", opType: "QGemm", domain: "com.microsoft",
                                    inputs: [x.name, x.scale, x.zero, wq, ws, wz, bias ?? "", y.scale, y.zero], outputs: [y.name], attributes: attrs))
                }
            case .add, .mul:
                let a = try quantized(n.inputs[0]), b = try quantized(n.inputs[1])
                let y = try outputValue(o)
                usedMS = true
                out.append(Node(name: label + "_quant", opType: kind == .add ? "QLinearAdd" : "QLinearMul", domain: "com.microsoft",
                                inputs: [a.name, a.scale, a.zero, b.name, b.scale, b.zero, y.scale, y.zero], outputs: [y.name]))
            case .concat:
                let xs = try n.inputs.map { try quantized($0) }
                let y = try outputValue(o)
                usedMS = true
                out.append(Node(name: label + "_quant", opType: "QLinearConcat", domain: "com.microsoft",
                                inputs: [y.scale, y.zero] + xs.flatMap { [$0.name, $0.scale, $0.zero] }, outputs: [y.name], attributes: attrs))
            case .globalAveragePool, .averagePool, .sigmoid, .leakyRelu:
                let x = try quantized(n.inputs[0])
                let y = try outputValue(o)
                usedMS = true
                let op: String
                switch kind {
                case .globalAveragePool: op = "QLinearGlobalAveragePool"; attrs = [Attribute(name: "channels_last", value: .int(0))]
                case .averagePool: op = "QLinearAveragePool"
                case .sigmoid: op = "QLinearSigmoid"
                default: op = "QLinearLeakyRelu"
                }
                out.append(Node(name: label + "_quant", opType: op, domain: "com.microsoft", inputs: [x.name, x.scale, x.zero, y.scale, y.zero],
                                outputs: [y.name], attributes: attrs))
            }
        }
        for o in g.outputs { float(o.name) }
        m.graph.nodes = out
        if usedMS, m.opset(for: "com.microsoft") == nil { m.opsetImports.append(OpsetImport(domain: "com.microsoft", version: 1)) }
        _ = m.graph.cleanup()
        let labels = p.nodes.map { g.nodes[$0].label }
        return (m, QuantizeSummary(nodes: labels, activations: summary, weights: weightCount, samples: calibration.samples))
    }
}
