import ModelIR
import TensorCore

/// Raises a model's default-domain (ai.onnx) opset to 13, rewriting every operator whose
/// signature or semantics changed between the model's opset (≥ 7) and 13, so the upgraded
/// model computes exactly what the original did. Other domains' opsets are kept. Subgraph
/// bodies (If/Loop/Scan) are rewritten the same way.
///
/// Converted (checked against onnx/onnx docs/Changelog.md, version by version):
/// - Squeeze-1/11, Unsqueeze-1/11, ReduceSum-1/11 (→ 13): the `axes` attribute becomes an int64
///   initializer input (absent axes: Squeeze and ReduceSum take none, as before).
///   Before: `y = Squeeze(x, axes=[0])`. After: `y = Squeeze(x, axes_init)`, axes_init = [0].
/// - Split-2/11 (→ 13): the `split` attribute becomes an int64 initializer input.
/// - Softmax/LogSoftmax/Hardmax-1/11 (→ 13): before 13 the input is coerced to 2-D at `axis`
///   (default 1) and normalized over the flattened tail; 13 normalizes over one axis. Kept as
///   is (axis set explicitly) when `axis` is the last dimension (-1, or rank − 1 with a known
///   rank); otherwise wrapped:
///   Before: `y = Softmax(x, axis=a)`.
///   After: `f = Flatten(x, axis=a)`, `s = Softmax(f, axis=1)`, `sh = Shape(x)`, `y = Reshape(s, sh)`.
/// - Upsample-7 (scales attribute) / Upsample-9 (scales input), deprecated at 10, and Resize-10
///   → Resize-13 with an empty roi, `coordinate_transformation_mode = asymmetric` (their
///   x_in = x_out / scale) and, for nearest, `nearest_mode = floor`.
/// - Dropout-7/10 (→ 12): `ratio` attribute removed (inference Dropout is the identity;
///   13 takes ratio as an optional input). Refused when its mask output is read before opset 10
///   (the mask's type changed from T to bool).
/// - BatchNormalization-7 (→ 9): `spatial` removed (spatial = 1 is 9's only behaviour; 0 refused).
/// - Clip-6 (→ 11): `min`/`max` attributes become scalar initializer inputs of the input's type.
/// - Pad-2 (→ 11): `pads` becomes an int64 input, `value` a scalar input of the data's type.
/// - Slice-1 (→ 10): `starts`/`ends`/`axes` become int64 inputs.
/// - TopK-1 (→ 10): `k` becomes an int64 input of shape [1].
/// - Scatter-9 (deprecated at 11) → ScatterElements (the same semantics, more index forms).
///
/// Unchanged (a version between 7 and 13 only added types, negative axes, optional inputs or
/// attributes whose default is the old behaviour): see `unchanged` below.
///
/// Refused (named with the node): an opset below 7; Scan before 9 (its batch axis was removed);
/// Upsample/Resize-10 with a non-constant layout we cannot express; any default-domain op not in
/// the lists above (experimental ops removed by 10, or ops unknown here).
public enum OpsetUpgrade {
    public static let target: Int64 = 13

    public struct Refusal: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    /// Default-domain ops whose versions between 7 and 13 keep the old graphs' meaning.
    public static let unchanged: Set<String> = [
        "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan", "Atanh",
        "AveragePool", "BitShift", "Cast", "Ceil", "Celu", "Compress", "Concat", "ConcatFromSequence",
        "Constant", "ConstantOfShape", "Conv", "ConvInteger", "ConvTranspose", "Cos", "Cosh", "CumSum",
        "DepthToSpace", "DequantizeLinear", "Det", "Div", "DynamicQuantizeLinear", "Einsum", "Elu",
        "Equal", "Erf", "Exp", "Expand", "EyeLike", "Flatten", "Floor", "GRU", "Gather",
        "GatherElements", "GatherND", "Gemm", "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool",
        "Greater", "GreaterOrEqual", "HardSigmoid", "Identity", "If", "InstanceNormalization",
        "IsInf", "IsNaN", "LRN", "LSTM", "LeakyRelu", "Less", "LessOrEqual", "Log", "Loop",
        "LpNormalization", "LpPool", "MatMul", "MatMulInteger", "Max", "MaxPool", "MaxRoiPool",
        "MaxUnpool", "Mean", "MeanVarianceNormalization", "Min", "Mod", "Mul", "Multinomial", "Neg",
        "NegativeLogLikelihoodLoss", "NonMaxSuppression", "NonZero", "Not", "OneHot", "Or", "PRelu",
        "Pow", "QLinearConv", "QLinearMatMul", "QuantizeLinear", "RNN", "RandomNormal",
        "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Range", "Reciprocal", "ReduceL1",
        "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
        "ReduceProd", "ReduceSumSquare", "Relu", "Reshape", "Resize", "ReverseSequence", "RoiAlign",
        "Round", "Scan", "ScatterElements", "ScatterND", "Selu", "SequenceAt", "SequenceConstruct",
        "SequenceEmpty", "SequenceErase", "SequenceInsert", "SequenceLength", "Shape", "Shrink",
        "Sigmoid", "Sign", "Sin", "Sinh", "Size", "SoftmaxCrossEntropyLoss", "Softplus", "Softsign",
        "SpaceToDepth", "SplitToSequence", "Sqrt", "StringNormalizer", "Sub", "Sum", "Tan", "Tanh",
        "TfIdfVectorizer", "ThresholdedRelu", "Tile", "Transpose", "Unique", "Where", "Xor",
    ]

    /// Rewrites `model` to default-domain opset 13. Returns the opset it had, or nil when it was
    /// already ≥ 13 (nothing changed).
    @discardableResult
    public static func upgrade(_ model: inout Model) throws -> Int64? {
        let from = Int64(model.opset(for: "") ?? 1)
        guard from < target else { return nil }
        guard from >= 7 else {
            let op = model.graph.nodes.first(where: { $0.isDefaultDomain })
            throw Refusal(message: "opset \(from) is below 7, the oldest opset upgraded to 13" + (op.map { " (first op: \($0.opType) '\($0.label)')" } ?? ""))
        }
        var names = NameAllocator(model.graph)
        try upgrade(&model.graph, from: from, names: &names)
        if let i = model.opsetImports.firstIndex(where: { $0.domain.isEmpty || $0.domain == "ai.onnx" }) {
            model.opsetImports[i].version = target
        } else {
            model.opsetImports.append(OpsetImport(domain: "", version: target))
        }
        // IR version 7 is the oldest that opset 13 is defined for (ONNX 1.8).
        if model.irVersion < 7 { model.irVersion = 7 }
        return from
    }

    static func refuse(_ n: Node, _ why: String) -> Refusal {
        Refusal(message: "cannot raise the opset to 13: \(n.opType) '\(n.label)': \(why)")
    }

    static func upgrade(_ g: inout Graph, from: Int64, names: inout NameAllocator) throws {
        var out: [Node] = []
        out.reserveCapacity(g.nodes.count)
        let graphReads = Set(g.outputs.map(\.name))
        var reads = Set<String>()
        for n in g.nodes { for i in n.inputs { reads.insert(i) } }
        func int64Input(_ base: String, _ values: [Int64], shape: [Int]? = nil) -> String {
            let name = names.fresh(base)
            g.addInitializer(Initializer(name: name, tensor: Tensor(shape: shape ?? [values.count], scalars: values)))
            return name
        }
        func scalarInput(_ base: String, _ v: Float, like value: String, node: Node) throws -> String {
            let dtype = g.type(of: value)?.elementType ?? .float32
            guard dtype.isFloatingPoint else { throw refuse(node, "input '\(value)' is \(dtype), not a floating-point type") }
            let name = names.fresh(base)
            let t = Tensor(scalar: v)
            g.addInitializer(Initializer(name: name, tensor: dtype == .float32 ? t : t.converted(to: dtype)))
            return name
        }
        func dropping(_ n: Node, _ attrs: Set<String>) -> Node {
            var m = n
            m.attributes.removeAll { attrs.contains($0.name) }
            return m
        }
        for var n in g.nodes {
            // Bodies first (they see the same opset).
            for (k, a) in n.attributes.enumerated() {
                switch a.value {
                case .graph(var body):
                    try upgrade(&body, from: from, names: &names)
                    n.attributes[k].value = .graph(body)
                case .graphs(var bodies):
                    for j in bodies.indices { try upgrade(&bodies[j], from: from, names: &names) }
                    n.attributes[k].value = .graphs(bodies)
                default: break
                }
            }
            guard n.isDefaultDomain else { out.append(n); continue }
            let base = n.name.isEmpty ? (n.outputs.first ?? n.opType) : n.name
            switch n.opType {
            case "Squeeze", "Unsqueeze", "ReduceSum":
                if let axes = n.ints("axes") {
                    var m = dropping(n, ["axes"])
                    m.inputs = [n.inputs.first ?? "", int64Input(base + "_axes", axes)]
                    out.append(m)
                } else if n.opType == "Unsqueeze" {
                    throw refuse(n, "no axes attribute")
                } else {
                    out.append(n)
                }
            case "Split":
                if let split = n.ints("split") {
                    var m = dropping(n, ["split"])
                    m.inputs = [n.inputs.first ?? "", int64Input(base + "_split", split)]
                    out.append(m)
                } else {
                    out.append(n)
                }
            case "Softmax", "LogSoftmax", "Hardmax":
                let axis = n.int("axis") ?? 1
                let x = n.inputs.first ?? ""
                let rank = g.type(of: x)?.shape?.count
                if axis == -1 || rank.map({ axis == Int64($0 - 1) }) == true {
                    var m = n
                    m[attribute: "axis"] = .int(axis)
                    out.append(m)
                } else {
                    let f = names.fresh(base + "_flat"), s = names.fresh(base + "_2d"), sh = names.fresh(base + "_shape")
                    out.append(Node(name: names.fresh(base + "_Flatten"), opType: "Flatten", inputs: [x], outputs: [f],
                                    attributes: [Attribute(name: "axis", value: .int(axis))]))
                    var m = n
                    m.name = names.fresh(base + "_2D")
                    m.inputs = [f]
                    m.outputs = [s]
                    m[attribute: "axis"] = .int(1)
                    out.append(m)
                    out.append(Node(name: names.fresh(base + "_Shape"), opType: "Shape", inputs: [x], outputs: [sh]))
                    out.append(Node(name: n.name, opType: "Reshape", inputs: [s, sh], outputs: n.outputs))
                }
            case "Upsample", "Resize":
                if n.opType == "Resize" && from >= 11 { out.append(n); continue }
                let mode = n.string("mode") ?? "nearest"
                guard mode == "nearest" || mode == "linear" else { throw refuse(n, "mode '\(mode)'") }
                var scales: String
                if let s = n.floats("scales") {
                    scales = names.fresh(base + "_scales")
                    g.addInitializer(Initializer(name: scales, tensor: Tensor(shape: [s.count], scalars: s)))
                } else if n.inputs.count >= 2, !n.inputs[1].isEmpty {
                    scales = n.inputs[1]
                } else {
                    throw refuse(n, "no scales")
                }
                var attrs = [Attribute(name: "mode", value: .string(mode)),
                             Attribute(name: "coordinate_transformation_mode", value: .string("asymmetric"))]
                if mode == "nearest" { attrs.append(Attribute(name: "nearest_mode", value: .string("floor"))) }
                out.append(Node(name: n.name, opType: "Resize", inputs: [n.inputs.first ?? "", "", scales], outputs: n.outputs, attributes: attrs))
            case "Dropout":
                guard from < 12 else { out.append(n); continue }
                if from < 10, n.outputs.count > 1, !n.outputs[1].isEmpty, reads.contains(n.outputs[1]) || graphReads.contains(n.outputs[1]) {
                    throw refuse(n, "its mask output is read (its type changed from the input's to bool at opset 10)")
                }
                out.append(dropping(n, ["ratio", "seed"]).with { $0.inputs = [n.inputs.first ?? ""] })
            case "BatchNormalization":
                if let spatial = n.int("spatial"), spatial != 1 { throw refuse(n, "spatial = \(spatial) (opset 9 keeps only spatial = 1)") }
                out.append(dropping(n, ["spatial"]))
            case "Clip":
                guard from < 11 else { out.append(n); continue }
                let x = n.inputs.first ?? ""
                var m = dropping(n, ["min", "max"])
                m.inputs = [x, "", ""]
                if let lo = n.float("min") { m.inputs[1] = try scalarInput(base + "_min", lo, like: x, node: n) }
                if let hi = n.float("max") { m.inputs[2] = try scalarInput(base + "_max", hi, like: x, node: n) }
                while m.inputs.count > 1 && m.inputs.last == "" { m.inputs.removeLast() }
                out.append(m)
            case "Pad":
                guard from < 11 else { out.append(n); continue }
                guard let pads = n.ints("pads") else { throw refuse(n, "no pads attribute") }
                let x = n.inputs.first ?? ""
                var m = dropping(n, ["pads", "value"])
                m.inputs = [x, int64Input(base + "_pads", pads)]
                let value = n.float("value") ?? 0
                if value != 0 { m.inputs.append(try scalarInput(base + "_value", value, like: x, node: n)) }
                out.append(m)
            case "Slice":
                guard from < 10 else { out.append(n); continue }
                guard let starts = n.ints("starts"), let ends = n.ints("ends") else { throw refuse(n, "no starts/ends attribute") }
                var m = dropping(n, ["starts", "ends", "axes"])
                m.inputs = [n.inputs.first ?? "", int64Input(base + "_starts", starts), int64Input(base + "_ends", ends)]
                if let axes = n.ints("axes") { m.inputs.append(int64Input(base + "_axes", axes)) }
                out.append(m)
            case "TopK":
                guard from < 10 else { out.append(n); continue }
                guard let k = n.int("k") else { throw refuse(n, "no k attribute") }
                var m = dropping(n, ["k"])
                m.inputs = [n.inputs.first ?? "", int64Input(base + "_k", [k])]
                out.append(m)
            case "Scatter":
                var m = n
                m.opType = "ScatterElements"
                out.append(m)
            case "Scan" where from < 9:
                throw refuse(n, "Scan-8's batch axis was removed at opset 9")
            default:
                guard unchanged.contains(n.opType) else {
                    throw refuse(n, "not an operator this upgrade knows to be unchanged between opset \(from) and 13")
                }
                out.append(n)
            }
        }
        g.nodes = out
    }
}

extension Node {
    fileprivate func with(_ edit: (inout Node) -> Void) -> Node {
        var m = self
        edit(&m)
        return m
    }
}
