import Foundation
import CKernels

/// Dense 3×3 stride-1 undilated 2-d convolutions (one group) by Winograd F(2×2, 3×3) (Lavin &
/// Gray 2016): 16 products of [oc × ic] transformed weights by [ic × tiles] transformed input
/// tiles instead of one [oc × 9·ic] by [9·ic × positions] product, 2.25× fewer multiply-adds.
///
/// Steps: the weights' transform U = G g Gᵀ (16 matrices, packed for `DirectGemm`; kept with the
/// weights' `PackedWeights` entry when the caller passes one, else computed per call); the input
/// transform V = Bᵀ d B of every 4 × 4 tile at step 2 (zero outside the input), channels in
/// parallel (`ck_winograd_input`); the 16 products M = U · V through the GEMM kernel in use, all
/// 16 × column panels as one parallel loop; the output transform Aᵀ M A with bias and activation
/// (`ck_winograd_output`), output channels in parallel. Results differ from the direct product by
/// rounding only (a few 1e-6 of Σ|w·x|, WinogradTests), except that an infinite input can give
/// NaN where the direct product gives ±inf (the transforms subtract it from itself).
///
/// Measured (AMD EPYC, AVX-512, one thread, ResNet-18 3×3 layers with relu, C harness): 64 ch
/// 56×56 1.08×, 128 ch 28×28 1.36×, 256 ch 14×14 1.43×, 512 ch 7×7 1.49× faster than the
/// implicit product (AVX2: 1.30×, 1.41×, 1.50×, 1.83×).
public enum Winograd {
    /// `COMPRESS_WINOGRAD=0` turns it off (read once; tests set it).
    nonisolated(unsafe) public static var enabled = ProcessInfo.processInfo.environment["COMPRESS_WINOGRAD"] != "0"

    /// Input and output channels below this take the implicit product instead (the transforms'
    /// share of the work grows as the products shrink). Tests lower it.
    nonisolated(unsafe) public static var minimumChannels = 64

    /// Bytes the transformed input and products (16·(C + M) floats per tile) may take at once:
    /// larger planes are done in blocks of tile rows, so memory does not grow with the plane (a
    /// ResNet-18 or YOLOX layer at 416 fits in one to a few blocks). Tests lower it.
    nonisolated(unsafe) public static var blockBytes = 16 << 20

    /// Convolutions `forward` has run (tests check the path was taken).
    static var runs: Int { runLock.lock(); defer { runLock.unlock() }; return runCount }
    nonisolated(unsafe) private static var runCount = 0
    private static let runLock = NSLock()

    /// Whether `forward` takes this convolution (one image at a time).
    static func applies(_ s: ConvShape, window g3: WindowGeometry) -> Bool {
        enabled && DirectGemm.usesAVX2 && s.groups == 1 && s.window.rank == 2
            && g3.kernel == [1, 3, 3] && g3.strides == [1, 1, 1] && g3.dilations == [1, 1, 1]
            && s.inChannels >= minimumChannels && s.outChannels >= minimumChannels
            && g3.output[1] > 0 && g3.output[2] > 0
    }

    /// Floats of the packed transformed weights: 16 matrices of `packedSize(oc, ic)`.
    static func packedSize(outChannels m: Int, inChannels c: Int) -> Int { 16 * DirectGemm.packedSize(m: m, k: c) }

    /// Writes the packed transformed weights of `w` ([m, c, 3, 3]) into `u`.
    static func transformWeights(m: Int, c: Int, w: UnsafePointer<Float>, into u: UnsafeMutablePointer<Float>) {
        let ps = DirectGemm.packedSize(m: m, k: c)
        Scratch.withBuffer(count: 16 * m * c) { raw in
            ck_winograd_weights(m, c, w, raw)
            for xi in 0..<16 { DirectGemm.packA(m: m, k: c, a: raw + xi * m * c, lda: c, into: u + xi * ps) }
        }
    }

    /// Every image of the convolution (`applies` must hold); `activation` fused with the bias.
    /// `packedWeights`: the weights' `PackedWeights` buffer, with which the transformed weights
    /// are kept.
    static func forward(x: UnsafePointer<Float>, w: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                        y: UnsafeMutablePointer<Float>, shape s: ConvShape, window g3: WindowGeometry,
                        activation: KernelActivation, packedWeights: UnsafePointer<Float>?) {
        runLock.lock(); runCount += 1; runLock.unlock()
        let C = s.inChannels, M = s.outChannels
        let count = packedSize(outChannels: M, inChannels: C)
        if let pw = packedWeights,
           let u = PackedWeights.derived(from: pw, count: count, make: { transformWeights(m: M, c: C, w: w, into: $0) }) {
            run(x: x, u: u, bias: bias, y: y, shape: s, window: g3, activation: activation)
        } else {
            Scratch.withBuffer(count: count) { u in
                transformWeights(m: M, c: C, w: w, into: u)
                run(x: x, u: UnsafePointer(u), bias: bias, y: y, shape: s, window: g3, activation: activation)
            }
        }
    }

    private static func run(x: UnsafePointer<Float>, u: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                            y: UnsafeMutablePointer<Float>, shape s: ConvShape, window g3: WindowGeometry,
                            activation: KernelActivation) {
        let C = s.inChannels, M = s.outChannels
        let (H, W) = (g3.input[1], g3.input[2]), (OH, OW) = (g3.output[1], g3.output[2])
        let (ph, pw) = (g3.padsBegin[1], g3.padsBegin[2])
        let tw = (OW + 1) / 2
        // Tile rows per block (the block's tiles are the products' columns).
        let rowsPerBlock = max(1, min((OH + 1) / 2, blockBytes / max(1, 16 * (C + M) * tw * 4)))
        let T = rowsPerBlock * tw
        let ps = DirectGemm.packedSize(m: M, k: C)
        let transformScratch = Int(ck_winograd_scratch(tw))
        let width = Int(ck_gemm_panel_width()), tile = Int(ck_gemm_row_tile())
        let maxPanels = (T + width - 1) / width
        let wanted = Parallel.threads * 4
        let rowGroups = 16 * maxPanels >= wanted ? 1 : min((M + tile - 1) / tile, max(1, wanted / (16 * maxPanels)))
        let rowsPer = ((M + rowGroups - 1) / rowGroups + tile - 1) / tile * tile
        let groups = (M + rowsPer - 1) / rowsPer
        let none = KernelActivation.none.raw, act = activation.raw
        let batch = ck_batch(per: 0, b_stride: 0, c_stride: 0, b_scale: nil)
        Scratch.withBuffer(count: 16 * C * T) { v in
            Scratch.withBuffer(count: 16 * M * T) { mm in
                for n in 0..<s.batch {
                  for r0 in stride(from: 0, to: (OH + 1) / 2, by: rowsPerBlock) {
                    // This block: tile rows r0 ..< r0 + th, output rows from 2·r0 (input row
                    // 2·(r0 + t) − ph: the same plane with the top pad moved up by 2·r0).
                    let th = min(rowsPerBlock, (OH + 1) / 2 - r0), T = th * tw
                    let panels = (T + width - 1) / width
                    let bph = ph - 2 * r0, bOH = min(OH - 2 * r0, 2 * th)
                    let xn = x + n * C * H * W, yn = y + n * M * OH * OW + 2 * r0 * OW
                    Parallel.forRanges(count: C, minimumWork: 1 << 15, workPerItem: 16 * T) { r in
                        Scratch.withBuffer(count: transformScratch) { buf in
                            ck_winograd_input(xn, r.lowerBound, r.upperBound, H, W, bph, pw, th, tw, v, T, C * T, buf)
                        }
                    }
                    Parallel.forRanges(count: 16 * groups * panels, minimumWork: 1 << 17,
                                       workPerItem: min(M, rowsPer) * width * C) { range in
                        Scratch.withBuffer(count: Int(ck_gemm_scratch(C))) { buf in
                            for t in range {
                                let xi = t / (groups * panels), rest = t % (groups * panels)
                                let i0 = (rest / panels) * rowsPer, i1 = min(M, i0 + rowsPer)
                                let j0 = (rest % panels) * width, j1 = min(T, j0 + width)
                                let a = u + xi * ps + i0 * C
                                ck_gemm_columns(i1 - i0, C, a, C, a, v + xi * C * T, T, mm + xi * M * T + i0 * T, T,
                                                nil, none, batch, j0, j1, buf)
                            }
                        }
                    }
                    Parallel.forRanges(count: M, minimumWork: 1 << 15, workPerItem: 16 * T) { r in
                        Scratch.withBuffer(count: transformScratch) { buf in
                            // One channel a call: the kernel's planes are bOH × OW, a block of the
                            // OH × OW plane (its channel stride would be bOH·OW).
                            for oc in r {
                                ck_winograd_output(mm + oc * T, T, M * T, 0, 1, th, tw, yn + oc * OH * OW, bOH, OW,
                                                   bias.map { $0 + oc }, act, buf)
                            }
                        }
                    }
                  }
                }
            }
        }
    }
}
