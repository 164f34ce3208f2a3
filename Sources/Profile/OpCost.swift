import ModelIR
import Runtime

/// The arithmetic one application of an operator performs, before memory traffic is added.
///
/// Conventions (the table in Docs/profile.md lists every operator):
/// - A MAC is one multiply whose product is accumulated: Conv = N·Cout·∏out·(Cin/group)·∏k,
///   ConvTranspose = N·Cin·∏in·(Cout/group)·∏k, Gemm/MatMul = M·N·K times the batch dims.
///   Bias additions are not MACs.
/// - FLOPs = 2·MACs, plus one per output element for a bias, plus the per-element costs of
///   elementwise, activation, normalization, pooling and reduction work.
public struct Work: Equatable, Sendable {
    public var macs: Int
    public var flops: Int
    /// Whether the operator reads its inputs and writes its outputs. False for views and
    /// metadata operators (Reshape, Shape, Identity, …), which cost nothing on purpose.
    public var movesData: Bool

    public init(macs: Int = 0, flops: Int = 0, movesData: Bool = true) {
        self.macs = macs
        self.flops = flops
        self.movesData = movesData
    }

    /// A view or metadata operator: no arithmetic, no data movement.
    public static let free = Work(movesData: false)
    /// A data-movement operator: no arithmetic, but its inputs are read and outputs written.
    public static let movement = Work()

    static func perOutput(_ outputs: [TensorInfo?], _ k: Int) -> Work {
        Work(flops: k * (outputs.first??.count ?? 0))
    }
}

/// Why an operator's work could not be counted.
public struct CostError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ d: String) { description = d }
}

/// The counting rules, one operator family per file (`OpCost+Conv.swift`, …), dispatched by
/// op type. Only the default ONNX domain is known; an operator of any other domain, or one not
/// listed, returns nil and is reported as "not counted" — never silently 0.
public enum OpCost {
    /// The work of `node` given its input and output types (nil = omitted optional input).
    /// - Returns: nil when the operator is unknown to the profiler.
    /// - Throws: `CostError` when the types do not fit the operator (wrong rank, missing weight).
    public static func work(_ node: Node, inputs: [TensorInfo?], outputs: [TensorInfo?]) throws -> Work? {
        guard node.isDefaultDomain else { return nil }
        let op = node.opType
        if freeOps.contains(op) { return .free }
        if movementOps.contains(op) { return .movement }
        if let k = elementwiseCost[op] { return .perOutput(outputs, k) }
        if variadicOps.contains(op) {
            // n inputs combine pairwise: n−1 operations per output element (Mean adds one division).
            let n = inputs.compactMap { $0 }.count
            return .perOutput(outputs, max(1, n - 1) + (op == "Mean" ? 1 : 0))
        }
        if let k = normalizationCost[op] { return .perOutput(outputs, k) }
        switch op {
        case "Conv", "ConvInteger": return try conv(node, inputs, outputs, weight: 1, bias: op == "Conv" ? 2 : nil)
        case "QLinearConv": return try conv(node, inputs, outputs, weight: 3, bias: 8)
        case "ConvTranspose": return try convTranspose(node, inputs, outputs)
        case "Gemm": return try gemm(node, inputs, outputs)
        case "MatMul", "MatMulInteger": return try matMul(inputs, outputs, a: 0)
        case "QLinearMatMul": return try matMul(inputs, outputs, a: 0)
        case "Einsum": return try einsum(node, inputs, outputs)
        case "LSTM", "GRU", "RNN": return try recurrent(node, inputs, outputs)
        case "MaxPool", "AveragePool", "LpPool": return try pool(node, inputs, outputs)
        case "GlobalAveragePool", "GlobalMaxPool": return Work(flops: inputs.first??.count ?? 0)
        case "GlobalLpPool": return Work(flops: 2 * (inputs.first??.count ?? 0))
        case "LRN":
            let size = Int(node.int("size") ?? 1)
            return .perOutput(outputs, 2 * size + 4)
        case "Resize", "Upsample": return try resize(node, inputs, outputs)
        default: break
        }
        if let k = reductionCost[op] { return Work(flops: k * (inputs.first??.count ?? 0)) }
        return nil
    }

    /// Views and metadata: the result is the input's bytes reinterpreted, or a shape.
    public static let freeOps: Set<String> = [
        "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Shape", "Size", "Constant",
        "Dropout", "Optional", "OptionalGetElement", "OptionalHasElement",
    ]

    /// Data movement without arithmetic: inputs are read and outputs written.
    public static let movementOps: Set<String> = [
        "Transpose", "Concat", "Split", "Slice", "Gather", "GatherElements", "GatherND",
        "Scatter", "ScatterElements", "ScatterND", "Pad", "Tile", "Expand", "DepthToSpace",
        "SpaceToDepth", "Cast", "CastLike", "ConstantOfShape", "EyeLike", "OneHot", "Compress",
        "ReverseSequence", "Trilu", "Range", "NonZero", "Unique", "CenterCropPad", "Col2Im",
    ]

    /// FLOPs per output element of elementwise and activation operators: one per arithmetic
    /// operation, a built-in function (exp, log, sqrt, tanh, erf, sigmoid, trigonometric)
    /// counting as one; activations defined by an ONNX function body count that body's ops.
    public static let elementwiseCost: [String: Int] = {
        var t: [String: Int] = [:]
        for op in ["Add", "Sub", "Mul", "Div", "Pow", "Mod", "Neg", "Abs", "Reciprocal", "Sqrt", "Exp", "Log",
                   "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh",
                   "Tanh", "Sigmoid", "Erf", "Floor", "Ceil", "Round", "Sign", "Relu", "Clip", "Where",
                   "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "Not",
                   "IsNaN", "IsInf", "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot",
                   "ThresholdedRelu", "Shrink", "Hardmax"] { t[op] = 1 }
        t["LeakyRelu"] = 2     // mul, select
        t["PRelu"] = 2         // mul, select
        t["Elu"] = 3           // exp, sub, mul (select free)
        t["Celu"] = 4          // div, exp, sub, mul
        t["Selu"] = 4          // exp, mul, sub, mul
        t["HardSigmoid"] = 3   // mul, add, clip
        t["HardSwish"] = 4     // HardSigmoid + mul
        t["Softplus"] = 3      // exp, add, log
        t["Softsign"] = 3      // abs, add, div
        t["Mish"] = 5          // softplus (3), tanh, mul
        t["Gelu"] = 5          // div, erf, add, mul, mul (erf form; the tanh form is counted the same)
        t["Softmax"] = 5       // max, sub, exp, sum, div
        t["LogSoftmax"] = 5    // max, sub, exp, sum, log-sub
        t["QuantizeLinear"] = 3    // div, round, add with saturation
        t["DequantizeLinear"] = 2  // sub, mul
        t["DynamicQuantizeLinear"] = 5  // min, max, then quantize (3)
        t["CumSum"] = 1
        return t
    }()

    /// Operators taking any number of inputs.
    public static let variadicOps: Set<String> = ["Sum", "Max", "Min", "Mean"]

    /// FLOPs per output element of normalization in inference form. BatchNormalization folds
    /// to one multiply-add per element (scale and shift precomputed from the constants); the
    /// statistics-computing norms pay mean (1), variance (3), normalize (2), affine (2).
    public static let normalizationCost: [String: Int] = [
        "BatchNormalization": 2, "InstanceNormalization": 8, "LayerNormalization": 8,
        "GroupNormalization": 8, "MeanVarianceNormalization": 6, "RMSNormalization": 4,
        "LpNormalization": 3,
    ]

    /// FLOPs per input element of reductions.
    public static let reductionCost: [String: Int] = [
        "ReduceSum": 1, "ReduceMean": 1, "ReduceMax": 1, "ReduceMin": 1, "ReduceProd": 1,
        "ReduceLogSum": 1, "ReduceL1": 2, "ReduceL2": 2, "ReduceSumSquare": 2, "ReduceLogSumExp": 2,
        "ArgMax": 1, "ArgMin": 1, "TopK": 1,
    ]

    /// Every operator type the profiler counts (control flow is handled by the profiler itself).
    public static let knownOps: Set<String> = {
        var s = freeOps.union(movementOps).union(elementwiseCost.keys).union(variadicOps)
            .union(normalizationCost.keys).union(reductionCost.keys)
        s.formUnion(["Conv", "ConvInteger", "QLinearConv", "ConvTranspose", "Gemm", "MatMul", "MatMulInteger",
                     "QLinearMatMul", "Einsum", "LSTM", "GRU", "RNN", "MaxPool", "AveragePool", "LpPool",
                     "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "LRN", "Resize", "Upsample"])
        return s
    }()

    static func required(_ inputs: [TensorInfo?], _ i: Int, _ what: String) throws -> TensorInfo {
        guard i < inputs.count, let t = inputs[i] else { throw CostError("\(what) (input \(i)) is missing") }
        return t
    }

    static func output(_ outputs: [TensorInfo?]) throws -> TensorInfo {
        guard let o = outputs.first ?? nil else { throw CostError("output type is unknown") }
        return o
    }

    static func present(_ inputs: [TensorInfo?], _ i: Int) -> Bool { i < inputs.count && inputs[i] != nil }
}
