import Foundation

/// Applied to one output channel's row of `count` values after the matrix product: adds `bias`
/// and applies a fused activation, in one pass over the row.
public typealias RowEpilogue = (_ row: UnsafeMutablePointer<Float>, _ count: Int, _ bias: Float) -> Void

/// Adds the bias only.
public let biasEpilogue: RowEpilogue = { p, n, b in
    if b != 0 { for i in 0..<n { p[i] += b } }
}

/// The shape of a grouped N-d convolution over NC[D][H]W float32 data (ONNX Conv,
/// ConvTranspose): batch, channels on both sides, groups and the spatial window.
public struct ConvShape: Equatable, Sendable {
    public var batch: Int
    public var inChannels: Int
    public var outChannels: Int
    public var groups: Int
    public var window: WindowGeometry { didSet { liftedWindow = Convolution.lifted(window) } }
    /// `window` lifted to rank 3 (`Convolution.lifted`), kept with it: the kernels work in rank 3
    /// and lifting allocates seven arrays, per convolution per run otherwise.
    public private(set) var liftedWindow: WindowGeometry

    public init(batch: Int, inChannels: Int, outChannels: Int, groups: Int, window: WindowGeometry) {
        self.batch = batch
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.groups = groups
        self.window = window
        self.liftedWindow = Convolution.lifted(window)
    }

    /// Whether every group holds one input channel (depthwise; `outChannels` is a multiple).
    public var isDepthwise: Bool { groups == inChannels && groups > 1 && outChannels % groups == 0 }
}

/// Convolution kernels on raw float32 buffers, NCHW layout, weights `[M, C/group, k1, …, kn]`.
///
/// `Y[n, m, o] = bias[m] + Σ_{c ∈ group(m), k} W[m, c, k] · X[n, c, o·stride − padBegin + k·dilation]`
/// (ONNX Conv, operator spec §Conv), padding reading as zero.
///
/// Method: im2col + GEMM per image and group (`DirectGemm`, bias and activation fused into the
/// store; OpenBLAS `sgemm` with `COMPRESS_CONV_GEMM=blas`) — the column matrix holds, for each
/// `(c, k)` row, the input value each output position reads; a 1×…×1 stride-1 unpadded window
/// multiplies the input directly (a batch as one product); depthwise 2-d windows use direct
/// kernels that run channels in parallel. Spatial ranks 1 and 2 are handled as rank 3 with leading unit axes.
public enum Convolution {
    /// Largest spatial rank the kernels handle.
    public static let maxSpatialRank = 3

    /// The window lifted to rank 3 by prepending unit axes (input 1, kernel 1, stride 1, …).
    static func lifted(_ g: WindowGeometry) -> WindowGeometry {
        let extra = 3 - g.rank
        guard extra > 0 else { return g }
        let ones = Array(repeating: 1, count: extra), zeros = Array(repeating: 0, count: extra)
        return WindowGeometry(input: ones + g.input, kernel: ones + g.kernel, strides: ones + g.strides,
                              dilations: ones + g.dilations, padsBegin: zeros + g.padsBegin,
                              padsEnd: zeros + g.padsEnd, output: ones + g.output)
    }

    /// The half-open range of outputs `o` in `0..<outCount` whose input `o·stride + offset` lies in
    /// `0..<inCount`.
    @inline(__always)
    static func validRange(offset: Int, stride: Int, inCount: Int, outCount: Int) -> (Int, Int) {
        // o·s + off ≥ 0  ⇔  o ≥ ceil(−off / s);   o·s + off ≤ in − 1  ⇔  o ≤ floor((in − 1 − off) / s)
        let lo = offset >= 0 ? 0 : min(outCount, (-offset + stride - 1) / stride)
        let last = inCount - 1 - offset
        let hi = last < 0 ? 0 : min(outCount, last / stride + 1)
        return (lo, max(lo, hi))
    }

    /// Forward convolution.
    /// - Parameters:
    ///   - x: input `[N, C, spatial…]`; `w`: weights `[M, C/group, kernel…]`; `bias`: `[M]` or nil.
    ///   - y: output `[N, M, output…]`, fully written.
    ///   - epilogue: bias add + activation per output row; default adds the bias.
    ///   - packedWeights: optional `w` in `DirectGemm`'s packed layout, each group on its own
    ///     (`PackedWeights`); used by the direct products, ignored elsewhere.
    ///   - inputScale: when given, `batch × inChannels` values: input channel c of image n is
    ///     multiplied by `inputScale[n·C + c]` before the convolution (a squeeze-and-excitation
    ///     scale, `ChannelScaleIntoConv`). A 1×1 convolution of one image applies it as it packs
    ///     its input for the product; elsewhere the scaled input is made first. Either way the
    ///     same bits as scaling the input in a separate pass.
    public static func forward(x: UnsafePointer<Float>, w: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                               y: UnsafeMutablePointer<Float>, shape s: ConvShape, epilogue: ConvEpilogue = .bias,
                               packedWeights: UnsafePointer<Float>? = nil, inputScale: UnsafePointer<Float>? = nil) {
        let g3 = s.liftedWindow
        let inS = g3.inputCount, outS = g3.outputCount
        if let inputScale, !(s.batch == 1 && s.groups == 1 && s.window.isPointwise && !convolutionsThroughBLAS) {
            let planes = s.batch * s.inChannels
            let scaled = UnsafeMutablePointer<Float>.allocate(capacity: max(planes * inS, 1))
            defer { scaled.deallocate() }
            Tensor.scaleRows(x, inputScale, into: scaled, rows: planes, length: inS)
            forward(x: scaled, w: w, bias: bias, y: y, shape: s, epilogue: epilogue, packedWeights: packedWeights)
            return
        }
        if s.isDepthwise && s.window.rank <= 2 {
            depthwise(x: x, w: w, bias: bias, y: y, shape: s, window: g3, epilogue: epilogue)
            return
        }
        let cg = s.inChannels / s.groups, mg = s.outChannels / s.groups
        let k = cg * g3.kernelCount
        let pointwise = s.window.isPointwise
        let ow = g3.output[2]
        let (act, rows): (KernelActivation, RowEpilogue?)
        switch epilogue {
        case .activation(let a): (act, rows) = (a, nil)
        case .rows(let f): (act, rows) = (.none, f)
        }
        let packedPerGroup = DirectGemm.packedSize(m: mg, k: k)
        func packed(_ g: Int) -> UnsafePointer<Float>? { packedWeights.map { $0 + g * packedPerGroup } }
        // Over a batch, a 1×1 convolution is one product over every image's output positions,
        // read and written in place. (Other windows over a batch: an implicit product gathering
        // the column matrix from the input panel by panel measured slower than the explicit
        // column matrix below, ResNet-18 batch 8 222 vs 198 ms, and was taken out.)
        if s.batch > 1 && pointwise && !convolutionsThroughBLAS {
            for g in 0..<s.groups {
                DirectGemm.multiply(m: mg, n: s.batch * outS, k: k, a: w + g * mg * k, lda: k, b: x + g * cg * inS, ldb: inS,
                                    c: y + g * mg * outS, ldc: outS, bias: bias.map { $0 + g * mg }, activation: act,
                                    images: (s.batch, s.inChannels * inS, s.outChannels * outS), packedA: packed(g))
            }
            if let rows {
                Parallel.forRanges(count: s.batch * s.outChannels, minimumWork: 1 << 16, workPerItem: outS) { r in
                    for p in r { rows(y + p * outS, outS, 0) }
                }
            }
            return
        }
        let direct = !convolutionsThroughBLAS
        // (Winograd takes a batch one image at a time, small planes too: it measured faster than
        // the side-by-side im2col below on ResNet-18 at batch 8.)
        if direct && !pointwise && Winograd.applies(s, window: g3) {
            Winograd.forward(x: x, w: w, bias: bias, y: y, shape: s, window: g3, activation: act, packedWeights: packedWeights)
            if let rows {
                Parallel.forRanges(count: s.batch * s.outChannels, minimumWork: 1 << 16, workPerItem: outS) { r in
                    for p in r { rows(y + p * outS, outS, 0) }
                }
            }
            return
        }
        if s.batch > 1 && outS < batchedBelow {
            forwardBatched(x: x, w: w, bias: bias, y: y, shape: s, window: g3, epilogue: epilogue, packedWeights: packedWeights)
            return
        }
        if direct && !pointwise && s.window.rank <= 2 && implicitProducts
            && implicit(x: x, w: w, bias: bias, y: y, shape: s, window: g3, activation: act, packed: packed) {
            if let rows {
                Parallel.forRanges(count: s.batch * s.outChannels, minimumWork: 1 << 16, workPerItem: outS) { r in
                    for p in r { rows(y + p * outS, outS, 0) }
                }
            }
            return
        }
        let nc = chunkColumns(outputs: outS, rowLength: ow, k: k)
        Scratch.withBuffer(count: pointwise ? 0 : k * nc) { col in
            for n in 0..<s.batch {
                for g in 0..<s.groups {
                    let xg = x + (n * s.inChannels + g * cg) * inS
                    let yg = y + (n * s.outChannels + g * mg) * outS
                    let wg = w + g * mg * k
                    for c0 in stride(from: 0, to: outS, by: nc) {
                        let cols = min(nc, outS - c0)
                        let b: UnsafePointer<Float>, ldb: Int
                        if pointwise {
                            (b, ldb) = (xg + c0, inS)
                        } else {
                            im2col(x: xg, channels: cg, window: g3, outputRows: c0 / ow..<(c0 + cols) / ow, col: col, rowStride: cols)
                            (b, ldb) = (UnsafePointer(col), cols)
                        }
                        let yc = yg + c0
                        if direct && pointwise && transposedProducts && s.groups == 1 && cols == outS, let pw = packedWeights,
                           DirectGemm.prefersTransposed(m: mg, n: cols),
                           let pt = PackedWeights.derived(from: pw, count: DirectGemm.packedTransposedSize(m: mg, k: k),
                                                          make: { DirectGemm.packAT(m: mg, k: k, a: wg, lda: k, into: $0) }) {
                            // Few positions (a 7×7 plane): the vector along the channels instead.
                            if let inputScale {
                                // This kernel reads B in place: the (small) scaled input is made first.
                                let scaled = UnsafeMutablePointer<Float>.allocate(capacity: k * cols)
                                defer { scaled.deallocate() }
                                Tensor.scaleRows(b, inputScale, into: scaled, rows: k, length: cols)
                                DirectGemm.multiplyTransposed(m: mg, n: cols, k: k, packedAT: pt, b: scaled, ldb: cols, c: yc, ldc: outS,
                                                              bias: bias, activation: act)
                            } else {
                                DirectGemm.multiplyTransposed(m: mg, n: cols, k: k, packedAT: pt, b: b, ldb: ldb, c: yc, ldc: outS,
                                                              bias: bias, activation: act)
                            }
                            if let rows {
                                Parallel.forRanges(count: mg, minimumWork: 1 << 16, workPerItem: cols) { ms in
                                    for m in ms { rows(yc + m * outS, cols, 0) }
                                }
                            }
                            continue
                        }
                        if direct {
                            DirectGemm.multiply(m: mg, n: cols, k: k, a: wg, lda: k, b: b, ldb: ldb, c: yc, ldc: outS,
                                                bias: bias.map { $0 + g * mg }, activation: act, packedA: packed(g), bScale: inputScale)
                            if let rows {
                                Parallel.forRanges(count: mg, minimumWork: 1 << 16, workPerItem: cols) { ms in
                                    for m in ms { rows(yc + m * outS, cols, 0) }
                                }
                            }
                            continue
                        }
                        // The bias goes in first and sgemm accumulates onto it (beta = 1): OpenBLAS
                        // would otherwise spend the same pass zeroing C for beta = 0.
                        if let bias {
                            Parallel.forRanges(count: mg, minimumWork: 1 << 16, workPerItem: cols) { ms in
                                for m in ms { (yc + m * outS).update(repeating: bias[g * mg + m], count: cols) }
                            }
                        }
                        BLAS.sgemm(m: mg, n: cols, k: k, a: wg, lda: k, b: b, ldb: ldb,
                                   beta: bias == nil ? 0 : 1, c: yc, ldc: outS)
                        if case .activation(let a) = epilogue, a == .none { continue }
                        let f = epilogue.rowFunction
                        Parallel.forRanges(count: mg, minimumWork: 1 << 16, workPerItem: cols) { ms in
                            for m in ms { f(yc + m * outS, cols, 0) }
                        }
                    }
                }
            }
        }
    }

    /// 2-d convolutions (one image at a time) as implicit products, B gathered from the input
    /// panel by panel (`DirectGemm.convolveImplicitly`), where that kernel runs; every image and
    /// group, or nothing (false) and the caller takes the im2col path. Bit-identical to it, and
    /// on this project's AVX-512 machine 10–30 % faster per ResNet-18 / YOLOX 3×3 layer (stride
    /// 2 and the 7×7 stem included); with AVX2 (16-column panels) 4–19 % per layer, ResNet-18
    /// about 10 % faster whole.
    static func implicit(x: UnsafePointer<Float>, w: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                         y: UnsafeMutablePointer<Float>, shape s: ConvShape, window g3: WindowGeometry,
                         activation: KernelActivation, packed: (Int) -> UnsafePointer<Float>?) -> Bool {
        let inS = g3.inputCount, outS = g3.outputCount
        let cg = s.inChannels / s.groups, mg = s.outChannels / s.groups
        for n in 0..<s.batch {
            for g in 0..<s.groups {
                let ran = DirectGemm.convolveImplicitly(
                    m: mg, channels: cg, input: (g3.input[1], g3.input[2]), kernel: (g3.kernel[1], g3.kernel[2]),
                    strides: (g3.strides[1], g3.strides[2]), dilations: (g3.dilations[1], g3.dilations[2]),
                    padsBegin: (g3.padsBegin[1], g3.padsBegin[2]), output: (g3.output[1], g3.output[2]),
                    x: x + (n * s.inChannels + g * cg) * inS, w: w + g * mg * cg * g3.kernelCount, packedW: packed(g),
                    y: y + (n * s.outChannels + g * mg) * outS, bias: bias.map { $0 + g * mg }, activation: activation)
                if !ran { return false }   // the same answer for every image and group
            }
        }
        return true
    }

    /// Tests: false sends every convolution through the im2col path.
    nonisolated(unsafe) public static var implicitProducts = true

    /// Convolution products go through OpenBLAS instead of `DirectGemm` when the environment
    /// sets `COMPRESS_CONV_GEMM=blas` (to compare the two; measured on ResNet-18 and MobileNetV2,
    /// the direct kernel was as fast or faster at every layer shape).
    public static let convolutionsThroughBLAS = ProcessInfo.processInfo.environment["COMPRESS_CONV_GEMM"] == "blas"

    /// Output planes smaller than this many positions are multiplied several images at a time.
    static let batchedBelow = 1024

    /// The GEMM path for small output planes and batch > 1: the column matrices of several
    /// images sit side by side, so one sgemm covers them (a wider product, and the weights are
    /// packed once instead of once per image); its result is scattered to each image's planes
    /// with the bias and activation in the same pass.
    static func forwardBatched(x: UnsafePointer<Float>, w: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                               y: UnsafeMutablePointer<Float>, shape s: ConvShape, window g3: WindowGeometry,
                               epilogue convEpilogue: ConvEpilogue, packedWeights: UnsafePointer<Float>?) {
        let inS = g3.inputCount, outS = g3.outputCount
        let cg = s.inChannels / s.groups, mg = s.outChannels / s.groups
        let k = cg * g3.kernelCount
        let rows = g3.output[0] * g3.output[1]
        let pointwise = s.window.isPointwise
        // Images per product: enough for about `batchedBelow` columns.
        let per = min(s.batch, max(1, batchedBelow / max(outS, 1)))
        let width = per * outS
        let direct = !convolutionsThroughBLAS
        // The direct kernel applies bias and a simple activation as it stores; whatever is left
        // runs per row during the scatter.
        let fused: KernelActivation
        let rowPass: RowEpilogue?
        switch convEpilogue {
        case .activation(let a) where direct: (fused, rowPass) = (a, nil)
        case .rows(let f) where direct: (fused, rowPass) = (.none, f)
        default: (fused, rowPass) = (.none, convEpilogue.rowFunction)
        }
        Scratch.withBuffer(count: k * width) { col in
            Scratch.withBuffer(count: mg * width) { out in
                for n0 in stride(from: 0, to: s.batch, by: per) {
                    let images = min(per, s.batch - n0)
                    let cols = images * outS
                    for g in 0..<s.groups {
                        for i in 0..<images {
                            let xg = x + ((n0 + i) * s.inChannels + g * cg) * inS
                            if pointwise {
                                Parallel.forRanges(count: k, minimumWork: 1 << 16, workPerItem: outS) { rs in
                                    for r in rs { (col + r * cols + i * outS).update(from: xg + r * inS, count: outS) }
                                }
                            } else {
                                im2col(x: xg, channels: cg, window: g3, outputRows: 0..<rows, col: col + i * outS, rowStride: cols)
                            }
                        }
                        if direct {
                            DirectGemm.multiply(m: mg, n: cols, k: k, a: w + g * mg * k, lda: k, b: col, ldb: cols, c: out, ldc: cols,
                                                bias: bias.map { $0 + g * mg }, activation: fused,
                                                packedA: packedWeights.map { $0 + g * DirectGemm.packedSize(m: mg, k: k) })
                        } else {
                            BLAS.sgemm(m: mg, n: cols, k: k, a: w + g * mg * k, lda: k, b: col, ldb: cols, c: out, ldc: cols)
                        }
                        Parallel.forRanges(count: mg * images, minimumWork: 1 << 16, workPerItem: outS) { items in
                            for item in items {
                                let m = item / images, i = item % images
                                let dst = y + ((n0 + i) * s.outChannels + g * mg + m) * outS
                                dst.update(from: out + m * cols + i * outS, count: outS)
                                rowPass?(dst, outS, direct ? 0 : bias?[g * mg + m] ?? 0)
                            }
                        }
                    }
                }
            }
        }
    }

    /// Floats of column matrix one GEMM chunk may hold (8 MiB): a larger matrix is split into
    /// chunks of whole output rows, to bound the scratch memory. (Smaller, L2-sized chunks —
    /// also for 1×1 convolutions, to keep the bias fill and activation passes in cache —
    /// measured no faster on ResNet-18/MobileNetV2: OpenBLAS packs its operands anyway, and
    /// more, smaller calls cost thread synchronisation. A register-tiled SSE product that writes
    /// C once with the bias and activation, for 1×1 convolutions with K ≤ 24, measured slower
    /// than sgemm too.)
    static let chunkBudget = 2 << 20

    /// Output positions per GEMM chunk: whole output rows, about `chunkBudget / k` of them, at
    /// least 256, at most all of them.
    static func chunkColumns(outputs: Int, rowLength: Int, k: Int) -> Int {
        let target = max(256, chunkBudget / max(k, 1))
        guard target < outputs else { return outputs }
        return max(rowLength, target / rowLength * rowLength)
    }

    /// Writes the column matrix of `channels` input planes for the flattened output rows
    /// `outputRows` (row = one (od, oh) pair, `OW` outputs): matrix row `(c, kd, kh, kw)` holds,
    /// for each of those output positions, the input value it reads through that kernel tap
    /// (zero in the padding). The matrix has `outputRows.count · OW` columns; its rows start
    /// `rowStride` floats apart.
    static func im2col(x: UnsafePointer<Float>, channels: Int, window g: WindowGeometry, outputRows: Range<Int>,
                       col: UnsafeMutablePointer<Float>, rowStride: Int) {
        let (D, H, W) = (g.input[0], g.input[1], g.input[2])
        let (OH, OW) = (g.output[1], g.output[2])
        let (KD, KH, KW) = (g.kernel[0], g.kernel[1], g.kernel[2])
        let (sd, sh, sw) = (g.strides[0], g.strides[1], g.strides[2])
        let (dd, dh, dw) = (g.dilations[0], g.dilations[1], g.dilations[2])
        let (pd, ph, pw) = (g.padsBegin[0], g.padsBegin[1], g.padsBegin[2])
        let taps = KD * KH * KW, plane = D * H * W
        let cols = outputRows.count * OW
        let rowsTotal = channels * taps
        func rows(_ range: Range<Int>) {
            for r in range {
                let c = r / taps, t = r % taps
                let kd = t / (KH * KW), kh = (t / KW) % KH, kw = t % KW
                let xc = x + c * plane
                var dst = col + r * rowStride
                let iwOff = kw * dw - pw
                let (owLo, owHi) = validRange(offset: iwOff, stride: sw, inCount: W, outCount: OW)
                for q in outputRows {
                    defer { dst += OW }
                    let od = q / OH, oh = q % OH
                    let id = od * sd + kd * dd - pd
                    let ih = oh * sh + kh * dh - ph
                    if id < 0 || id >= D || ih < 0 || ih >= H {
                        dst.update(repeating: 0, count: OW)
                        continue
                    }
                    let src = xc + (id * H + ih) * W + iwOff
                    if owLo > 0 { dst.update(repeating: 0, count: owLo) }
                    if sw == 1 {
                        if owHi > owLo { (dst + owLo).update(from: src + owLo, count: owHi - owLo) }
                    } else {
                        for ow in owLo..<owHi { dst[ow] = src[ow * sw] }
                    }
                    if owHi < OW { (dst + owHi).update(repeating: 0, count: OW - owHi) }
                }
            }
        }
        Parallel.forRanges(count: rowsTotal, minimumWork: 1 << 16, workPerItem: cols, rows)
    }

    /// Direct depthwise convolution (group = C, M = C·multiplier) for spatial ranks ≤ 2, one
    /// output plane per task, planes in parallel. A 3×3 undilated window with stride 1 or 2
    /// (MobileNet's) takes `depthwise3x3`; other windows accumulate tap by tap into each row.
    static func depthwise(x: UnsafePointer<Float>, w: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                          y: UnsafeMutablePointer<Float>, shape s: ConvShape, window g: WindowGeometry,
                          epilogue convEpilogue: ConvEpilogue) {
        let (H, W) = (g.input[1], g.input[2])
        let (OH, OW) = (g.output[1], g.output[2])
        let (KH, KW) = (g.kernel[1], g.kernel[2])
        let (sh, sw) = (g.strides[1], g.strides[2])
        let (dh, dw) = (g.dilations[1], g.dilations[2])
        let (ph, pw) = (g.padsBegin[1], g.padsBegin[2])
        let mult = s.outChannels / s.inChannels
        let planes = s.batch * s.outChannels
        // Narrow planes (7×7, 14×14 at the end of mobile networks) take the k×k kernel for 3×3
        // too: its partial-row transposes and 8-position blocks beat the 3×3 kernel's
        // one-value-at-a-time row ends there (one thread, 8 channels at a time: 960 × 7×7 49.8 →
        // 43.1 µs, 576 × 14×14 stride 2 40.0 → 33.3 µs), while on wide planes the 3×3 kernel,
        // its weights held in registers, is 4–5 % faster. The same bits either way for whole groups
        // of 8 channels (the last C mod 8 go through masked lanes here, the one-plane kernel there).
        let narrow = mult == 1 && OW < 16 && narrowDepthwiseThroughKxK && !depthwiseThroughLoops
        if KH == 3 && KW == 3 && dh == 1 && dw == 1 && (sw == 1 || sw == 2) && !narrow {
            depthwise3x3(x: x, w: w, bias: bias, y: y, shape: s, window: g, epilogue: convEpilogue)
            return
        }
        if mult == 1 && !depthwiseThroughLoops {
            depthwiseKxK(x: x, w: w, bias: bias, y: y, shape: s, window: g, epilogue: convEpilogue)
            return
        }
        let epilogue = convEpilogue.rowFunction
        // Per kernel column: the valid output range, which is the same for every row.
        var ranges: [(Int, Int)] = []
        for kw in 0..<KW { ranges.append(validRange(offset: kw * dw - pw, stride: sw, inCount: W, outCount: OW)) }
        ranges.withUnsafeBufferPointer { ranges in
            Parallel.forRanges(count: planes, minimumWork: 1 << 14, workPerItem: OH * OW * KH * KW) { range in
                for p in range {
                    let n = p / s.outChannels, m = p % s.outChannels, c = m / mult
                    let xin = x + (n * s.inChannels + c) * H * W
                    let out = y + p * OH * OW
                    let wk = w + m * KH * KW
                    for oh in 0..<OH {
                        let orow = out + oh * OW
                        orow.update(repeating: 0, count: OW)
                        for kh in 0..<KH {
                            let ih = oh * sh + kh * dh - ph
                            if ih < 0 || ih >= H { continue }
                            let irow = xin + ih * W
                            for kw in 0..<KW {
                                let wv = wk[kh * KW + kw]
                                let src = irow + (kw * dw - pw)
                                let (lo, hi) = ranges[kw]
                                if sw == 1 {
                                    for ow in lo..<hi { orow[ow] += wv * src[ow] }
                                } else {
                                    for ow in lo..<hi { orow[ow] += wv * src[ow * sw] }
                                }
                            }
                        }
                        epilogue(orow, OW, bias?[m] ?? 0)
                    }
                }
            }
        }
    }

    /// 3×3 depthwise convolution, stride 1 or 2 across, any stride down, no dilation, by the C
    /// kernels, bias and activation fused: eight channels at a time, vectorized across channels
    /// (`DirectGemm.depthwise3x3x8`), where the channel multiplier is 1; otherwise one plane at a
    /// time, vectorized along the row (`DirectGemm.depthwise3x3`).
    static func depthwise3x3(x: UnsafePointer<Float>, w: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                             y: UnsafeMutablePointer<Float>, shape s: ConvShape, window g: WindowGeometry,
                             epilogue: ConvEpilogue) {
        let (H, W) = (g.input[1], g.input[2])
        let (OH, OW) = (g.output[1], g.output[2])
        let (sh, sw) = (g.strides[1], g.strides[2])
        let (ph, pw) = (g.padsBegin[1], g.padsBegin[2])
        let mult = s.outChannels / s.inChannels
        let planes = s.batch * s.outChannels
        let activation: KernelActivation
        let rows: RowEpilogue?
        switch epilogue {
        case .activation(let a): (activation, rows) = (a, nil)
        case .rows(let f): (activation, rows) = (.none, f)
        }
        // Channels eight at a time (vectorized across channels) where the multiplier is 1; the
        // remaining planes one at a time.
        let groups8 = mult == 1 ? s.outChannels / 8 : 0
        let single = s.outChannels - groups8 * 8
        let scratch = max(DirectGemm.depthwiseScratch(outWidth: OW, strideW: sw),
                          groups8 > 0 ? DirectGemm.depthwise8Scratch(outHeight: OH, outWidth: OW, strides: (sh, sw)) : 0)
        // With few channel units (early, wide layers at batch 1) each is split into strips of
        // output rows, so every thread gets work: a strip is the same kernel with the window
        // shifted down (top padding o0·sh less).
        let units = s.batch * (groups8 + single)
        let wanted = Parallel.threads * 4
        let strips = units >= wanted ? 1 : min(OH, (wanted + units - 1) / units)
        let rowsPer = (OH + strips - 1) / strips
        Parallel.forRanges(count: units * strips, minimumWork: 1 << 14, workPerItem: rowsPer * OW * 9 * planes / max(units, 1)) { range in
            Scratch.withBuffer(count: scratch) { buffer in
                for t in range {
                    let unit = t / strips, strip = t % strips
                    let o0 = strip * rowsPer, o1 = min(OH, o0 + rowsPer)
                    guard o1 > o0 else { continue }
                    let n = unit / (groups8 + single), u = unit % (groups8 + single)
                    let first = u < groups8 ? u * 8 : groups8 * 8 + (u - groups8)
                    let count = u < groups8 ? 8 : 1
                    let out = y + (n * s.outChannels + first) * OH * OW + o0 * OW
                    let top = ph - o0 * sh
                    if count == 8 {
                        DirectGemm.depthwise3x3x8(x: x + (n * s.inChannels + first) * H * W, plane: H * W, height: H, width: W,
                                                  w: w + first * 9, bias: bias.map { $0 + first }, y: out, outPlane: OH * OW,
                                                  outHeight: o1 - o0, outWidth: OW, strides: (sh, sw), padsBegin: (top, pw),
                                                  activation: activation, scratch: buffer)
                    } else {
                        let m = first, c = m / mult
                        DirectGemm.depthwise3x3(x: x + (n * s.inChannels + c) * H * W, height: H, width: W, w: w + m * 9,
                                                bias: bias?[m] ?? 0, y: out, outHeight: o1 - o0, outWidth: OW,
                                                strides: (sh, sw), padsBegin: (top, pw), activation: activation, scratch: buffer)
                    }
                    if let rows {
                        for c in 0..<count { for r in 0..<(o1 - o0) { rows(out + c * OH * OW + r * OW, OW, 0) } }
                    }
                }
            }
        }
    }

    /// Tests and measurements: `COMPRESS_POINTWISE=columns` keeps 1×1 convolutions over few
    /// positions on the column tiles instead of `DirectGemm.multiplyTransposed` (same bits).
    nonisolated(unsafe) public static var transposedProducts = ProcessInfo.processInfo.environment["COMPRESS_POINTWISE"] != "columns"

    /// Tests: how many convolutions `depthwiseKxK` has run (a test checks which path a case took).
    static var kxkRuns: Int { kxkLock.lock(); defer { kxkLock.unlock() }; return kxkCount }
    nonisolated(unsafe) private static var kxkCount = 0
    private static let kxkLock = NSLock()

    /// Tests: false keeps 3×3 depthwise windows on narrow planes on `depthwise3x3` (the k×k
    /// kernel takes them by default; the same bits).
    nonisolated(unsafe) public static var narrowDepthwiseThroughKxK = true

    /// Tests and measurements: `COMPRESS_DEPTHWISE=loops` sends depthwise windows other than
    /// 3×3 to the scalar tap-by-tap loops instead of `depthwiseKxK` (and keeps narrow 3×3 windows
    /// on `depthwise3x3`).
    nonisolated(unsafe) public static var depthwiseThroughLoops = ProcessInfo.processInfo.environment["COMPRESS_DEPTHWISE"] == "loops"

    /// Depthwise convolution with channel multiplier 1 and any window, stride and dilation (5×5
    /// and 7×7 of EfficientNet and MobileNetV3) by the C kernel, bias and activation fused:
    /// eight channels at a time vectorized across channels (`DirectGemm.depthwiseKxK`), the
    /// last group narrower. Split into strips of output rows as `depthwise3x3` is.
    static func depthwiseKxK(x: UnsafePointer<Float>, w: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                             y: UnsafeMutablePointer<Float>, shape s: ConvShape, window g: WindowGeometry,
                             epilogue: ConvEpilogue) {
        let (H, W) = (g.input[1], g.input[2])
        let (OH, OW) = (g.output[1], g.output[2])
        let (KH, KW) = (g.kernel[1], g.kernel[2])
        let (sh, sw) = (g.strides[1], g.strides[2])
        let (dh, dw) = (g.dilations[1], g.dilations[2])
        let (ph, pw) = (g.padsBegin[1], g.padsBegin[2])
        let activation: KernelActivation
        let rows: RowEpilogue?
        switch epilogue {
        case .activation(let a): (activation, rows) = (a, nil)
        case .rows(let f): (activation, rows) = (.none, f)
        }
        let C = s.outChannels
        kxkLock.lock(); kxkCount += 1; kxkLock.unlock()
        let groups = (C + 7) / 8
        let units = s.batch * groups
        let wanted = Parallel.threads * 4
        let strips = units >= wanted ? 1 : min(OH, (wanted + units - 1) / units)
        let rowsPer = (OH + strips - 1) / strips
        let scratch = DirectGemm.depthwiseKxKScratch(kernel: (KH, KW), outHeight: rowsPer, outWidth: OW, strides: (sh, sw),
                                                     dilations: (dh, dw))
        Parallel.forRanges(count: units * strips, minimumWork: 1 << 14, workPerItem: rowsPer * OW * KH * KW * 8) { range in
            Scratch.withBuffer(count: scratch) { buffer in
                for t in range {
                    let unit = t / strips, strip = t % strips
                    let o0 = strip * rowsPer, o1 = min(OH, o0 + rowsPer)
                    guard o1 > o0 else { continue }
                    let n = unit / groups, first = (unit % groups) * 8
                    let count = min(8, C - first)
                    let out = y + (n * C + first) * OH * OW + o0 * OW
                    DirectGemm.depthwiseKxK(x: x + (n * s.inChannels + first) * H * W, plane: H * W, channels: count,
                                            height: H, width: W, kernel: (KH, KW), w: w + first * KH * KW,
                                            bias: bias.map { $0 + first }, y: out, outPlane: OH * OW, outHeight: o1 - o0,
                                            outWidth: OW, strides: (sh, sw), dilations: (dh, dw), padsBegin: (ph - o0 * sh, pw),
                                            activation: activation, scratch: buffer)
                    if let rows {
                        for c in 0..<count { for r in 0..<(o1 - o0) { rows(out + c * OH * OW + r * OW, OW, 0) } }
                    }
                }
            }
        }
    }

    /// Transposed convolution (ONNX ConvTranspose), weights `[C, M/group, kernel…]`:
    /// `Y[n, m, i·stride − padBegin + k·dilation] += W[c, m, k] · X[n, c, i]`, summed over the
    /// input channels `c` of `m`'s group, then the bias. Method: per image and group,
    /// `cols = W_gᵀ · X_g` (sgemm), then col2im scatters the columns into the output.
    /// `shape.window` is the transposed geometry (`WindowGeometry.transposed`).
    public static func transposed(x: UnsafePointer<Float>, w: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                                  y: UnsafeMutablePointer<Float>, shape s: ConvShape, epilogue convEpilogue: ConvEpilogue = .bias) {
        let epilogue = convEpilogue.rowFunction
        let g = s.liftedWindow
        let inS = g.inputCount, outS = g.outputCount, taps = g.kernelCount
        let cg = s.inChannels / s.groups, mg = s.outChannels / s.groups
        let rows = mg * taps
        y.update(repeating: 0, count: s.batch * s.outChannels * outS)
        Scratch.withBuffer(count: rows * inS) { col in
            for n in 0..<s.batch {
                for gi in 0..<s.groups {
                    let xg = x + (n * s.inChannels + gi * cg) * inS
                    BLAS.sgemm(transA: true, m: rows, n: inS, k: cg, a: w + gi * cg * rows, lda: rows,
                               b: xg, ldb: inS, c: col, ldc: inS)
                    let yg = y + (n * s.outChannels + gi * mg) * outS
                    col2im(col: col, channels: mg, window: g, y: yg)
                    for m in 0..<mg { epilogue(yg + m * outS, outS, bias?[gi * mg + m] ?? 0) }
                }
            }
        }
    }

    /// Scatter-adds column rows `(m, kd, kh, kw)` over input positions into output planes.
    static func col2im(col: UnsafePointer<Float>, channels: Int, window g: WindowGeometry, y: UnsafeMutablePointer<Float>) {
        let (D, H, W) = (g.input[0], g.input[1], g.input[2])
        let (OD, OH, OW) = (g.output[0], g.output[1], g.output[2])
        let (KD, KH, KW) = (g.kernel[0], g.kernel[1], g.kernel[2])
        let (sd, sh, sw) = (g.strides[0], g.strides[1], g.strides[2])
        let (dd, dh, dw) = (g.dilations[0], g.dilations[1], g.dilations[2])
        let (pd, ph, pw) = (g.padsBegin[0], g.padsBegin[1], g.padsBegin[2])
        let taps = KD * KH * KW, inS = D * H * W, outPlane = OD * OH * OW
        // Output channels are independent; their taps accumulate into the same plane.
        Parallel.forRanges(count: channels, minimumWork: 1 << 16, workPerItem: taps * inS) { range in
            for m in range {
                let ym = y + m * outPlane
                for t in 0..<taps {
                    let kd = t / (KH * KW), kh = (t / KW) % KH, kw = t % KW
                    let src0 = col + (m * taps + t) * inS
                    let owOff = kw * dw - pw
                    // Inputs iw whose output iw·sw + owOff lies in 0..<OW.
                    let (lo, hi) = validRange(offset: owOff, stride: sw, inCount: OW, outCount: W)
                    for id in 0..<D {
                        let od = id * sd + kd * dd - pd
                        if od < 0 || od >= OD { continue }
                        for ih in 0..<H {
                            let oh = ih * sh + kh * dh - ph
                            if oh < 0 || oh >= OH { continue }
                            let src = src0 + (id * H + ih) * W
                            let dst = ym + (od * OH + oh) * OW + owOff
                            for iw in lo..<hi { dst[iw * sw] += src[iw] }
                        }
                    }
                }
            }
        }
    }
}
