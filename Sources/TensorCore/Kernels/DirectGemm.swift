import Foundation
import CKernels

/// An activation the C kernels apply in their store, together with the bias.
public struct KernelActivation: Equatable, Sendable {
    let raw: ck_activation
    public static let none = KernelActivation(raw: ck_activation(kind: 0, p0: 0, p1: 0))
    /// max(x, 0), NaN passing through.
    public static let relu = KernelActivation(raw: ck_activation(kind: 1, p0: 0, p1: 0))
    public static func clip(min: Float, max: Float) -> KernelActivation { KernelActivation(raw: ck_activation(kind: 2, p0: min, p1: max)) }
    public static func leakyRelu(alpha: Float) -> KernelActivation { KernelActivation(raw: ck_activation(kind: 3, p0: alpha, p1: 0)) }
    /// 1 / (1 + e^-x), e^x by a polynomial of about 1 ulp.
    public static let sigmoid = KernelActivation(raw: ck_activation(kind: 4, p0: 0, p1: 0))
    /// x · σ(x) (SiLU / Swish).
    public static let silu = KernelActivation(raw: ck_activation(kind: 5, p0: 0, p1: 0))
    /// max(0, min(1, α·x + β)) (ONNX HardSigmoid), NaN kept.
    public static func hardSigmoid(alpha: Float, beta: Float) -> KernelActivation { KernelActivation(raw: ck_activation(kind: 6, p0: alpha, p1: beta)) }
    /// x · max(0, min(1, x/6 + 1/2)) (ONNX HardSwish), NaN kept.
    public static let hardSwish = KernelActivation(raw: ck_activation(kind: 7, p0: 0, p1: 0))
    /// tanh x by a polynomial and e^x (a few ulp, see DirectKernelTests).
    public static let tanh = KernelActivation(raw: ck_activation(kind: 8, p0: 0, p1: 0))
    /// e^x over the whole range (+Inf on overflow, subnormal results rounded).
    public static let exp = KernelActivation(raw: ck_activation(kind: 9, p0: 0, p1: 0))
    /// erf x (N. Juffa's polynomial and e^x).
    public static let erf = KernelActivation(raw: ck_activation(kind: 10, p0: 0, p1: 0))

    /// Applies the activation to `count` floats from `x` into `y` (which may be `x`), vectorized,
    /// in parallel for large arrays.
    public func apply(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
        let raw = self.raw
        let block = 1 << 14
        Parallel.forRanges(count: (count + block - 1) / block, minimumWork: 1 << 16, workPerItem: block) { r in
            let lo = r.lowerBound * block, hi = min(count, r.upperBound * block)
            ck_activate(x + lo, y + lo, hi - lo, raw)
        }
    }
    public static func == (a: KernelActivation, b: KernelActivation) -> Bool {
        a.raw.kind == b.raw.kind && a.raw.p0 == b.raw.p0 && a.raw.p1 == b.raw.p1
    }
}

/// What a convolution applies to each output row after the products: an activation the kernels
/// fuse into their store (with the bias), or an arbitrary function of the row.
public enum ConvEpilogue {
    case activation(KernelActivation)
    case rows(RowEpilogue)

    /// Bias only.
    public static let bias = ConvEpilogue.activation(.none)

    /// The same epilogue as a per-row function (bias added inside).
    public var rowFunction: RowEpilogue {
        switch self {
        case .rows(let f): return f
        case .activation(let a):
            let (lo, hi) = (a.raw.p0, a.raw.p1)
            switch a.raw.kind {
            case 1: return { p, n, b in for i in 0..<n { let v = p[i] + b; p[i] = v < 0 ? 0 : v } }
            case 2: return { p, n, b in for i in 0..<n { p[i] = min(max(p[i] + b, lo), hi) } }
            case 3: return { p, n, b in for i in 0..<n { let v = p[i] + b; p[i] = v >= 0 ? v : lo * v } }
            case 4...:
                let raw = a.raw
                return { p, n, b in
                    if b != 0 { for i in 0..<n { p[i] += b } }
                    ck_activate(p, p, n, raw)
                }
            default: return biasEpilogue
            }
        }
    }
}

/// A register-tiled single-precision product with the bias and activation applied as C is
/// stored (`C = act(bias ⊗ 1 + A · B)`), for the convolution shapes where OpenBLAS's
/// separate passes (bias fill, product, activation) and thread hand-offs cost more than the
/// arithmetic: 1×1 and small im2col convolutions. A is read in place (row-major), B is packed
/// 16 columns at a time; work is split over column panels and row groups.
public enum DirectGemm {
    /// Whether the AVX2 + FMA kernels are in use on this CPU.
    public static var usesAVX2: Bool { ck_uses_avx2() != 0 }

    /// Whether the AVX-512 product is in use on this CPU (`COMPRESS_NO_AVX512=1` turns it off).
    public static var usesAVX512: Bool { ck_uses_avx512() != 0 }

    /// The kernels' instruction-set variants, best last.
    public enum Variant: Int32, CaseIterable, Sendable {
        case baseline = 0, avx2 = 1, avx512 = 2
    }

    /// The variants this CPU (and the environment) can run: tests check each of them.
    public static var availableVariants: [Variant] { Variant.allCases.filter { $0.rawValue <= ck_supported_level() } }

    /// Tests: use at most `variant` (nil: the best the CPU has).
    public static func force(_ variant: Variant?) { ck_force_level(variant?.rawValue ?? -1) }

    /// Tests: run the baseline (non-AVX2) variants.
    public static func forceBaseline(_ on: Bool) { ck_force_baseline(on ? 1 : 0) }

    /// `C[i, j] = act(bias[i] + Σ_p A[i, p] · B[p, j])` for `i < m`, `j < n`.
    /// - Parameter images: a batched layout — the `n` columns are `images.count` images of
    ///   `n / count` columns each, image `t` of B at `b + t·bStride` and of C at `c + t·cStride`
    ///   (1×1 convolutions over a batch as one product, without copying).
    /// - Parameter bScale: when given (one image only), B's row p is multiplied by `bScale[p]` as
    ///   it is read (the same bits as multiplying B first).
    public static func multiply(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                                c: UnsafeMutablePointer<Float>, ldc: Int, bias: UnsafePointer<Float>?, activation: KernelActivation,
                                images: (count: Int, bStride: Int, cStride: Int) = (1, 0, 0), packedA: UnsafePointer<Float>? = nil,
                                bScale: UnsafePointer<Float>? = nil) {
        guard m > 0, n > 0 else { return }
        precondition(bScale == nil || images.count == 1, "DirectGemm.multiply: bScale is one image's scale")
        let batch = ck_batch(per: images.count > 1 ? n / images.count : 0, b_stride: images.bStride, c_stride: images.cStride,
                             b_scale: bScale)
        panelTasks(m: m, n: n, k: k) { i0, i1, j0, j1, buf in
            ck_gemm_columns(i1 - i0, k, a + i0 * lda, lda, packedA.map { $0 + i0 * k }, b, ldb, c + i0 * ldc, ldc,
                            bias.map { $0 + i0 }, activation.raw, batch, j0, j1, buf)
        }
    }

    /// One group of a 2-d convolution (`x` its `channels` input planes of `input`, `w` its `m`
    /// filters `[m, channels, kh, kw]`, `y` its `m` output planes) as a product whose B panels are
    /// gathered from the input as they are needed (`ck_conv_columns`: k × 32 panels with AVX-512,
    /// k × 16 with AVX2, each multiplied by that variant's GEMM tile), with no column matrix;
    /// bias and activation fused. Returns false, having done nothing, where that kernel does not
    /// run (the baseline variant: no AVX2; a stride across above 2; more than 64 taps): the
    /// caller then takes the im2col path, which gives the same results bit for bit. `dryRun`:
    /// only answer whether it would run.
    public static func convolveImplicitly(m: Int, channels: Int, input: (Int, Int), kernel: (Int, Int), strides: (Int, Int),
                                          dilations: (Int, Int), padsBegin: (Int, Int), output: (Int, Int),
                                          x: UnsafePointer<Float>, w: UnsafePointer<Float>, packedW: UnsafePointer<Float>?,
                                          y: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>?, activation: KernelActivation,
                                          dryRun: Bool = false) -> Bool {
        var g = ck_conv2d(c: channels, h: input.0, w: input.1, kh: kernel.0, kw: kernel.1, sh: strides.0, sw: strides.1,
                          dh: dilations.0, dw: dilations.1, ph: padsBegin.0, pw: padsBegin.1, oh: output.0, ow: output.1)
        guard m > 0, output.0 > 0, ck_conv_implicit(&g) != 0 else { return false }
        if dryRun { return true }
        let k = channels * kernel.0 * kernel.1, n = output.0 * output.1
        let act = activation.raw
        withUnsafePointer(to: &g) { gp in
            panelTasks(m: m, n: n, k: k, scratch: Int(ck_conv_scratch(gp))) { i0, i1, j0, j1, buf in
                ck_conv_columns(i1 - i0, gp, x, w + i0 * k, k, packedW.map { $0 + i0 * k }, y + i0 * n, bias.map { $0 + i0 },
                                act, j0, j1, buf)
            }
        }
        return true
    }

    /// Whether `multiplyTransposed` should take an `m × n` product (one image, packed A): the
    /// AVX-512 kernel runs, and n columns fill the column tiles' 16-lane vectors markedly worse
    /// (7×7 = 49 columns: 64 lanes, 77 %) than m rows fill the transposed kernel's (1152
    /// channels: 100 %). On a 2-core EPYC, one thread: m 1152 k 192 n 49 279 → 231 µs, m 160
    /// k 960 n 49 180 → 134 µs; m 672 k 112 n 196 (98 % either way) 330 → 327 µs.
    public static func prefersTransposed(m: Int, n: Int) -> Bool {
        guard m >= 16, n > 0, n <= 512, ck_gemm_t_available() != 0 else { return false }
        func fill(_ x: Int) -> Double { Double(x) / Double((x + 15) / 16 * 16) }
        return fill(n) < 0.9 && fill(m) > fill(n) + 0.05
    }

    /// Tests: how many products `multiplyTransposed` has run (a convolution test checks that
    /// its case took that path).
    static var transposedRuns: Int { transposedLock.lock(); defer { transposedLock.unlock() }; return transposedCount }
    nonisolated(unsafe) private static var transposedCount = 0
    private static let transposedLock = NSLock()

    /// Floats of an `m × k` matrix in `multiplyTransposed`'s layout (`packAT`).
    public static func packedTransposedSize(m: Int, k: Int) -> Int { Int(ck_packed_at_size(m, k)) }

    /// Writes `m × k` A (row stride `lda`) as k-major panels of 32 rows (`packedTransposedSize`
    /// floats), the layout `multiplyTransposed` reads.
    public static func packAT(m: Int, k: Int, a: UnsafePointer<Float>, lda: Int, into out: UnsafeMutablePointer<Float>) {
        ck_pack_at(m, k, a, lda, out)
    }

    /// `multiply` (one image) computed transposed by the AVX-512 kernel (`ck_gemm_t_columns`):
    /// the vector along A's rows, the register tile along B's columns; the same values bit for
    /// bit. `packedAT`: A as `packAT` lays it out. Only where `ck_gemm_t_available()` (the caller
    /// asks `prefersTransposed`); work split over panels of 32 rows.
    public static func multiplyTransposed(m: Int, n: Int, k: Int, packedAT: UnsafePointer<Float>, b: UnsafePointer<Float>,
                                          ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int, bias: UnsafePointer<Float>?,
                                          activation: KernelActivation) {
        precondition(ck_gemm_t_available() != 0, "multiplyTransposed: the AVX-512 kernel is not in use")
        guard m > 0, n > 0 else { return }
        transposedLock.lock(); transposedCount += 1; transposedLock.unlock()
        // Few panels (160 channels: 5) shared by two threads left one idle for a fifth of the
        // product: each panel's positions are then split into parts of at least one full tile.
        let panels = (m + 31) / 32
        let wanted = Parallel.threads * 4
        let parts = panels >= wanted ? 1 : max(1, min(n / 12, (wanted + panels - 1) / panels))
        Parallel.forRanges(count: panels * parts, minimumWork: 1 << 17, workPerItem: 32 * ((n + parts - 1) / parts) * max(k, 1)) { range in
            // Consecutive parts of one panel go as one call.
            var t = range.lowerBound
            while t < range.upperBound {
                let panel = t / parts, first = t % parts
                let last = min(parts, first + (range.upperBound - t))
                ck_gemm_t_columns(m, k, packedAT, b, ldb, c, ldc, bias, activation.raw, panel * 32, min(m, panel * 32 + 32),
                                  n * first / parts, n * last / parts)
                t += last - first
            }
        }
    }

    /// Floats of an `m × k` matrix in the packed layout (`packA`).
    public static func packedSize(m: Int, k: Int) -> Int { Int(ck_packed_a_size(m, k)) }

    /// Writes `m × k` A (row stride `lda`) in the products' k-major tile layout (groups of 6
    /// rows, k steps of 6 values; the last group padded with zeros), `packedSize(m:k:)` floats.
    public static func packA(m: Int, k: Int, a: UnsafePointer<Float>, lda: Int, into out: UnsafeMutablePointer<Float>) {
        ck_pack_a(m, k, a, lda, out)
    }

    /// Splits an `m × n` product into tasks of 16-column panels (32 with AVX-512; and of row
    /// groups, multiples of the 6- or 12-row tile, when there are too few panels to share out) run on the thread pool; each
    /// task gets rows `i0..<i1`, columns `j0..<j1` and its own scratch.
    static func panelTasks(m: Int, n: Int, k: Int, scratch: Int? = nil, _ body: (Int, Int, Int, Int, UnsafeMutablePointer<Float>) -> Void) {
        // The kernel in use packs `width` columns at a time into a register tile of `tile` rows.
        let width = Int(ck_gemm_panel_width()), tile = Int(ck_gemm_row_tile())
        let panels = (n + width - 1) / width
        let wanted = Parallel.threads * 4
        let rowGroups = panels >= wanted ? 1 : min((m + tile - 1) / tile, max(1, wanted / panels))
        let rowsPer = ((m + rowGroups - 1) / rowGroups + tile - 1) / tile * tile
        let groups = (m + rowsPer - 1) / rowsPer
        let scratch = scratch ?? Int(ck_gemm_scratch(k))
        Parallel.forRanges(count: panels * groups, minimumWork: 1 << 17, workPerItem: min(m, rowsPer) * width * max(k, 1)) { range in
            Scratch.withBuffer(count: scratch) { buf in
                // Consecutive panels of one row group go as one call: the kernels pack several
                // panels at a time and write longer runs of each C row (ck_gemm_scratch).
                var t = range.lowerBound
                while t < range.upperBound {
                    let g = t / panels, first = t % panels
                    let last = min(panels, first + (range.upperBound - t))
                    let i0 = g * rowsPer, i1 = min(m, i0 + rowsPer)
                    body(i0, i1, first * width, min(n, last * width), buf)
                    t += last - first
                }
            }
        }
    }

    /// One 3×3 depthwise plane (no dilation, stride across 1 or 2), bias and activation fused.
    public static func depthwise3x3(x: UnsafePointer<Float>, height: Int, width: Int, w: UnsafePointer<Float>, bias: Float,
                                    y: UnsafeMutablePointer<Float>, outHeight: Int, outWidth: Int,
                                    strides: (Int, Int), padsBegin: (Int, Int), activation: KernelActivation,
                                    scratch: UnsafeMutablePointer<Float>) {
        precondition(strides.1 == 1 || strides.1 == 2, "depthwise3x3: stride across must be 1 or 2")
        ck_depthwise3x3(x, height, width, w, bias, y, outHeight, outWidth, strides.0, strides.1, padsBegin.0, padsBegin.1,
                        activation.raw, scratch)
    }

    /// `depthwise3x3` for eight consecutive channels (planes `plane` and `outPlane` floats
    /// apart, weights `[8, 3, 3]`, `bias` eight values or nil), vectorized across the channels.
    public static func depthwise3x3x8(x: UnsafePointer<Float>, plane: Int, height: Int, width: Int, w: UnsafePointer<Float>,
                                      bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>, outPlane: Int,
                                      outHeight: Int, outWidth: Int, strides: (Int, Int), padsBegin: (Int, Int),
                                      activation: KernelActivation, scratch: UnsafeMutablePointer<Float>) {
        ck_depthwise3x3_c8(x, plane, height, width, w, bias, y, outPlane, outHeight, outWidth, strides.0, strides.1,
                           padsBegin.0, padsBegin.1, activation.raw, scratch)
    }

    /// Scratch floats `depthwise3x3x8` needs.
    public static func depthwise8Scratch(outHeight: Int, outWidth: Int, strides: (Int, Int)) -> Int {
        Int(ck_depthwise3x3_c8_scratch(outHeight, outWidth, strides.0, strides.1))
    }

    /// Depthwise `kernel.0 × kernel.1` over `channels` ≤ 8 consecutive channels (multiplier 1),
    /// any stride and dilation, vectorized across the channels; weights `[channel][kh][kw]`,
    /// `bias` `channels` values or nil, planes `plane` / `outPlane` floats apart.
    public static func depthwiseKxK(x: UnsafePointer<Float>, plane: Int, channels: Int, height: Int, width: Int,
                                    kernel: (Int, Int), w: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                                    y: UnsafeMutablePointer<Float>, outPlane: Int, outHeight: Int, outWidth: Int,
                                    strides: (Int, Int), dilations: (Int, Int), padsBegin: (Int, Int),
                                    activation: KernelActivation, scratch: UnsafeMutablePointer<Float>) {
        precondition(channels >= 1 && channels <= 8, "depthwiseKxK: 1...8 channels")
        ck_depthwise_c8(x, plane, Int32(channels), height, width, kernel.0, kernel.1, w, bias, y, outPlane, outHeight, outWidth,
                        strides.0, strides.1, dilations.0, dilations.1, padsBegin.0, padsBegin.1, activation.raw, scratch)
    }

    /// Scratch floats `depthwiseKxK` needs.
    public static func depthwiseKxKScratch(kernel: (Int, Int), outHeight: Int, outWidth: Int, strides: (Int, Int),
                                           dilations: (Int, Int)) -> Int {
        Int(ck_depthwise_c8_scratch(kernel.0, kernel.1, outHeight, outWidth, strides.0, strides.1, dilations.0, dilations.1))
    }

    /// Scratch floats `depthwise3x3` needs.
    public static func depthwiseScratch(outWidth: Int, strideW: Int) -> Int { Int(ck_depthwise3x3_scratch(outWidth, strideW)) }
}

/// Convolution weights packed once (`DirectGemm.packA`, each group on its own) and reused on
/// every run, keyed by the storage that holds them. An entry lives while its storage does:
/// it is dropped (and its memory freed) when a later lookup finds the storage gone, and a new
/// storage at a recycled address never matches a dead entry.
public enum PackedWeights {
    private struct Key: Hashable {
        let storage: ObjectIdentifier
        let offset: Int
        let groups: Int
        let rows: Int
        let k: Int
    }
    private final class Entry {
        weak var owner: TensorStorage?
        let buffer: UnsafeMutablePointer<Float>
        /// Another form of the same weights (Winograd's transformed matrices), made on first use.
        var derived: UnsafeMutablePointer<Float>?
        var derivedCount = 0
        init(owner: TensorStorage, count: Int) {
            self.owner = owner
            buffer = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
        }
        deinit { buffer.deallocate(); derived?.deallocate() }
    }
    nonisolated(unsafe) private static var entries: [Key: Entry] = [:]
    /// The same entries by their packed buffer (`derived` is asked for with the buffer, by every
    /// transposed 1×1 convolution on every run: a scan of all entries there cost a weak load each).
    nonisolated(unsafe) private static var byBuffer: [UnsafeMutablePointer<Float>: Entry] = [:]
    private static let lock = NSLock()

    /// The packed form of `groups` consecutive `rows × k` weight matrices starting at `base`,
    /// which lies in `storage` (groups one after another, `packedSize(rows, k)` floats each).
    public static func packed(storage: TensorStorage, base: UnsafePointer<Float>, groups: Int, rows: Int, k: Int) -> UnsafePointer<Float> {
        let key = Key(storage: ObjectIdentifier(storage), offset: UnsafeRawPointer(base) - UnsafeRawPointer(storage.base),
                      groups: groups, rows: rows, k: k)
        lock.lock()
        defer { lock.unlock() }
        if let e = entries[key], e.owner === storage { return UnsafePointer(e.buffer) }
        entries = entries.filter { $0.value.owner != nil }
        byBuffer = byBuffer.filter { $0.value.owner != nil }
        let per = DirectGemm.packedSize(m: rows, k: k)
        let e = Entry(owner: storage, count: groups * per)
        for g in 0..<groups { DirectGemm.packA(m: rows, k: k, a: base + g * rows * k, lda: k, into: e.buffer + g * per) }
        entries[key] = e
        byBuffer[e.buffer] = e
        return UnsafePointer(e.buffer)
    }

    /// Another form of the weights whose packed copy is `packed` (a buffer `packed(...)` returned,
    /// its storage alive), `count` floats written by `make` on first use and kept with that entry
    /// (freed with it). Nil when `packed` is no live entry's buffer.
    public static func derived(from packed: UnsafePointer<Float>, count: Int,
                               make: (UnsafeMutablePointer<Float>) -> Void) -> UnsafePointer<Float>? {
        lock.lock()
        defer { lock.unlock() }
        guard let e = byBuffer[UnsafeMutablePointer(mutating: packed)], e.owner != nil else { return nil }
        // (An entry's rows and k fix the count; one derived form per entry: another executor may
        // be reading it, so it is never replaced while the entry lives.)
        if let d = e.derived {
            precondition(e.derivedCount == count, "PackedWeights.derived: a second derived form of one entry")
            return UnsafePointer(d)
        }
        let d = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
        make(d)
        e.derived = d
        e.derivedCount = count
        return UnsafePointer(d)
    }

    /// Whether a packed copy of weights held in `storage` is kept.
    public static func holds(_ storage: TensorStorage) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return entries.values.contains { $0.owner === storage }
    }
}
