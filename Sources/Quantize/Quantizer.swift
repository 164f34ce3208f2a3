import Foundation
import ModelIR
import Passes
import Runtime
import TensorCore

/// Post-training static quantization to QDQ: weights int8 per output channel (symmetric,
/// [−127, 127]), activations int8 symmetric by default (what TensorRT's explicit quantization
/// takes) or asymmetric uint8, bias int32 with scale = input scale × weight scale.
public struct QuantizeOptions: Sendable {
    public var perChannel = true
    /// Activations symmetric int8 (zero point 0); false: asymmetric uint8.
    public var symmetricActivations = true
    /// Weights in 7 bits ([−64, 64], ONNX Runtime's `reduce_range`), for the U8S8 kernels of
    /// x86 CPUs without VNNI whose 16-bit intermediate sums can saturate.
    public var reduceRange = false
    /// QDQ pairs (default) or QOperator nodes (QLinearConv, QLinearMatMul, com.microsoft QGemm, …).
    public var format: QuantFormat = .qdq
    /// Cross-layer equalization of Conv → (Relu) → Conv pairs before calibration.
    public var equalize = false
    /// Subtract the int8 weights' expected output shift per channel from the bias.
    public var biasCorrection = false
    /// Operators quantized (weighted, activation and pass-through ops; see `QuantPlan`).
    public var ops: Set<String> = QuantizeOptions.allOps
    /// Glob patterns on node names left in float.
    public var exclude: [String] = []
    /// Quantize the activation functions a weighted op feeds (SiLU's Sigmoid and Mul, HardSwish,
    /// HardSigmoid, LeakyRelu, Sigmoid) at their inputs as ONNX Runtime's registry does. Off by
    /// default: like a Relu/Clip they are left in float as the Conv's fused epilogue (TensorRT
    /// and compress's executor fuse them), so no rounding point sits inside a Conv → SiLU.
    public var quantizeEpilogues = false
    public init() {}

    var activationRange: QuantRange { QuantRange.of(symmetricActivations ? .int8 : .uint8, symmetric: symmetricActivations) }
    static let weightRange = QuantRange.of(.int8, symmetric: true)
    /// ONNX Runtime's weight range: [−127, 127], or [−64, 64] with `reduce_range`.
    public var weightQuantRange: QuantRange { reduceRange ? QuantRange(dtype: .int8, qmin: -64, qmax: 64) : QuantizeOptions.weightRange }
}

/// How the quantized model is written.
public enum QuantFormat: String, CaseIterable, Sendable {
    /// QuantizeLinear → DequantizeLinear pairs around float ops (opset ≥ 13 per channel).
    case qdq
    /// Integer operators (QLinearConv, QLinearMatMul; com.microsoft QGemm, QLinearAdd, …) with
    /// QuantizeLinear at the float inputs and DequantizeLinear where float is read again.
    case qoperator
}

public enum QuantizeError: Error, CustomStringConvertible {
    case nothingToQuantize(String)
    case invalid(String)
    public var description: String {
        switch self {
        case .nothingToQuantize(let why): return "nothing to quantize: \(why)"
        case .invalid(let why): return why
        }
    }
}

/// Running min/max of each observed tensor over the calibration samples (non-saturating: the
/// threshold is the largest |x|), merged sample by sample so memory does not grow with the data.
public struct MinMaxCalibrator: Sendable {
    public private(set) var ranges: [String: (min: Float, max: Float)] = [:]
    public private(set) var samples = 0
    /// The ranges found by calibration (`CalibrationStats.calibrator`) over `samples` samples.
    public init(ranges: [String: (min: Float, max: Float)] = [:], samples: Int = 0) {
        self.ranges = ranges
        self.samples = samples
    }

    /// Saturates a tensor's range at threshold `t` (a saturating method's choice): the observed
    /// [min, max] clipped to [−t, t].
    public mutating func saturate(_ name: String, at t: Float) {
        guard let r = ranges[name] else { return }
        ranges[name] = (max(r.min, -t), min(r.max, t))
    }

    /// Sets a tensor's range outright (mean-minmax: the means of the per-sample extremes), the
    /// threshold recorded for the report.
    public mutating func setRange(_ name: String, _ r: (min: Float, max: Float), threshold t: Float) {
        ranges[name] = r
        thresholds[name] = t
    }

    /// Thresholds chosen by a saturating method, by tensor (empty for minmax).
    public internal(set) var thresholds: [String: Float] = [:]
}

/// What was quantized.
public struct QuantizeSummary: Encodable, Sendable {
    public struct Tensor: Encodable, Sendable {
        public let name: String
        public let min: Float
        public let max: Float
        /// The saturating method's threshold (the range above is clipped to ±threshold); nil for minmax.
        public let threshold: Float?
        public let scale: Float
        public let zero_point: Int
        /// 20·log10(‖x‖ / ‖x − x̂‖) between the float activation and its quantize-dequantize on the
        /// calibration samples (ONNX Runtime's qdq_loss_debug measure); nil until measured.
        public var sqnr_db: Double?
    }
    public let nodes: [String]
    public var activations: [Tensor]
    public let weights: Int
    public let samples: Int
}

public enum Quantizer {
    /// The deployed graph (BN folded, Constants lifted, Identities removed: the shared passes;
    /// then cross-layer equalization with `options.equalize`), the nodes to quantize in it and
    /// the activation values to calibrate (their inputs; with QOperator also their outputs).
    /// Raises the default-domain opset to 13 (`OpsetUpgrade`, exact) when QDQ needs it: per-channel
    /// weights need DequantizeLinear-13's `axis`, and any QDQ needs QuantizeLinear (opset 10), as
    /// ONNX Runtime's quantizer does. Returns the opset the model had, or nil when unchanged.
    public static func raiseOpsetIfNeeded(_ m: inout Model, options: QuantizeOptions) throws -> Int? {
        guard options.format == .qdq, let opset = m.opset(for: ""), opset < 13, options.perChannel || opset < 10 else { return nil }
        do {
            return try OpsetUpgrade.upgrade(&m).map { Int($0) }
        } catch let e as OpsetUpgrade.Refusal {
            throw QuantizeError.invalid("\(e.message) (the model is opset \(opset); per-channel QDQ needs 13\(opset >= 10 ? ": --per-tensor keeps opset \(opset)" : ""))")
        }
    }

    public static func prepare(_ model: Model, options: QuantizeOptions) throws -> (model: Model, nodes: [Int], activations: [String]) {
        var m = model
        _ = try PassPipeline.exportable.run(on: &m.graph)
        // An operator the executor cannot run stops here, named, before the plan (whose shape
        // inference would otherwise lose the types past it) and before calibration.
        for n in m.graph.nodes {
            let domain = n.isDefaultDomain ? "" : n.domain
            let opset = m.opset(for: domain) ?? 1
            if OpRegistry.standard.implementation(n.opType, domain: domain, opset: opset) == nil {
                throw RuntimeError.unsupported(op: n.opType, domain: n.domain, opset: opset, node: n.label)
            }
        }
        if options.equalize { _ = try CrossLayerEqualization.apply(&m.graph, exclude: options.exclude) }
        let plan = Quantizer.plan(m, options: options)
        guard plan.roles.values.contains(where: { $0 != .passThrough }) else {
            throw QuantizeError.nothingToQuantize("the model has no Conv/ConvTranspose/Gemm/MatMul with a float32 constant weight and no float32 "
                                                  + QuantizeOptions.activationOps.sorted().joined(separator: "/") + " input"
                                                  + (options.exclude.isEmpty ? "" : " outside --exclude"))
        }
        switch options.format {
        case .qdq: return (m, plan.nodes, plan.calibrated)
        case .qoperator:
            let q = QOperatorWriter.plan(m, options: options)
            guard !q.nodes.isEmpty else { throw QOperatorWriter.nothingConvertible }
            return (m, q.nodes, q.calibrated)
        }
    }

    /// An executor whose hooks can see every value in `names` (`Executor.observing`).
    public static func observing(_ model: Model, names: [String], registry: OpRegistry = .standard) throws -> Executor {
        try Executor.observing(model, names: names, registry: registry)
    }

    /// The model a QDQ file computes, with each DequantizeLinear of a constant (weights, biases)
    /// replaced by the float tensor it produces: the same function, without dequantizing every
    /// weight on every run (the quality pass runs it once per sample).
    public static func withConstantDequantizeFolded(_ q: Model) -> Model {
        var m = q
        var keep: [Node] = []
        for n in m.graph.nodes {
            guard n.isDefaultDomain, n.opType == "DequantizeLinear", n.inputs.count >= 2,
                  let x = m.graph.constantTensor(named: n.inputs[0]), let s = m.graph.constantTensor(named: n.inputs[1]),
                  s.dtype == .float32 else { keep.append(n); continue }
            let zp = n.inputs.count > 2 && !n.inputs[2].isEmpty ? m.graph.constantTensor(named: n.inputs[2]) : nil
            let xv = x.converted(to: .float64).scalars(as: Double.self), sv = s.scalars(as: Float.self)
            let zv = zp.map { $0.converted(to: .float64).scalars(as: Double.self) } ?? [0]
            let axis0 = Int(n.int("axis") ?? 1), axis = axis0 < 0 ? axis0 + x.rank : axis0
            let perAxis = sv.count > 1
            let dim = perAxis ? x.shape[axis] : 1, inner = perAxis ? x.shape[(axis + 1)...].reduce(1, *) : 1
            var out = [Float](repeating: 0, count: xv.count)
            for i in xv.indices {
                let c = perAxis ? (i / inner) % dim : 0
                // DequantizeLinear: (x − zero point)·scale, in Float as the operator computes it.
                out[i] = Float(xv[i] - zv[zv.count > 1 ? c : 0]) * sv[c]
            }
            m.graph.addInitializer(Initializer(name: n.outputs[0], tensor: TensorCore.Tensor(shape: x.shape, scalars: out)))
        }
        m.graph.nodes = keep
        _ = m.graph.cleanup()
        return m
    }

    /// Writes the quantized model in `options.format` (QDQ or QOperator); `inputMeans` (by node
    /// index, `Quantizer.inputMeans`) is needed for `options.biasCorrection`.
    public static func write(_ deployed: Model, nodes: [Int], calibration: MinMaxCalibrator, options: QuantizeOptions,
                             inputMeans: [Int: BiasCorrection.InputMeans] = [:]) throws -> (Model, QuantizeSummary) {
        switch options.format {
        case .qdq: return try writeQDQ(deployed, nodes: nodes, calibration: calibration, options: options, inputMeans: inputMeans)
        case .qoperator: return try QOperatorWriter.write(deployed, nodes: nodes, calibration: calibration, options: options, inputMeans: inputMeans)
        }
    }

    static func zeroPoint(_ v: Int, _ dtype: DType, count: Int = 1, shape: [Int] = []) -> TensorCore.Tensor {
        switch dtype {
        case .uint8: return TensorCore.Tensor(shape: shape, scalars: [UInt8](repeating: UInt8(v), count: count))
        case .int32: return TensorCore.Tensor(shape: shape, scalars: [Int32](repeating: Int32(v), count: count))
        default: return TensorCore.Tensor(shape: shape, scalars: [Int8](repeating: Int8(v), count: count))
        }
    }

    /// An activation's scale and zero point from its calibrated (or fixed) range.
    static func activationParams(_ a: String, fixed: ClosedRange<Float>?, calibration: MinMaxCalibrator, options: QuantizeOptions) throws -> (QuantParams, QuantizeSummary.Tensor) {
        let r: (min: Float, max: Float)
        if let fixed { r = (fixed.lowerBound, fixed.upperBound) } else {
            guard let c = calibration.ranges[a], c.min <= c.max else { throw QuantizeError.invalid("activation '\(a)' was never observed during calibration") }
            r = c
        }
        let p = QuantParams(rmin: r.min, rmax: r.max, range: options.activationRange, symmetric: options.symmetricActivations)
        return (p, .init(name: a, min: r.min, max: r.max, threshold: calibration.thresholds[a], scale: p.scale, zero_point: p.zeroPoint, sqnr_db: nil))
    }

    /// A weighted node's quantized weight (int8, per channel along `axis` or per tensor) and
    /// bias (int32, scale = input scale × weight scale), the bias first corrected for the
    /// weights' expected output shift with `options.biasCorrection` (a zero bias is created
    /// for a Conv/ConvTranspose/Gemm that has none).
    struct QuantizedWeight {
        var weight: TensorCore.Tensor
        var params: [QuantParams]
        var axis: Int
        var bias: (q: TensorCore.Tensor, scales: [Float])?
        var biasCreated = false
        var corrected = false
    }

    static func weightAxis(_ n: Node, rank: Int) -> Int {
        switch n.opType {
        case "Conv": return 0
        case "ConvTranspose": return 1
        case "Gemm": return (n.int("transB") ?? 0) == 1 ? 0 : 1
        default: return rank - 1
        }
    }

    static func quantizeWeighted(_ g: Graph, _ n: Node, inputScale: Float?, options: QuantizeOptions, inputMean: BiasCorrection.InputMeans?) -> QuantizedWeight? {
        guard let w = g.constantTensor(named: n.inputs[1]), w.dtype == .float32 else { return nil }
        let axis = weightAxis(n, rank: w.rank)
        let range = options.weightQuantRange
        let (qw, wp) = WeightQuantizer.quantize(w, axis: axis, perChannel: options.perChannel, range: range, symmetric: true)
        var out = QuantizedWeight(weight: qw, params: wp, axis: axis)
        guard n.opType != "MatMul", let inputScale else { return out }
        let alpha = n.float("alpha") ?? 1, beta = n.float("beta") ?? 1
        guard n.opType != "Gemm" || (alpha == 1 && beta == 1) else { return out }
        let channels = w.shape[axis]
        var bias: [Float]?
        if n.inputs.count > 2, !n.inputs[2].isEmpty {
            guard let b = g.constantTensor(named: n.inputs[2]), b.dtype == .float32, b.rank == 1, b.count == channels else { return out }
            bias = b.scalars(as: Float.self)
        }
        if options.biasCorrection, let mean = inputMean,
           let shift = BiasCorrection.shift(weight: w, quantized: qw, params: wp, axis: axis, node: n, mean: mean) {
            if bias == nil { out.biasCreated = true }
            var b = bias ?? [Float](repeating: 0, count: channels)
            for c in b.indices { b[c] = Float(Double(b[c]) - shift[c]) }
            bias = b
            out.corrected = true
        }
        guard let bias, wp.count == channels || wp.count == 1 else { return out }
        out.bias = WeightQuantizer.quantizeBias(TensorCore.Tensor(shape: [channels], scalars: bias), inputScale: inputScale, weightScales: wp.map(\.scale))
        return out
    }

    /// Writes QDQ pairs into the deployed model (`QuantPlan`): a QuantizeLinear →
    /// DequantizeLinear pair on each quantized activation (read by the quantized nodes only;
    /// other readers keep float; a pass-through output reuses its input's scale and zero point),
    /// each weight stored as int8 with a per-channel DequantizeLinear (axis 0 for Conv, 1 for
    /// ConvTranspose, the output axis for Gemm/MatMul), and each bias as int32. Names follow
    /// ONNX Runtime's quantizer (`X_scale`, `X_zero_point`, `W_quantized`, …).
    public static func writeQDQ(_ deployed: Model, nodes: [Int], calibration: MinMaxCalibrator, options: QuantizeOptions,
                                inputMeans: [Int: BiasCorrection.InputMeans] = [:]) throws -> (Model, QuantizeSummary) {
        var m = deployed
        let opset = m.opset(for: "") ?? 0
        guard opset >= 10 else { throw QuantizeError.invalid("the model's opset \(opset) predates QuantizeLinear (opset 10)") }
        if options.perChannel && opset < 13 {
            throw QuantizeError.invalid("per-channel weights need opset ≥ 13 (DequantizeLinear's axis); this model is opset \(opset): use --per-tensor")
        }
        let plan = Quantizer.plan(deployed, options: options, only: Set(nodes))
        var names = NameAllocator(m.graph)
        var params: [String: QuantParams] = [:]
        var qnames: [String: (scale: String, zero: String)] = [:]
        var summary: [QuantizeSummary.Tensor] = []
        var insert: [(Node, before: Int)] = []
        var rewired: [(Int, Int, String)] = []
        let range = options.activationRange
        // Activations: Q → DQ right before the first quantized reader (roots before the
        // pass-through outputs that share their scale: a root's reader precedes them).
        for a in plan.tensors {
            let root = plan.root(a)
            let s: String, z: String
            if root != a, let shared = qnames[root] {
                (s, z) = shared
                params[a] = params[root]
            } else {
                let (p, entry) = try activationParams(a, fixed: plan.fixedRanges[a], calibration: calibration, options: options)
                params[a] = p
                summary.append(entry)
                s = names.fresh(a + "_scale"); z = names.fresh(a + "_zero_point")
                m.graph.addInitializer(Initializer(name: s, tensor: TensorCore.Tensor(scalar: p.scale)))
                m.graph.addInitializer(Initializer(name: z, tensor: zeroPoint(p.zeroPoint, range.dtype)))
            }
            qnames[a] = (s, z)
            let at = plan.readers[a]!.map(\.node).min()!
            let q = names.fresh(a + "_QuantizeLinear_Output"), dq = names.fresh(a + "_DequantizeLinear_Output")
            insert.append((Node(name: names.fresh(a + "_QuantizeLinear"), opType: "QuantizeLinear", inputs: [a, s, z], outputs: [q]), before: at))
            insert.append((Node(name: names.fresh(a + "_DequantizeLinear"), opType: "DequantizeLinear", inputs: [q, s, z], outputs: [dq]), before: at))
            for r in plan.readers[a]! { rewired.append((r.node, r.slot, dq)) }
        }
        // Weights and biases.
        var weightCount = 0
        for i in plan.weighted {
            let n = m.graph.nodes[i]
            guard let qw = quantizeWeighted(m.graph, n, inputScale: params[n.inputs[0]]?.scale, options: options, inputMean: inputMeans[i]) else { continue }
            let base = n.inputs[1], wp = qw.params
            let qName = names.fresh(base + "_quantized"), s = names.fresh(base + "_scale"), z = names.fresh(base + "_zero_point")
            let perAxis = options.perChannel
            m.graph.addInitializer(Initializer(name: qName, tensor: qw.weight))
            m.graph.addInitializer(Initializer(name: s, tensor: perAxis ? TensorCore.Tensor(shape: [wp.count], scalars: wp.map(\.scale)) : TensorCore.Tensor(scalar: wp[0].scale)))
            m.graph.addInitializer(Initializer(name: z, tensor: perAxis ? zeroPoint(0, .int8, count: wp.count, shape: [wp.count]) : zeroPoint(0, .int8)))
            let dq = names.fresh(base + "_DequantizeLinear_Output")
            var attrs: [Attribute] = []
            if perAxis { attrs.append(Attribute(name: "axis", value: .int(Int64(qw.axis)))) }
            insert.append((Node(name: names.fresh(base + "_DequantizeLinear"), opType: "DequantizeLinear", inputs: [qName, s, z], outputs: [dq], attributes: attrs), before: i))
            rewired.append((i, 1, dq))
            weightCount += 1
            // Bias: int32, scale = input scale × weight scale, zero point 0.
            if let (qb, bs) = qw.bias {
                let bname = qw.biasCreated ? n.label + "_bias" : n.inputs[2]
                let bq = names.fresh(bname + "_quantized"), bsn = names.fresh(bname + "_quantized_scale"), bz = names.fresh(bname + "_quantized_zero_point")
                let perChannelBias = bs.count > 1
                m.graph.addInitializer(Initializer(name: bq, tensor: qb))
                m.graph.addInitializer(Initializer(name: bsn, tensor: perChannelBias ? TensorCore.Tensor(shape: [bs.count], scalars: bs) : TensorCore.Tensor(scalar: bs[0])))
                m.graph.addInitializer(Initializer(name: bz, tensor: perChannelBias ? zeroPoint(0, .int32, count: bs.count, shape: [bs.count]) : zeroPoint(0, .int32)))
                let bdq = names.fresh(bname + "_DequantizeLinear_Output")
                insert.append((Node(name: names.fresh(bname + "_DequantizeLinear"), opType: "DequantizeLinear", inputs: [bq, bsn, bz], outputs: [bdq],
                                    attributes: perChannelBias ? [Attribute(name: "axis", value: .int(0))] : []), before: i))
                if qw.biasCreated {
                    while m.graph.nodes[i].inputs.count < 3 { m.graph.nodes[i].inputs.append("") }
                }
                rewired.append((i, 2, bdq))
            }
        }
        for (i, slot, name) in rewired { m.graph.nodes[i].inputs[slot] = name }
        try m.graph.insertNodes(insert)
        _ = m.graph.cleanup()
        let labels = plan.nodes.map { deployed.graph.nodes[$0].label }
        return (m, QuantizeSummary(nodes: labels, activations: summary, weights: weightCount, samples: calibration.samples))
    }
}
