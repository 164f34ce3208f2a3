import TensorCore

/// Builds graphs in code: tests, fixtures and the reference architectures (so large models are
/// constructed at test time rather than committed).
///
/// Weights are drawn from a seeded generator (SplitMix64), uniform in ±sqrt(3/fan_in) — unit
/// variance propagation, so random deep networks neither vanish nor overflow — and are
/// reproducible for a given seed.
public final class GraphBuilder {
    public var graph = Graph()
    private var counter = 0
    private var rng: SplitMix64
    /// When false, weights are zeros (enough for profiling, and much faster to build).
    public var randomWeights: Bool
    /// When true, layers built as Conv → BatchNormalization are written as one Conv with a bias,
    /// as an eval-mode torch.onnx.export with constant folding (its default) writes them.
    public var foldsBatchNorm = false

    public init(name: String = "graph", seed: UInt64 = 0, randomWeights: Bool = true) {
        graph.name = name
        rng = SplitMix64(seed: seed)
        self.randomWeights = randomWeights
    }

    /// A fresh name with the given prefix.
    public func fresh(_ prefix: String) -> String {
        counter += 1
        return "\(prefix)_\(counter)"
    }

    @discardableResult
    public func input(_ name: String, _ dtype: DType = .float32, _ dims: [Dim]) -> String {
        graph.inputs.append(ValueInfo(name, dtype, dims))
        return name
    }

    public func output(_ name: String, _ dtype: DType = .float32, _ dims: [Dim]? = nil) {
        graph.outputs.append(ValueInfo(name: name, type: TensorType(elementType: dtype, shape: dims)))
    }

    /// Adds an initializer and returns its name.
    @discardableResult
    public func initializer(_ name: String, _ tensor: Tensor) -> String {
        graph.addInitializer(Initializer(name: name, tensor: tensor))
        return name
    }

    /// A float32 initializer of random values in ±bound.
    public func randomInitializer(_ name: String, shape: [Int], bound: Float) -> String {
        var t = Tensor(dtype: .float32, shape: shape)
        if randomWeights {
            t.withUnsafeMutableBufferPointer(as: Float.self) { p in
                for i in p.indices { p[i] = rng.uniform(-bound, bound) }
            }
        }
        return initializer(name, t)
    }

    public func constantInitializer(_ name: String, shape: [Int], value: Float) -> String {
        initializer(name, Tensor(shape: shape, scalars: [Float](repeating: value, count: shape.reduce(1, *))))
    }

    /// Appends a node; returns its output names.
    @discardableResult
    public func node(_ op: String, _ inputs: [String], _ attributes: [String: AttributeValue] = [:],
                     name: String? = nil, outputs: Int = 1, domain: String = "") -> [String] {
        let nodeName = name ?? fresh(op)
        let outs = outputs == 1 ? [nodeName + "_out"] : (0..<outputs).map { "\(nodeName)_out\($0)" }
        let attrs = attributes.keys.sorted().map { Attribute(name: $0, value: attributes[$0]!) }
        graph.nodes.append(Node(name: nodeName, opType: op, domain: domain, inputs: inputs, outputs: outs, attributes: attrs))
        return outs
    }

    /// Appends a single-output node and returns its output.
    @discardableResult
    public func op(_ op: String, _ inputs: [String], _ attributes: [String: AttributeValue] = [:], name: String? = nil) -> String {
        node(op, inputs, attributes, name: name)[0]
    }

    // MARK: Layers (NCHW, ONNX weight layout [M, C/group, kH, kW])

    /// `gain` scales the weights' bound (gain² their variance): √2 keeps the variance through a
    /// ReLU, as He initialization does.
    public func conv(_ x: String, _ cin: Int, _ cout: Int, kernel: Int, stride: Int = 1, pad: Int = 0,
                     group: Int = 1, dilation: Int = 1, bias: Bool = false, gain: Float = 1, name: String? = nil) -> String {
        let n = name ?? fresh("conv")
        let fanIn = cin / group * kernel * kernel
        let w = randomInitializer(n + ".weight", shape: [cout, cin / group, kernel, kernel], bound: gain * (3 / Float(fanIn)).squareRoot())
        var ins = [x, w]
        if bias { ins.append(randomInitializer(n + ".bias", shape: [cout], bound: 0.1)) }
        return op("Conv", ins, ["kernel_shape": .ints([Int64(kernel), Int64(kernel)]), "strides": .ints([Int64(stride), Int64(stride)]),
                                "pads": .ints([Int64(pad), Int64(pad), Int64(pad), Int64(pad)]), "group": .int(Int64(group)),
                                "dilations": .ints([Int64(dilation), Int64(dilation)])], name: n)
    }

    /// BatchNormalization in inference form with γ=1, β=0, mean=0, var=1 perturbed when random.
    public func batchNorm(_ x: String, _ c: Int, epsilon: Float = 1e-5, name: String? = nil) -> String {
        let n = name ?? fresh("bn")
        let scale = randomWeights ? randomInitializer(n + ".scale", shape: [c], bound: 0.2) : constantInitializer(n + ".scale", shape: [c], value: 1)
        if randomWeights { graph.replaceTensor(scale) { $0 + 1 } }
        let bias = randomInitializer(n + ".bias", shape: [c], bound: 0.1)
        let mean = randomInitializer(n + ".mean", shape: [c], bound: 0.1)
        let varName = constantInitializer(n + ".var", shape: [c], value: 1)
        return op("BatchNormalization", [x, scale, bias, mean, varName], ["epsilon": .float(epsilon)], name: n)
    }

    // MARK: Exporter conventions (torch.onnx.export)

    /// A scalar (or small tensor) in a `Constant` node appended here, i.e. after the producer of
    /// the value it will be combined with and right before its consumer, as torch.onnx.export
    /// places the scalars it traces (Clip bounds, the 3 and 6 of a hard sigmoid).
    public func constant(_ tensor: Tensor, name: String? = nil) -> String {
        op("Constant", [], ["value": .tensor(tensor)], name: name ?? fresh("Constant"))
    }
    public func constant(_ value: Float) -> String { constant(Tensor(scalar: value)) }

    /// SiLU as torch.onnx.export writes it: x · Sigmoid(x).
    public func silu(_ x: String) -> String { op("Mul", [x, op("Sigmoid", [x])]) }
    /// nn.Hardswish at opset ≥ 14: the `HardSwish` operator.
    public func hardSwish(_ x: String) -> String { op("HardSwish", [x]) }
    /// nn.Hardsigmoid: HardSigmoid(α = 1/6, β = 0.5), i.e. clamp(x + 3, 0, 6) / 6.
    public func hardSigmoid(_ x: String) -> String {
        op("HardSigmoid", [x], ["alpha": .float(1.0 / 6.0), "beta": .float(0.5)])
    }
    /// nn.Hardswish below opset 14 (torch's opset-9 symbolic): x · HardSigmoid(x).
    public func hardSwishAsMul(_ x: String) -> String { op("Mul", [x, hardSigmoid(x)]) }
    /// A hard sigmoid written out, as `relu6(x + 3) / 6` code (and the aten decomposition)
    /// exports: Add(x, 3) → Clip(0, 6) → Div(6), every scalar in its own `Constant` node.
    public func hardSigmoidAsClip(_ x: String) -> String {
        let shifted = op("Add", [x, constant(3)])
        let lo = constant(0), hi = constant(6)
        let clipped = op("Clip", [shifted, lo, hi])
        return op("Div", [clipped, constant(6)])
    }

    public func relu(_ x: String) -> String { op("Relu", [x]) }
    /// ReLU6 as exporters write it: Clip(min 0, max 6) with input-form bounds (opset ≥ 11).
    public func relu6(_ x: String) -> String {
        let lo = initializer(fresh("clip_min"), Tensor(scalar: Float(0)))
        let hi = initializer(fresh("clip_max"), Tensor(scalar: Float(6)))
        return op("Clip", [x, lo, hi])
    }
    public func add(_ a: String, _ b: String) -> String { op("Add", [a, b]) }

    public func maxPool(_ x: String, kernel: Int, stride: Int, pad: Int = 0, ceil: Bool = false) -> String {
        op("MaxPool", [x], ["kernel_shape": .ints([Int64(kernel), Int64(kernel)]), "strides": .ints([Int64(stride), Int64(stride)]),
                            "pads": .ints([Int64(pad), Int64(pad), Int64(pad), Int64(pad)]), "ceil_mode": .int(ceil ? 1 : 0)])
    }

    public func globalAveragePool(_ x: String) -> String { op("GlobalAveragePool", [x]) }
    public func flatten(_ x: String, axis: Int = 1) -> String { op("Flatten", [x], ["axis": .int(Int64(axis))]) }
    public func concat(_ xs: [String], axis: Int) -> String { op("Concat", xs, ["axis": .int(Int64(axis))]) }

    /// Fully connected layer as Gemm(x, W^T, b) with W [out, in], as torch.onnx exports Linear.
    /// `weightThroughIdentity`: the weight reaches the Gemm through an `Identity` node placed
    /// first in the graph, as torch.onnx.export writes a parameter it deduplicated or that is
    /// shared.
    public func linear(_ x: String, _ fin: Int, _ fout: Int, bias: Bool = true, weightThroughIdentity: Bool = false,
                       gain: Float = 1, name: String? = nil) -> String {
        let n = name ?? fresh("fc")
        var w = randomInitializer(n + ".weight", shape: [fout, fin], bound: gain * (3 / Float(fin)).squareRoot())
        if weightThroughIdentity {
            w = op("Identity", [w], name: n + ".weight_identity")
            graph.nodes.insert(graph.nodes.removeLast(), at: 0)
        }
        var ins = [x, w]
        if bias { ins.append(randomInitializer(n + ".bias", shape: [fout], bound: 0.1)) }
        return op("Gemm", ins, ["transB": .int(1), "alpha": .float(1), "beta": .float(1)], name: n)
    }

    public func build(opset: Int64 = 17, irVersion: Int64 = 8) -> Model {
        Model(graph: graph, opsetImports: [OpsetImport(domain: "", version: opset)], irVersion: irVersion)
    }
}

extension Graph {
    mutating func replaceTensor(_ name: String, _ f: (Float) -> Float) {
        guard var t = initializer(named: name)?.tensor else { return }
        t.withUnsafeMutableBufferPointer(as: Float.self) { p in for i in p.indices { p[i] = f(p[i]) } }
        try? replaceInitializer(name, with: t)
    }
}

/// SplitMix64 (Steele, Lea & Flood 2014): a tiny, well-mixed, seedable generator.
public struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    public mutating func uniform(_ lo: Float, _ hi: Float) -> Float {
        lo + (hi - lo) * Float(next() >> 40) * (1.0 / Float(1 << 24))
    }
}
