import Foundation
import ModelIR
import Runtime
import TensorCore

/// Per-tensor quantization noise measured inside the quantized model: each QuantizeLinear's input
/// x (the activation as the quantized model computes it) against its quantize-dequantize x̂ with
/// the model's scale and zero point, summed over the samples. This is ONNX Runtime's
/// `qdq_loss_debug` "qdq_err" (pre-QDQ vs post-QDQ): SQNR = 10·log10(Σx² / Σ(x − x̂)²).
/// QuantizeLinear's semantics: x/scale in Float, round half to even, add the zero point, saturate;
/// dequantize (q − z)·scale. NaN values are left out.
public struct QDQNoise: Sendable {
    public private(set) var signal: [String: Double] = [:], noise: [String: Double] = [:]
    public init() {}

    public mutating func add(_ name: String, _ t: Tensor, scale: Float, zeroPoint: Int, range: QuantRange) {
        guard t.dtype.isFloatingPoint else { return }
        let f = t.dtype == .float32 ? t : t.converted(to: .float32)
        let (s, n) = f.withUnsafeBufferPointer(as: Float.self) { Self.noise($0, scale: scale, zeroPoint: zeroPoint, range: range) }
        add(name, signal: s, noise: n)
    }

    /// Σx² and Σ(x − x̂)² of one buffer, eight lanes at a time (`fakeQuantize` without an output).
    static func noise(_ v: UnsafeBufferPointer<Float>, scale: Float, zeroPoint: Int, range: QuantRange) -> (Double, Double) {
        fakeQuantize(v, into: nil, scale: scale, zeroPoint: zeroPoint, range: range)
    }

    /// Writes x̂, the quantize-dequantize of each x, to `out` (when given) and returns Σx² and
    /// Σ(x − x̂)². Clamping x/scale to [qmin − z, qmax − z] before rounding equals rounding then
    /// saturating (the bounds are integers); rounding half to even is (t + 1.5·2²³) − 1.5·2²³,
    /// exact for |t| < 2²², which the clamp ensures. x̂ = round(t)·scale is bit for bit what
    /// QuantizeLinear followed by DequantizeLinear computes ((q − z) is the integer round(t));
    /// NaN gives 0 (QuantizeLinear maps it to the zero point) and adds nothing to the sums.
    /// The sums are taken in blocks of 512 values (eight Float lanes, then Double), the blocks
    /// added in order: the same figures whether the blocks ran on one thread or several.
    static func fakeQuantize(_ v: UnsafeBufferPointer<Float>, into out: UnsafeMutablePointer<Float>?,
                             scale: Float, zeroPoint: Int, range: QuantRange) -> (Double, Double) {
        let count = v.count
        guard let base = v.baseAddress, count > 0 else { return (0, 0) }
        let block = 512
        let blocks = (count + block - 1) / block
        let z = Float(zeroPoint), lo = Float(range.qmin) - z, hi = Float(range.qmax) - z
        let partial = UnsafeMutablePointer<(Double, Double)>.allocate(capacity: blocks)
        defer { partial.deallocate() }
        let shared = UncheckedSendable((base, out, partial))
        Parallel.forRanges(count: blocks, workPerItem: block) { r in
            let (base, out, partial) = shared.value
            for b in r {
                let start = b * block
                let sums = QuantizationKernels.fakeQuantize(base + start, into: out.map { $0 + start }, count: min(block, count - start),
                                                            scale: scale, lo: lo, hi: hi)
                partial[b] = (sums.signal, sums.noise)
            }
        }
        var s = 0.0, n = 0.0
        for b in 0..<blocks { s += partial[b].0; n += partial[b].1 }
        return (s, n)
    }

    /// Adds the sums of one tensor measured elsewhere (`fakeQuantize`).
    mutating func add(_ name: String, signal s: Double, noise n: Double) {
        signal[name, default: 0] += s
        noise[name, default: 0] += n
    }

    /// Adds the sums of other samples.
    public mutating func merge(_ other: QDQNoise) {
        for (name, s) in other.signal { signal[name, default: 0] += s }
        for (name, n) in other.noise { noise[name, default: 0] += n }
    }

    /// nil when there is no noise (or the tensor was never seen).
    public func sqnr(_ name: String) -> Double? {
        guard let n = noise[name], n > 0, let s = signal[name] else { return nil }
        return 10 * log10(max(s, .leastNormalMagnitude) / n)
    }
}

/// End-to-end quality of a quantized model against the float one, over samples: output SQNR
/// 10·log10(Σ float² / Σ (float − quantized)²) over every float output element; cosine
/// similarity per sample (all float outputs flattened together), averaged over samples; top-1
/// agreement of the first output when it holds class scores; top-1 accuracy of both models when
/// the samples have labels.
public struct OutputQuality: Sendable {
    public private(set) var signal = 0.0, noise = 0.0, cosineSum = 0.0, samples = 0
    public private(set) var same = 0, rows = 0, labelled = 0, floatCorrect = 0, quantCorrect = 0
    private var classifier = true
    public init() {}

    public mutating func add(reference: [Tensor], candidate: [Tensor], label: Int?) {
        var dot = 0.0, aa = 0.0, bb = 0.0
        for (x, y) in zip(reference, candidate) where x.dtype.isFloatingPoint && x.shape == y.shape {
            let u = x.converted(to: .float64).scalars(as: Double.self), v = y.converted(to: .float64).scalars(as: Double.self)
            for (p, q) in zip(u, v) {
                signal += p * p; noise += (p - q) * (p - q)
                dot += p * q; aa += p * p; bb += q * q
            }
        }
        samples += 1
        cosineSum += aa > 0 && bb > 0 ? dot / (aa.squareRoot() * bb.squareRoot()) : (aa == bb ? 1 : 0)
        if classifier, let a = reference.first.flatMap(ClassScores.argmax), let b = candidate.first.flatMap(ClassScores.argmax), a.count == b.count {
            same += zip(a, b).filter { $0 == $1 }.count
            rows += a.count
            if let label {
                labelled += a.count
                floatCorrect += a.filter { $0 == label }.count
                quantCorrect += b.filter { $0 == label }.count
            }
        } else {
            classifier = false
        }
    }

    /// Adds the figures of other samples.
    public mutating func merge(_ o: OutputQuality) {
        signal += o.signal; noise += o.noise; cosineSum += o.cosineSum; samples += o.samples
        same += o.same; rows += o.rows; labelled += o.labelled
        floatCorrect += o.floatCorrect; quantCorrect += o.quantCorrect
        classifier = classifier && o.classifier
    }

    /// nil when the outputs are identical (infinite SQNR).
    public var sqnrDB: Double? { noise > 0 ? 10 * log10(max(signal, .leastNormalMagnitude) / noise) : nil }
    public var cosine: Double? { samples > 0 ? cosineSum / Double(samples) : nil }
    public var agreement: Double? { classifier && rows > 0 ? Double(same) / Double(rows) : nil }
    public var floatAccuracy: Double? { classifier && labelled > 0 ? Double(floatCorrect) / Double(labelled) : nil }
    public var quantizedAccuracy: Double? { classifier && labelled > 0 ? Double(quantCorrect) / Double(labelled) : nil }
}

/// One evaluation of a quantized model on samples against the float model's outputs.
public struct QualityResult: Sendable {
    public var output = OutputQuality()
    public var tensors = QDQNoise()
    public init() {}

    /// Adds the result of other samples (the report adds each sample's in sample order).
    public mutating func merge(_ other: QualityResult) {
        output.merge(other.output)
        tensors.merge(other.tensors)
    }
}

/// Runs the quantized model (QDQ simulated in float by compress's executor, constant
/// DequantizeLinear folded) over samples, measuring each activation's QDQ noise in it and its
/// outputs against the float reference outputs.
///
/// Each activation's QuantizeLinear → DequantizeLinear pair (per-tensor int8/uint8, the
/// quantized value read only by its DequantizeLinear) runs as one internal fake-quantize step
/// (`QualityPass.fakeQuantize`): the same x̂ bit for bit, in one pass over x that also takes
/// the pair's noise sums, instead of an int8 tensor, a float copy and a third pass for the noise.
/// Pairs of another form (a QOperator model's QuantizeLinear feeding QLinear operators) run as
/// written, their input observed by a hook.
public struct QualityPass {
    public let executor: Executor
    let params: [String: QuantParams]
    let range: QuantRange
    let outputs: [String]
    /// Activations whose noise a hook measures (their QuantizeLinear was not fused).
    let hooked: Set<String>
    let sink: FakeQuantSink

    /// The internal domain and operator of a fused QuantizeLinear → DequantizeLinear pair: inputs
    /// (x, scale, zero point) as QuantizeLinear's, output DequantizeLinear's. Never written out.
    public static let fakeQuantizeDomain = "compress.internal", fakeQuantize = "FakeQuantize"

    /// `activations`: name → the scale and zero point the quantized model uses for it.
    public init(quantized q: Model, activations: [String: QuantParams], range: QuantRange) throws {
        var folded = Quantizer.withConstantDequantizeFolded(q)
        // Only float values the quantized model computes (a QOperator model keeps many of the
        // activations in integers inside its QLinear operators: no QDQ noise to measure there).
        var present = Set(folded.graph.inputs.map(\.name))
        for n in folded.graph.nodes where n.opType == "QuantizeLinear" && !n.inputs.isEmpty { present.insert(n.inputs[0]) }
        let observed = activations.filter { present.contains($0.key) }
        let fused = Self.fusePairs(&folded)
        let sink = FakeQuantSink(params: observed, range: range)
        let registry = OpRegistry.standard.copy()
        registry.register(Self.fakeQuantize, domain: Self.fakeQuantizeDomain, since: 1, kernel: { inputs, ctx in
            try sink.run(inputs, ctx)
        }, infer: { types, _, ctx in [try ctx.required(types, 0)] })
        hooked = Set(observed.keys).subtracting(fused)
        executor = try Quantizer.observing(folded, names: Array(hooked), registry: registry)
        params = observed
        self.range = range
        self.sink = sink
        outputs = q.graph.outputs.map(\.name)
    }

    /// Replaces each per-tensor QuantizeLinear → DequantizeLinear pair whose quantized value only
    /// that DequantizeLinear reads (same scale and zero point, int8 or uint8, no attributes) by one
    /// fake-quantize node at the QuantizeLinear's place. Returns the inputs (x) of the fused pairs.
    static func fusePairs(_ m: inout Model) -> Set<String> {
        let g = m.graph
        let index = UseDefIndex(g)
        var drop = Set<Int>(), fusedInputs = Set<String>()
        var nodes = g.nodes
        for (i, n) in g.nodes.enumerated() where n.isDefaultDomain && n.opType == "QuantizeLinear" && n.inputs.count == 3 && n.outputs.count == 1 {
            let qv = n.outputs[0]
            guard n.attributes.isEmpty, !index.isGraphOutput(qv), index.readCount(of: qv) == 1,
                  let r = index.readers(of: qv).first, r.slot == 0, !drop.contains(r.node) else { continue }
            let dq = g.nodes[r.node]
            guard dq.isDefaultDomain, dq.opType == "DequantizeLinear", dq.attributes.isEmpty, dq.inputs.count == 3, dq.outputs.count == 1,
                  dq.inputs[1] == n.inputs[1], dq.inputs[2] == n.inputs[2],
                  let s = g.constantTensor(named: n.inputs[1]), s.dtype == .float32, s.count == 1,
                  let z = g.constantTensor(named: n.inputs[2]), z.dtype == .int8 || z.dtype == .uint8, z.count == 1 else { continue }
            nodes[i] = Node(name: n.name, opType: fakeQuantize, domain: fakeQuantizeDomain, inputs: n.inputs, outputs: dq.outputs)
            drop.insert(r.node)
            fusedInputs.insert(n.inputs[0])
        }
        guard !drop.isEmpty else { return [] }
        m.graph.nodes = nodes.enumerated().filter { !drop.contains($0.offset) }.map(\.element)
        m.opsetImports.append(OpsetImport(domain: fakeQuantizeDomain, version: 1))
        return fusedInputs
    }

    /// One sample: `reference` are the float model's outputs in graph-output order.
    public func add(_ feeds: [String: Tensor], reference: [Tensor], label: Int?, into r: inout QualityResult, perTensor: Bool = true) throws {
        r.merge(try measure(feeds, reference: reference, label: label, perTensor: perTensor))
    }

    /// One sample's result alone (`QualityResult.merge` adds it to others'). Safe to call from
    /// several threads at once: each run's noise sums are kept apart (`FakeQuantSink`).
    public func measure(_ feeds: [String: Tensor], reference: [Tensor], label: Int?, perTensor: Bool = true) throws -> QualityResult {
        var r = QualityResult()
        var noise = QDQNoise()
        let names = perTensor ? hooked : []
        let run = sink.begin(measuring: perTensor)
        defer { sink.end(run) }
        let out = try executor.run(feeds, hooks: ExecutionHooks(names: names) { name, t in
            if let p = params[name] { noise.add(name, t, scale: p.scale, zeroPoint: p.zeroPoint, range: range) }
        })
        for (name, sums) in run.sums { noise.add(name, signal: sums.0, noise: sums.1) }
        r.tensors = noise
        r.output.add(reference: reference, candidate: outputs.map { out[$0]! }, label: label)
        return r
    }
}

/// The fused fake-quantize kernel of one `QualityPass`, and the noise sums it took during the
/// current run (one entry per activation, the first fused pair reading it: a hook too sees a
/// value once per run).
final class FakeQuantSink: @unchecked Sendable {
    let params: [String: QuantParams]
    let range: QuantRange

    /// One run's sums; the kernel finds its run by the thread it is called on (a plan's steps
    /// run on the thread that called `Executor.run`), so runs on different threads stay apart.
    final class Run {
        let measuring: Bool
        fileprivate(set) var sums: [(String, (Double, Double))] = []
        fileprivate var seen: Set<String> = []
        init(measuring: Bool) { self.measuring = measuring }
    }
    private let lock = NSLock()
    private var runs: [pthread_t: Run] = [:]

    init(params: [String: QuantParams], range: QuantRange) {
        self.params = params
        self.range = range
    }

    func begin(measuring m: Bool) -> Run {
        let r = Run(measuring: m)
        lock.lock(); runs[pthread_self()] = r; lock.unlock()
        return r
    }

    func end(_ r: Run) {
        lock.lock(); if runs[pthread_self()] === r { runs[pthread_self()] = nil }; lock.unlock()
    }

    private func current() -> Run? {
        lock.lock(); defer { lock.unlock() }
        return runs[pthread_self()]
    }

    func run(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        let x0 = try ctx.required(inputs, 0), st = try ctx.required(inputs, 1), zt = try ctx.required(inputs, 2)
        // (The quantized activations are float32; a float16 one widens exactly.)
        let x = x0.dtype == .float32 ? x0 : x0.converted(to: .float32)
        guard x0.dtype.isFloatingPoint, st.dtype == .float32, st.count == 1, zt.dtype == .int8 || zt.dtype == .uint8, zt.count == 1 else {
            throw ctx.error("fused QuantizeLinear → DequantizeLinear takes float32 data with one float32 scale and one int8/uint8 zero point")
        }
        let scale = st.withUnsafeBufferPointer(as: Float.self) { $0[0] }
        let zero = zt.dtype == .int8 ? Int(zt.withUnsafeBufferPointer(as: Int8.self) { $0[0] }) : Int(zt.withUnsafeBufferPointer(as: UInt8.self) { $0[0] })
        // QuantizeLinear saturates to the whole integer type.
        let full = zt.dtype == .int8 ? QuantRange(dtype: .int8, qmin: -128, qmax: 127) : QuantRange(dtype: .uint8, qmin: 0, qmax: 255)
        let name = ctx.node.inputs[0]
        var y = Tensor(uninitialized: .float32, shape: x.shape)
        let measured = y.withUnsafeMutableBufferPointer(as: Float.self) { out in
            x.withUnsafeBufferPointer(as: Float.self) { QDQNoise.fakeQuantize($0, into: out.baseAddress, scale: scale, zeroPoint: zero, range: full) }
        }
        if let run = current(), run.measuring, let p = params[name], !run.seen.contains(name) {
            run.seen.insert(name)
            if p.scale.bitPattern == scale.bitPattern && p.zeroPoint == zero && range == full {
                run.sums.append((name, measured))
            } else {
                // The report's parameters differ from the model's here: measure with the report's.
                let other = x.withUnsafeBufferPointer(as: Float.self) { QDQNoise.noise($0, scale: p.scale, zeroPoint: p.zeroPoint, range: range) }
                run.sums.append((name, other))
            }
        }
        return [y]
    }
}

/// The float side of the report: the deployed float model's outputs per sample, kept from the
/// calibration pass while they fit in a memory budget (so the report does not run the float
/// model again), else recomputed.
public struct ReferenceOutputs {
    public private(set) var kept: [[Tensor]] = []
    public private(set) var bytes = 0
    public private(set) var complete = true
    public let budget: Int
    public init(budget: Int = 256 << 20) { self.budget = budget }

    public mutating func keep(_ outputs: [Tensor]) {
        guard complete else { return }
        let b = outputs.reduce(0) { $0 + $1.count * 4 }
        if bytes + b > budget { complete = false; kept = []; return }
        bytes += b
        kept.append(outputs)
    }
}
