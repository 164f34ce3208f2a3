import Foundation

// Recurrent cells of ONNX's LSTM and GRU operators, one direction at a time, in float32.
//
// Each direction projects every time step's input at once (one GEMM: X · Wᵀ for all
// seq_length × batch rows), then runs one recurrent GEMM per step (H_{t-1} · Rᵀ). Sequence
// lengths are per batch row: a row stops updating after its last valid step, so its state at
// the end is the state at that step (ONNX's Y_h / Y_c), and Y stays zero past it. A row of
// length 0 gets zero final states, not its initial ones — the spec is silent; this is what ONNX
// Runtime returns.

/// The activation functions ONNX's RNN/GRU/LSTM accept (operator spec, "Activation functions").
public enum RecurrentActivation: Equatable, Sendable {
    case sigmoid, tanh, relu, softsign, softplus
    /// alpha·x + beta
    case affine(alpha: Float, beta: Float)
    /// x if x ≥ 0 else alpha·x
    case leakyRelu(alpha: Float)
    /// x if x ≥ alpha else 0
    case thresholdedRelu(alpha: Float)
    /// alpha·tanh(beta·x)
    case scaledTanh(alpha: Float, beta: Float)
    /// min(max(alpha·x + beta, 0), 1)
    case hardSigmoid(alpha: Float, beta: Float)
    /// x if x ≥ 0 else alpha·(eˣ − 1)
    case elu(alpha: Float)

    /// Builds an activation from its ONNX name (case-insensitive). `alpha`/`beta` are taken
    /// from the attribute lists when the function uses them; nil selects the default of the
    /// corresponding ONNX operator (LeakyRelu 0.01, HardSigmoid 0.2/0.5, Elu 1, ThresholdedRelu
    /// 1, ScaledTanh 1/1, Affine 1/0).
    public static func named(_ name: String, alpha: Float?, beta: Float?) -> RecurrentActivation? {
        switch name.lowercased() {
        case "sigmoid": return .sigmoid
        case "tanh": return .tanh
        case "relu": return .relu
        case "softsign": return .softsign
        case "softplus": return .softplus
        case "affine": return .affine(alpha: alpha ?? 1, beta: beta ?? 0)
        case "leakyrelu": return .leakyRelu(alpha: alpha ?? 0.01)
        case "thresholdedrelu": return .thresholdedRelu(alpha: alpha ?? 1)
        case "scaledtanh": return .scaledTanh(alpha: alpha ?? 1, beta: beta ?? 1)
        case "hardsigmoid": return .hardSigmoid(alpha: alpha ?? 0.2, beta: beta ?? 0.5)
        case "elu": return .elu(alpha: alpha ?? 1)
        default: return nil
        }
    }

    /// Whether the named function reads an alpha / a beta from the attribute lists.
    public static func usesAlpha(_ name: String) -> Bool {
        ["affine", "leakyrelu", "thresholdedrelu", "scaledtanh", "hardsigmoid", "elu"].contains(name.lowercased())
    }
    public static func usesBeta(_ name: String) -> Bool {
        ["affine", "scaledtanh", "hardsigmoid"].contains(name.lowercased())
    }

    @inline(__always)
    public func apply(_ x: Float) -> Float {
        switch self {
        case .sigmoid: return 1 / (1 + expf(-x))
        case .tanh: return tanhf(x)
        case .relu: return max(x, 0)
        case .softsign: return x / (1 + abs(x))
        case .softplus: return log1pf(expf(x))
        case .affine(let a, let b): return a * x + b
        case .leakyRelu(let a): return x >= 0 ? x : a * x
        case .thresholdedRelu(let a): return x >= a ? x : 0
        case .scaledTanh(let a, let b): return a * tanhf(b * x)
        case .hardSigmoid(let a, let b): return min(max(a * x + b, 0), 1)
        case .elu(let a): return x >= 0 ? x : a * (expf(x) - 1)
        }
    }
}

/// Where one direction reads its input and writes its outputs, as strides over flat float32
/// buffers, so both ONNX layouts (0: time-major, 1: batch-major) share one loop.
public struct RecurrentGeometry: Sendable {
    public var seqLength: Int
    public var batch: Int
    public var inputSize: Int
    public var hidden: Int
    /// Row of X (and of the input projection) for time t, batch row b: `t * xTime + b * xBatch`.
    public var xTime: Int, xBatch: Int
    /// Offset of Y[t, direction, b, 0]: `yBase + t * yTime + b * yBatch` (elements).
    public var yBase: Int, yTime: Int, yBatch: Int
    /// Offset of the state [direction, b, 0] in initial_h/c and Y_h/Y_c: `stateBase + b * stateBatch`.
    public var stateBase: Int, stateBatch: Int

    /// Strides for ONNX `layout` 0 (X `[seq, batch, input]`, Y `[seq, dirs, batch, hidden]`,
    /// states `[dirs, batch, hidden]`) or 1 (X `[batch, seq, input]`, Y `[batch, seq, dirs,
    /// hidden]`, states `[batch, dirs, hidden]`) for direction `d` of `directions`.
    public init(seqLength: Int, batch: Int, inputSize: Int, hidden: Int, directions: Int, direction d: Int, batchMajor: Bool) {
        self.seqLength = seqLength
        self.batch = batch
        self.inputSize = inputSize
        self.hidden = hidden
        if batchMajor {
            xTime = 1; xBatch = seqLength
            yBase = d * hidden; yTime = directions * hidden; yBatch = seqLength * directions * hidden
            stateBase = d * hidden; stateBatch = directions * hidden
        } else {
            xTime = batch; xBatch = 1
            yBase = d * batch * hidden; yTime = directions * batch * hidden; yBatch = hidden
            stateBase = d * batch * hidden; stateBatch = hidden
        }
    }
}

/// LSTM and GRU recurrences (ONNX operator spec equations), one direction per call.
public enum RecurrentCell {
    /// Per-direction LSTM parameters; pointers address this direction's slice.
    public struct LSTMWeights {
        /// W `[4·hidden, input]`, gates in ONNX order i, o, f, c.
        public var w: UnsafePointer<Float>
        /// R `[4·hidden, hidden]`.
        public var r: UnsafePointer<Float>
        /// B `[8·hidden]` (Wb then Rb), or nil for zero bias.
        public var bias: UnsafePointer<Float>?
        /// P `[3·hidden]` (i, o, f), or nil for no peepholes.
        public var peephole: UnsafePointer<Float>?
        public init(w: UnsafePointer<Float>, r: UnsafePointer<Float>, bias: UnsafePointer<Float>?, peephole: UnsafePointer<Float>?) {
            self.w = w; self.r = r; self.bias = bias; self.peephole = peephole
        }
    }

    /// Activations f, g, h and options shared by the cells.
    public struct Options {
        public var f: RecurrentActivation
        public var g: RecurrentActivation
        public var h: RecurrentActivation
        /// Bound applied to every gate pre-activation, `[-clip, clip]`; nil for none.
        public var clip: Float?
        public var reverse: Bool
        /// LSTM `input_forget`: f = 1 − i.
        public var inputForget: Bool = false
        /// GRU `linear_before_reset`.
        public var linearBeforeReset: Bool = false
        public init(f: RecurrentActivation, g: RecurrentActivation, h: RecurrentActivation, clip: Float?, reverse: Bool) {
            self.f = f; self.g = g; self.h = h; self.clip = clip; self.reverse = reverse
        }
    }

    /// X · Wᵀ for every (time, batch) row at once: `[seq·batch, gates·hidden]`, rows in X's order.
    static func project(_ x: UnsafePointer<Float>, rows: Int, inputSize: Int, w: UnsafePointer<Float>, width: Int) -> [Float] {
        var out = [Float](repeating: 0, count: rows * width)
        out.withUnsafeMutableBufferPointer { o in
            BLAS.sgemm(transB: true, m: rows, n: width, k: inputSize, a: x, lda: inputSize, b: w, ldb: inputSize, c: o.baseAddress!, ldc: width)
        }
        return out
    }

    /// The time index a batch row with `length` valid steps processes at step `s`.
    @inline(__always)
    static func timeIndex(step s: Int, length: Int, reverse: Bool) -> Int { reverse ? length - 1 - s : s }

    @inline(__always)
    static func clipped(_ v: Float, _ c: Float?) -> Float {
        guard let c else { return v }
        return min(max(v, -c), c)
    }

    /// Runs one LSTM direction.
    ///
    ///     i = f(Xt·Wiᵀ + Ht-1·Riᵀ + Pi ⊙ Ct-1 + Wbi + Rbi)
    ///     f = f(Xt·Wfᵀ + Ht-1·Rfᵀ + Pf ⊙ Ct-1 + Wbf + Rbf)     (1 − i with input_forget)
    ///     c = g(Xt·Wcᵀ + Ht-1·Rcᵀ + Wbc + Rbc)
    ///     Ct = f ⊙ Ct-1 + i ⊙ c
    ///     o = f(Xt·Woᵀ + Ht-1·Roᵀ + Po ⊙ Ct + Wbo + Rbo)
    ///     Ht = o ⊙ h(Ct)
    ///
    /// - Parameters:
    ///   - x: the whole input in the geometry's layout.
    ///   - lengths: valid steps per batch row (each in 0...seqLength).
    ///   - h0, c0: initial states in the state layout, or nil for zeros.
    ///   - y: Y buffer (pre-zeroed) or nil; `yh`, `yc`: final states, written for every batch row.
    public static func lstm(x: UnsafePointer<Float>, geometry gm: RecurrentGeometry, weights wt: LSTMWeights,
                            lengths: [Int], h0: UnsafePointer<Float>?, c0: UnsafePointer<Float>?, options op: Options,
                            y: UnsafeMutablePointer<Float>?, yh: UnsafeMutablePointer<Float>, yc: UnsafeMutablePointer<Float>) {
        let H = gm.hidden, B = gm.batch, G = 4 * H
        var xw = project(x, rows: gm.seqLength * B, inputSize: gm.inputSize, w: wt.w, width: G)
        if let b = wt.bias {
            xw.withUnsafeMutableBufferPointer { p in
                for row in 0..<(gm.seqLength * B) { for k in 0..<G { p[row * G + k] += b[k] + b[G + k] } }
            }
        }
        var hState = [Float](repeating: 0, count: B * H), cState = [Float](repeating: 0, count: B * H)
        for b in 0..<B {
            for k in 0..<H {
                hState[b * H + k] = h0?[gm.stateBase + b * gm.stateBatch + k] ?? 0
                cState[b * H + k] = c0?[gm.stateBase + b * gm.stateBatch + k] ?? 0
            }
        }
        var hr = [Float](repeating: 0, count: B * G)
        let steps = lengths.max() ?? 0
        for s in 0..<steps {
            hState.withUnsafeBufferPointer { hp in
                hr.withUnsafeMutableBufferPointer { o in
                    BLAS.sgemm(transB: true, m: B, n: G, k: H, a: hp.baseAddress!, lda: H, b: wt.r, ldb: H, c: o.baseAddress!, ldc: G)
                }
            }
            for b in 0..<B where s < lengths[b] {
                let t = timeIndex(step: s, length: lengths[b], reverse: op.reverse)
                let row = (t * gm.xTime + b * gm.xBatch) * G
                for k in 0..<H {
                    let cPrev = cState[b * H + k]
                    var gi = xw[row + k] + hr[b * G + k]
                    var go = xw[row + H + k] + hr[b * G + H + k]
                    var gf = xw[row + 2 * H + k] + hr[b * G + 2 * H + k]
                    let gc = xw[row + 3 * H + k] + hr[b * G + 3 * H + k]
                    if let p = wt.peephole {
                        gi += p[k] * cPrev
                        gf += p[2 * H + k] * cPrev
                    }
                    let i = op.f.apply(clipped(gi, op.clip))
                    let f = op.inputForget ? 1 - i : op.f.apply(clipped(gf, op.clip))
                    let c = op.g.apply(clipped(gc, op.clip))
                    let cNew = f * cPrev + i * c
                    if let p = wt.peephole { go += p[H + k] * cNew }
                    let o = op.f.apply(clipped(go, op.clip))
                    let hNew = o * op.h.apply(cNew)
                    cState[b * H + k] = cNew
                    hState[b * H + k] = hNew
                    y?[gm.yBase + t * gm.yTime + b * gm.yBatch + k] = hNew
                }
            }
        }
        for b in 0..<B {
            let valid: Float = lengths[b] > 0 ? 1 : 0
            for k in 0..<H {
                yh[gm.stateBase + b * gm.stateBatch + k] = valid * hState[b * H + k]
                yc[gm.stateBase + b * gm.stateBatch + k] = valid * cState[b * H + k]
            }
        }
    }

    /// Runs one GRU direction (gates in ONNX order z, r, h; W `[3·hidden, input]`, R
    /// `[3·hidden, hidden]`, B `[6·hidden]` = Wb then Rb):
    ///
    ///     z = f(Xt·Wzᵀ + Ht-1·Rzᵀ + Wbz + Rbz)
    ///     r = f(Xt·Wrᵀ + Ht-1·Rrᵀ + Wbr + Rbr)
    ///     h = g(Xt·Whᵀ + (r ⊙ Ht-1)·Rhᵀ + Rbh + Wbh)          linear_before_reset = 0
    ///     h = g(Xt·Whᵀ + r ⊙ (Ht-1·Rhᵀ + Rbh) + Wbh)          linear_before_reset ≠ 0
    ///     Ht = (1 − z) ⊙ h + z ⊙ Ht-1
    public static func gru(x: UnsafePointer<Float>, geometry gm: RecurrentGeometry,
                           w: UnsafePointer<Float>, r: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                           lengths: [Int], h0: UnsafePointer<Float>?, options op: Options,
                           y: UnsafeMutablePointer<Float>?, yh: UnsafeMutablePointer<Float>) {
        let H = gm.hidden, B = gm.batch, G = 3 * H
        var xw = project(x, rows: gm.seqLength * B, inputSize: gm.inputSize, w: w, width: G)
        if let b = bias {
            // Rbh stays out of the projection when it is multiplied by r (linear_before_reset).
            xw.withUnsafeMutableBufferPointer { p in
                for row in 0..<(gm.seqLength * B) {
                    for k in 0..<G {
                        let rb = op.linearBeforeReset && k >= 2 * H ? 0 : b[G + k]
                        p[row * G + k] += b[k] + rb
                    }
                }
            }
        }
        var hState = [Float](repeating: 0, count: B * H)
        for b in 0..<B {
            for k in 0..<H { hState[b * H + k] = h0?[gm.stateBase + b * gm.stateBatch + k] ?? 0 }
        }
        // Recurrent terms: columns [0, 2H) are Ht-1·R{z,r}ᵀ; [2H, 3H) is Ht-1·Rhᵀ (linear before
        // reset) or (r ⊙ Ht-1)·Rhᵀ.
        var hr = [Float](repeating: 0, count: B * G)
        var rh = [Float](repeating: 0, count: B * H)
        var zGate = [Float](repeating: 0, count: B * H)
        let steps = lengths.max() ?? 0
        for s in 0..<steps {
            let active = (0..<B).filter { s < lengths[$0] }
            hState.withUnsafeBufferPointer { hp in
                hr.withUnsafeMutableBufferPointer { o in
                    let n = op.linearBeforeReset ? G : 2 * H
                    BLAS.sgemm(transB: true, m: B, n: n, k: H, a: hp.baseAddress!, lda: H, b: r, ldb: H, c: o.baseAddress!, ldc: G)
                }
            }
            for b in active {
                let t = timeIndex(step: s, length: lengths[b], reverse: op.reverse)
                let row = (t * gm.xTime + b * gm.xBatch) * G
                for k in 0..<H {
                    zGate[b * H + k] = op.f.apply(clipped(xw[row + k] + hr[b * G + k], op.clip))
                    let rg = op.f.apply(clipped(xw[row + H + k] + hr[b * G + H + k], op.clip))
                    if op.linearBeforeReset {
                        let rbh = bias?[G + 2 * H + k] ?? 0
                        rh[b * H + k] = rg * (hr[b * G + 2 * H + k] + rbh)
                    } else {
                        rh[b * H + k] = rg * hState[b * H + k]
                    }
                }
            }
            if !op.linearBeforeReset {
                rh.withUnsafeBufferPointer { rp in
                    hr.withUnsafeMutableBufferPointer { o in
                        BLAS.sgemm(transB: true, m: B, n: H, k: H, a: rp.baseAddress!, lda: H, b: r + 2 * H * H, ldb: H,
                                   c: o.baseAddress! + 2 * H, ldc: G)
                    }
                }
            }
            for b in active {
                let t = timeIndex(step: s, length: lengths[b], reverse: op.reverse)
                let row = (t * gm.xTime + b * gm.xBatch) * G
                for k in 0..<H {
                    let pre = op.linearBeforeReset ? xw[row + 2 * H + k] + rh[b * H + k] : xw[row + 2 * H + k] + hr[b * G + 2 * H + k]
                    let hCand = op.g.apply(clipped(pre, op.clip))
                    let z = zGate[b * H + k]
                    let hNew = (1 - z) * hCand + z * hState[b * H + k]
                    hState[b * H + k] = hNew
                    y?[gm.yBase + t * gm.yTime + b * gm.yBatch + k] = hNew
                }
            }
        }
        for b in 0..<B {
            let valid: Float = lengths[b] > 0 ? 1 : 0
            for k in 0..<H { yh[gm.stateBase + b * gm.stateBatch + k] = valid * hState[b * H + k] }
        }
    }
}
