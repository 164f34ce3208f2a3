import ModelIR
import Runtime
import TensorCore

/// How a node's figures were obtained.
public enum NodeStatus: String, Codable, Sendable {
    /// Counted by the rules in `OpCost` (a view or metadata op counts 0 on purpose).
    case counted
    /// Every input is constant: the result is computed once at load time (as ONNX Runtime's
    /// constant folding does) and costs nothing per inference.
    case constant
    /// A QuantizeLinear/DequantizeLinear on an activation, fused into its neighbour the way
    /// QDQ-consuming runtimes (ONNX Runtime, TensorRT) execute it: the neighbour reads or
    /// writes the quantized tensor instead.
    case fused
    /// If/Loop/Scan: the node itself costs nothing; its bodies are listed after it.
    case control
    /// An operator the profiler does not know: listed in the warnings, never silently 0.
    case notCounted = "not_counted"
    /// The node's input or output shapes could not be inferred: listed in the warnings.
    case unresolved
}

/// The figures of one node. All counts are per inference: a node inside a Loop or Scan body
/// is already multiplied by `repeats`.
public struct NodeProfile: Sendable {
    /// The node's name, or its op type and first output when unnamed.
    public var name: String
    public var opType: String
    public var domain: String
    /// "" for the main graph; "<node>/<attribute>" for a subgraph body (nested with "/").
    public var scope: String
    public var outputShape: [Int]?
    public var outputDType: DType?
    /// Multiply-accumulates (convention in `OpCost`).
    public var macs: Int = 0
    public var flops: Int = 0
    /// Elements of constant weight inputs (see `ParameterSlots`).
    public var params: Int = 0
    /// Elements of constant non-learned state (BatchNormalization running mean and variance).
    public var buffers: Int = 0
    /// Bytes of constant inputs as stored (an int8 weight behind a DequantizeLinear is int8).
    public var weightBytes: Int = 0
    /// Bytes of non-constant inputs, each in its own dtype.
    public var inputBytes: Int = 0
    public var outputBytes: Int = 0
    /// Times the node runs per inference (Loop trip count, Scan length; 1 otherwise).
    public var repeats: Int = 1
    /// False for the cheaper branch of an If (the totals count the costlier one).
    public var inTotal: Bool = true
    /// The precision the node computes in, from its activation input's dtype as stored.
    public var precision: Precision = .fp32
    public var status: NodeStatus = .counted
    public var note: String?
    /// Constant inputs counted as parameters or buffers, by value name, for de-duplicated totals.
    var constantKeys: [(name: String, elements: Int, bytes: Int, isBuffer: Bool)] = []

    /// Memory traffic: all input bytes plus output bytes.
    public var trafficBytes: Int { weightBytes + inputBytes + outputBytes }

    /// Arithmetic intensity in FLOP/byte; nil when the node moves no bytes.
    public var intensity: Double? { trafficBytes > 0 ? Double(flops) / Double(trafficBytes) : nil }

    /// Whether the node's figures are real counts (including an on-purpose 0).
    public var isCounted: Bool { status == .counted || status == .constant || status == .fused || status == .control }

    /// The roofline estimate of this node on `device` at `precision` (the node's own when nil).
    public func roofline(on device: RooflineDevice, precision: Precision? = nil) -> RooflineEstimate? {
        guard isCounted, let p = device.available(precision ?? self.precision) else { return nil }
        return RooflineEstimate(flops: Double(flops), bytes: Double(trafficBytes), device: device, precision: p)
    }
}

/// Which inputs of an operator hold weights (parameters) and which hold buffers.
///
/// Parameters are the elements of constant inputs in these positions only. Constants elsewhere
/// — shapes, axes, Clip bounds, Resize scales, quantization scales and zero points — are
/// configuration, not parameters; their bytes still count as memory traffic. BatchNormalization's
/// running mean and variance are buffers (torchvision counts neither in its published parameter
/// counts). For elementwise arithmetic a constant of one element is a literal, not a parameter.
public enum ParameterSlots {
    public static func parameters(_ op: String) -> [Int]? {
        switch op {
        case "Conv", "ConvTranspose": return [1, 2]
        case "Gemm": return [0, 1, 2]
        case "ConvInteger": return [1]
        case "QLinearConv": return [3, 8]
        case "MatMul", "MatMulInteger": return [0, 1]
        case "QLinearMatMul": return [0, 3]
        case "BatchNormalization", "InstanceNormalization", "LayerNormalization", "GroupNormalization",
             "RMSNormalization": return [1, 2]
        case "LSTM": return [1, 2, 3, 7]
        case "GRU", "RNN": return [1, 2, 3]
        case "PRelu": return [1]
        case "Gather": return [0]
        default: return nil
        }
    }

    /// Elementwise operators whose constant inputs (of more than one element) are parameters:
    /// a bias Add after a MatMul, a learned scale Mul, a position embedding.
    public static let elementwise: Set<String> = ["Add", "Sub", "Mul", "Div", "Sum", "Max", "Min", "Mean", "Einsum"]

    public static func buffers(_ op: String) -> [Int] { op == "BatchNormalization" ? [3, 4] : [] }

    /// Operators whose integer weights are parameters by definition.
    static let integerWeightOps: Set<String> = ["ConvInteger", "QLinearConv", "MatMulInteger", "QLinearMatMul"]
}
