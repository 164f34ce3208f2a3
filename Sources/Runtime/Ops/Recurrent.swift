import ModelIR
import TensorCore

extension StandardOps {
    /// LSTM (opsets 1, 7, 14, 22) and GRU (opsets 1, 3, 7, 14, 22). Opset 14 added `layout`
    /// (batch-major X/Y/states); 22 only widened the types (bfloat16). The equations, gate order
    /// and activation defaults follow ONNX Operators.md; the cells are in
    /// TensorCore/Kernels/Recurrent.swift.
    static func registerSequenceOps(_ r: OpRegistry) {
        for v in [1, 7, 14, 22] {
            r.register("LSTM", since: v, kernel: { i, c in try RecurrentOp(.lstm, c).run(i, c) },
                       infer: { i, _, c in try RecurrentOp(.lstm, c).outputTypes(i, c) })
        }
        for v in [1, 3, 7, 14, 22] {
            r.register("GRU", since: v, kernel: { i, c in try RecurrentOp(.gru, c).run(i, c) },
                       infer: { i, _, c in try RecurrentOp(.gru, c).outputTypes(i, c) })
        }
    }
}

/// Attributes and shape checks shared by LSTM and GRU.
///
/// Inputs: X, W, R, B, sequence_lens, initial_h (and for LSTM initial_c, P). X is
/// `[seq, batch, input]` (layout 0) or `[batch, seq, input]` (layout 1); W is
/// `[dirs, gates·hidden, input]`, R `[dirs, gates·hidden, hidden]`, B `[dirs, 2·gates·hidden]`.
struct RecurrentOp {
    enum Kind { case lstm, gru }
    /// Element types the ops take; float16/bfloat16/float64 run through float32.
    static let floatTypes: Set<DType> = [.float32, .float16, .bfloat16, .float64]
    let kind: Kind
    /// Gates per cell: 4 for LSTM (i, o, f, c), 3 for GRU (z, r, h).
    var gates: Int { kind == .lstm ? 4 : 3 }
    /// Activation functions per direction: f, g, h for LSTM; f, g for GRU.
    var functionsPerDirection: Int { kind == .lstm ? 3 : 2 }
    let directions: Int
    let reverseOnly: Bool
    let batchMajor: Bool
    let hiddenAttribute: Int?
    let clip: Float?

    init(_ kind: Kind, _ ctx: KernelContext) throws {
        self.kind = kind
        let n = ctx.node
        switch n.string("direction") ?? "forward" {
        case "forward": directions = 1; reverseOnly = false
        case "reverse": directions = 1; reverseOnly = true
        case "bidirectional": directions = 2; reverseOnly = false
        case let d: throw ctx.error("direction '\(d)' is not one of forward, reverse, bidirectional")
        }
        let layout = ctx.opset >= 14 ? Int(n.int("layout") ?? 0) : 0
        guard layout == 0 || layout == 1 else { throw ctx.error("layout \(layout) is not 0 or 1") }
        batchMajor = layout == 1
        hiddenAttribute = n.int("hidden_size").map { Int($0) }
        if let h = hiddenAttribute, h < 1 { throw ctx.error("hidden_size \(h) must be positive") }
        clip = n.float("clip")
        if let c = clip, !(c > 0) { throw ctx.error("clip \(c) must be positive") }
    }

    /// The activation functions per direction, from `activations` / `activation_alpha` /
    /// `activation_beta`. Alphas (betas) are consumed in order by the functions that take one,
    /// a missing value meaning that operator's default, as ONNX Runtime reads them.
    func activations(_ ctx: KernelContext) throws -> [[RecurrentActivation]] {
        let k = functionsPerDirection
        let defaults: [String] = kind == .lstm ? ["Sigmoid", "Tanh", "Tanh"] : ["Sigmoid", "Tanh"]
        var names = ctx.node.strings("activations") ?? []
        if names.isEmpty { names = Array(repeating: defaults, count: directions).flatMap { $0 } }
        if names.count == k && directions == 2 { names += names }
        guard names.count == k * directions else {
            throw ctx.error("activations lists \(names.count) functions; \(ctx.node.opType) with \(directions) direction(s) needs \(k * directions)")
        }
        let alphas = ctx.node.floats("activation_alpha") ?? [], betas = ctx.node.floats("activation_beta") ?? []
        var ai = 0, bi = 0
        var fns: [RecurrentActivation] = []
        for name in names {
            var a: Float?, b: Float?
            if RecurrentActivation.usesAlpha(name), ai < alphas.count { a = alphas[ai]; ai += 1 }
            if RecurrentActivation.usesBeta(name), bi < betas.count { b = betas[bi]; bi += 1 }
            guard let f = RecurrentActivation.named(name, alpha: a, beta: b) else {
                throw ctx.error("activation '\(name)' is not one of Sigmoid, Tanh, Relu, Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, HardSigmoid, Elu, Softsign, Softplus")
            }
            fns.append(f)
        }
        return (0..<directions).map { Array(fns[$0 * k..<($0 + 1) * k]) }
    }

    struct Dims { var seq: Int, batch: Int, input: Int, hidden: Int }

    /// Checks every input's shape against X, W and R; returns the problem's sizes.
    func dims(_ types: [TensorInfo?], _ ctx: KernelContext) throws -> Dims {
        let x = try ctx.required(types, 0), w = try ctx.required(types, 1), r = try ctx.required(types, 2)
        for (k, t) in [(0, x), (1, w), (2, r)] where !Self.floatTypes.contains(t.dtype) || t.dtype != x.dtype {
            throw ctx.error("input \(k) is \(t.dtype); \(ctx.node.opType) takes float32, float16, bfloat16 or float64 (all inputs alike)")
        }
        func shape(_ s: [Int]) -> String { "[" + s.map(String.init).joined(separator: ", ") + "]" }
        guard x.shape.count == 3 else { throw ctx.error("X has shape \(shape(x.shape)); expected rank 3") }
        let seq = batchMajor ? x.shape[1] : x.shape[0], batch = batchMajor ? x.shape[0] : x.shape[1], input = x.shape[2]
        guard r.shape.count == 3 else { throw ctx.error("R has shape \(shape(r.shape)); expected [num_directions, \(gates)*hidden_size, hidden_size]") }
        let hidden = hiddenAttribute ?? r.shape[2]
        let gh = gates * hidden
        guard w.shape == [directions, gh, input] else {
            throw ctx.error("W has shape \(shape(w.shape)); expected \(shape([directions, gh, input]))")
        }
        guard r.shape == [directions, gh, hidden] else {
            throw ctx.error("R has shape \(shape(r.shape)); expected \(shape([directions, gh, hidden]))")
        }
        func check(_ i: Int, _ name: String, _ want: [Int], floating: Bool = true) throws {
            guard i < types.count, let t = types[i] else { return }
            guard t.shape == want else { throw ctx.error("\(name) has shape \(shape(t.shape)); expected \(shape(want))") }
            if floating && t.dtype != x.dtype { throw ctx.error("\(name) is \(t.dtype); expected \(x.dtype) like X") }
        }
        let state = batchMajor ? [batch, directions, hidden] : [directions, batch, hidden]
        try check(3, "B", [directions, 2 * gh])
        try check(4, "sequence_lens", [batch], floating: false)
        if types.count > 4, let s = types[4], s.dtype != .int32 { throw ctx.error("sequence_lens is \(s.dtype); expected int32") }
        try check(5, "initial_h", state)
        if kind == .lstm {
            try check(6, "initial_c", state)
            try check(7, "P", [directions, 3 * hidden])
        }
        return Dims(seq: seq, batch: batch, input: input, hidden: hidden)
    }

    func outputShapes(_ d: Dims) -> (y: [Int], state: [Int]) {
        batchMajor ? ([d.batch, d.seq, directions, d.hidden], [d.batch, directions, d.hidden])
                   : ([d.seq, directions, d.batch, d.hidden], [directions, d.batch, d.hidden])
    }

    func outputTypes(_ types: [TensorInfo?], _ ctx: KernelContext) throws -> [TensorInfo] {
        let d = try dims(types, ctx)
        let dtype = types[0]!.dtype
        let (y, state) = outputShapes(d)
        _ = try activations(ctx)
        return kind == .lstm ? [TensorInfo(dtype, y), TensorInfo(dtype, state), TensorInfo(dtype, state)]
                             : [TensorInfo(dtype, y), TensorInfo(dtype, state)]
    }

    func run(_ inputs: [Tensor?], _ ctx: KernelContext) throws -> [Tensor] {
        let d = try dims(inputs.map { $0.map(TensorInfo.init) }, ctx)
        let fns = try activations(ctx)
        let dtype = try ctx.required(inputs, 0).dtype
        func f32(_ i: Int) -> [Float]? { i < inputs.count ? inputs[i].map { $0.floatValues() } : nil }
        let x = f32(0)!, w = f32(1)!, r = f32(2)!
        let bias = f32(3), h0 = f32(5)
        let c0 = kind == .lstm ? f32(6) : nil, peephole = kind == .lstm ? f32(7) : nil
        var lengths = Array(repeating: d.seq, count: d.batch)
        if inputs.count > 4, let s = inputs[4] {
            lengths = s.int64Values().map { Int($0) }
            if let bad = lengths.first(where: { $0 < 0 || $0 > d.seq }) {
                throw ctx.error("sequence_lens holds \(bad), outside 0...\(d.seq)")
            }
        }
        let (yShape, stateShape) = outputShapes(d)
        var y = [Float](repeating: 0, count: yShape.reduce(1, *))
        var yh = [Float](repeating: 0, count: stateShape.reduce(1, *))
        var yc = [Float](repeating: 0, count: stateShape.reduce(1, *))
        let H = d.hidden, G = gates * H
        for dir in 0..<directions {
            let gm = RecurrentGeometry(seqLength: d.seq, batch: d.batch, inputSize: d.input, hidden: H,
                                       directions: directions, direction: dir, batchMajor: batchMajor)
            var op = RecurrentCell.Options(f: fns[dir][0], g: fns[dir][1], h: kind == .lstm ? fns[dir][2] : .tanh,
                                           clip: clip, reverse: reverseOnly || dir == 1)
            op.inputForget = (ctx.node.int("input_forget") ?? 0) != 0
            op.linearBeforeReset = (ctx.node.int("linear_before_reset") ?? 0) != 0
            x.withUnsafeBufferPointer { xp in
            w.withUnsafeBufferPointer { wp in
            r.withUnsafeBufferPointer { rp in
            y.withUnsafeMutableBufferPointer { yp in
            yh.withUnsafeMutableBufferPointer { yhp in
            yc.withUnsafeMutableBufferPointer { ycp in
                withOptional(bias) { bp in
                withOptional(h0) { h0p in
                withOptional(c0) { c0p in
                withOptional(peephole) { pp in
                    let wd = wp.baseAddress! + dir * G * d.input, rd = rp.baseAddress! + dir * G * H
                    switch kind {
                    case .lstm:
                        let weights = RecurrentCell.LSTMWeights(w: wd, r: rd, bias: bp.map { $0 + dir * 2 * G },
                                                                peephole: pp.map { $0 + dir * 3 * H })
                        RecurrentCell.lstm(x: xp.baseAddress!, geometry: gm, weights: weights, lengths: lengths,
                                           h0: h0p, c0: c0p, options: op, y: yp.baseAddress, yh: yhp.baseAddress!, yc: ycp.baseAddress!)
                    case .gru:
                        RecurrentCell.gru(x: xp.baseAddress!, geometry: gm, w: wd, r: rd, bias: bp.map { $0 + dir * 2 * G },
                                          lengths: lengths, h0: h0p, options: op, y: yp.baseAddress, yh: yhp.baseAddress!)
                    }
                }}}}
            }}}}}}
        }
        func tensor(_ v: [Float], _ s: [Int]) -> Tensor {
            let t = Tensor(shape: s, scalars: v)
            return dtype == .float32 ? t : t.converted(to: dtype)
        }
        var outs = [tensor(y, yShape), tensor(yh, stateShape)]
        if kind == .lstm { outs.append(tensor(yc, stateShape)) }
        return outs
    }
}

/// Calls `body` with a pointer to `values`' elements, or nil when there are none.
private func withOptional<R>(_ values: [Float]?, _ body: (UnsafePointer<Float>?) throws -> R) rethrows -> R {
    guard let values else { return try body(nil) }
    return try values.withUnsafeBufferPointer { try body($0.baseAddress) }
}
