// Hand-vectorized float32 kernels for the executor's hottest loops, compiled twice: once for
// the baseline x86-64 / AArch64 target and once with AVX2 + FMA, chosen at run time by CPU
// feature (the way ONNX Runtime's MLAS dispatches). Swift cannot compile one function for
// several targets, so these few loops live in C.
#ifndef CKERNELS_H
#define CKERNELS_H

#include <stddef.h>

/// Activation applied with the bias in the kernels' store: 0 none, 1 Relu (NaN passes
/// through), 2 Clip(p0, p1), 3 LeakyRelu(alpha = p0), 4 Sigmoid, 5 SiLU (x · σ(x)),
/// 6 HardSigmoid(alpha = p0, beta = p1), 7 HardSwish, 8 Tanh, 9 Exp, 10 Erf.
/// Sigmoid, Tanh, Exp and Erf use polynomials of a few ulp (measured in DirectKernelTests).
typedef struct {
    int kind;
    float p0;
    float p1;
} ck_activation;

/// y[i] = act(x[i]) for i < n (x and y may be the same array).
void ck_activate(const float *x, float *y, ptrdiff_t n, ck_activation act);

/// Whether the AVX2 + FMA variants are in use (CPU support; COMPRESS_NO_AVX2=1 turns them off).
int ck_uses_avx2(void);

/// Whether the AVX-512 GEMM is in use (CPU support; COMPRESS_NO_AVX512=1 or COMPRESS_NO_AVX2=1
/// turn it off, leaving the AVX2 + FMA one).
int ck_uses_avx512(void);

/// The best variant this CPU (and the environment) allows: 0 baseline, 1 AVX2 + FMA, 2 AVX-512.
int ck_supported_level(void);

/// Tests: use at most variant `cap` (0 baseline, 1 AVX2 + FMA, 2 AVX-512; -1 no limit).
void ck_force_level(int cap);

/// Tests: 1 forces the baseline variants, 0 returns to CPU detection.
void ck_force_baseline(int on);

/// Columns the GEMM variant in use packs per panel (16 AVX2 / baseline, 32 AVX-512) and the
/// rows of its register tile (6 or 12): work split across threads in multiples of these keeps
/// the tiles full.
int ck_gemm_panel_width(void);
int ck_gemm_row_tile(void);

/// Floats of scratch `ck_gemm_columns` needs for a product with inner dimension `k`.
size_t ck_gemm_scratch(ptrdiff_t k);

/// How the columns of B and C are laid out: `per` columns per image, images `b_stride` and
/// `c_stride` floats apart (a batch of 1×1-convolution inputs and outputs multiplied as one
/// wide product without copying). `per` ≤ 0 means one image holding every column.
typedef struct {
    ptrdiff_t per;
    ptrdiff_t b_stride;
    ptrdiff_t c_stride;
    /// When not NULL: B's row p is multiplied by b_scale[p] as it is packed (a per-input-channel
    /// scale of a 1×1 convolution; the same product `b · s` a separate multiplication computes).
    const float *b_scale;
} ck_batch;

/// C[i, j] = act(bias[i] + Σ_p A[i, p] · B[p, j]) for rows 0..<m and columns j in [j0, j1);
/// A row-major with leading dimension `lda`, B with `ldb`, C with `ldc` (within an image); bias
/// may be NULL. `packed_a`, when not NULL, is the same A laid out by `ck_pack_a` (then `a` is
/// not read). Columns are taken 16 at a time (32 with AVX-512; the last block may be partial). `scratch`
/// holds `ck_gemm_scratch(k)` floats and is private to the caller.
void ck_gemm_columns(ptrdiff_t m, ptrdiff_t k, const float *a, ptrdiff_t lda, const float *packed_a,
                     const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc,
                     const float *bias, ck_activation act, ck_batch batch, ptrdiff_t j0, ptrdiff_t j1,
                     float *scratch);

/// Whether `ck_gemm_t_columns` runs on this CPU (the AVX-512 variant is in use).
int ck_gemm_t_available(void);

/// Floats `ck_pack_at` writes for an m × k matrix.
size_t ck_packed_at_size(ptrdiff_t m, ptrdiff_t k);

/// A as k-major panels of 32 rows for `ck_gemm_t_columns`: panel q holds A[32q + l, p] at
/// [q][p][l], rows past m zero.
void ck_pack_at(ptrdiff_t m, ptrdiff_t k, const float *a, ptrdiff_t lda, float *out);

/// `ck_gemm_columns` (one image, packed A) computed transposed: the vector along A's rows (32
/// a panel) and the register tile along B's columns, for products with few columns (a 1×1
/// convolution on a 7×7 plane). Rows [i0, min(i1, m)) (i0 a multiple of 32), columns [j0, j1). Every
/// value equals `ck_gemm_columns`' bit for bit. Does nothing unless `ck_gemm_t_available()`.
void ck_gemm_t_columns(ptrdiff_t m, ptrdiff_t k, const float *packed_at, const float *b, ptrdiff_t ldb, float *c,
                       ptrdiff_t ldc, const float *bias, ck_activation act, ptrdiff_t i0, ptrdiff_t i1,
                       ptrdiff_t j0, ptrdiff_t j1);

/// Floats `ck_pack_a` writes for an m × k matrix.
size_t ck_packed_a_size(ptrdiff_t m, ptrdiff_t k);

/// A in the products' k-major tile layout: for each group of 6 rows (the last padded with zero
/// rows), k steps of 6 values. Weights are packed once per model and reused every run.
void ck_pack_a(ptrdiff_t m, ptrdiff_t k, const float *a, ptrdiff_t lda, float *out);

/// Floats of scratch `ck_depthwise3x3` needs for output rows `ow` wide at stride `sw`.
size_t ck_depthwise3x3_scratch(ptrdiff_t ow, ptrdiff_t sw);

/// One 3×3 depthwise plane without dilation: y[oh, ow] = act(bias + Σ w[kh, kw] ·
/// x[oh·sh − ph + kh, ow·sw − pw + kw]) (zero outside the input), stride across 1 or 2.
void ck_depthwise3x3(const float *x, ptrdiff_t h, ptrdiff_t w, const float *w9, float bias,
                     float *y, ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t sh, ptrdiff_t sw,
                     ptrdiff_t ph, ptrdiff_t pw, ck_activation act, float *scratch);

/// Floats of scratch `ck_depthwise3x3_c8` needs.
size_t ck_depthwise3x3_c8_scratch(ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t sh, ptrdiff_t sw);

/// `ck_depthwise3x3` for eight consecutive channels at once: input planes `plane` floats apart
/// from `x`, weights `w9[9·c + t]`, `bias8` eight values or NULL, output planes `oplane` apart.
/// Faster than eight single-plane calls when rows are short.
void ck_depthwise3x3_c8(const float *x, ptrdiff_t plane, ptrdiff_t h, ptrdiff_t w, const float *w9,
                        const float *bias8, float *y, ptrdiff_t oplane, ptrdiff_t oh, ptrdiff_t ow,
                        ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t ph, ptrdiff_t pw, ck_activation act,
                        float *scratch);

/// Floats of scratch `ck_depthwise_c8` needs for a kh × kw window.
size_t ck_depthwise_c8_scratch(ptrdiff_t kh, ptrdiff_t kw, ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t sh,
                               ptrdiff_t sw, ptrdiff_t dh, ptrdiff_t dw);

/// Depthwise kh × kw over `nc` ≤ 8 consecutive channels at once (channel multiplier 1), any
/// stride and dilation: y[c, oh, ow] = act(bias[c] + Σ wk[kh·kw·c + a·kw + b] ·
/// x[c, oh·sh − ph + a·dh, ow·sw − pw + b·dw]) (zero outside the input). Input planes `plane`
/// floats apart, output planes `oplane` apart; `bias` nc values or NULL.
void ck_depthwise_c8(const float *x, ptrdiff_t plane, int nc, ptrdiff_t h, ptrdiff_t w,
                     ptrdiff_t kh, ptrdiff_t kw, const float *wk, const float *bias, float *y, ptrdiff_t oplane,
                     ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t dh, ptrdiff_t dw,
                     ptrdiff_t ph, ptrdiff_t pw, ck_activation act, float *scratch);

/// y[r·len + i] = x[r·len + i] · s[r] for r < rows, i < len (x and y may be the same array):
/// a channel-broadcast product, x[N, C, H, W] · s[N, C, 1, 1].
void ck_scale_rows(const float *x, const float *s, float *y, ptrdiff_t rows, ptrdiff_t len);

/// QuantizeLinear then DequantizeLinear of n floats into y (when not NULL): NaN → 0,
/// round(clamp(x / scale, lo, hi)) · scale, round half to even. sums[0] = Σ x², sums[1] =
/// Σ (x − y)² (eight float lanes added in double, then the last n % 8 in double). Bit-identical
/// on every CPU.
void ck_fake_quantize(const float *x, float *y, ptrdiff_t n, float scale, float lo, float hi, double *sums);

/// out[0] = min, out[1] = max of n floats, NaN ignored (+inf, -inf when none).
void ck_min_max(const float *x, ptrdiff_t n, float *out);

/// A 2-d convolution's geometry for `ck_conv_columns`, one group: `c` input channels of h × w,
/// a kh × kw window with strides, dilations and leading pads, output oh × ow.
typedef struct {
    ptrdiff_t c, h, w, kh, kw, sh, sw, dh, dw, ph, pw, oh, ow;
} ck_conv2d;

/// Whether `ck_conv_columns` runs this geometry: the AVX2 or AVX-512 kernels are in use, stride 1 or 2 across,
/// at most 64 taps.
int ck_conv_implicit(const ck_conv2d *g);

/// Floats of scratch `ck_conv_columns` needs (private to the caller).
size_t ck_conv_scratch(const ck_conv2d *g);

/// Convolution as a product without a column matrix: output rows 0..<m (channels; `y` the first,
/// rows oh·ow floats apart), output positions j in [j0, j1) (flattened oh·ow + ow):
/// y[i, j] = act(bias[i] + Σ_r A[i, r] · X(r, j)), r = (c, kh, kw) in the weights' order, X the
/// input value that tap reads (zero in the padding). A is `a` with `lda`, always read (the
/// AVX-512 direct blocks for at most 4 input channels take it even when `packed_a` is given);
/// `packed_a`, when not NULL, is `ck_pack_a`'s layout of the same rows, read by the panel path.
/// Only where `ck_conv_implicit(g)`; aborts otherwise.
void ck_conv_columns(ptrdiff_t m, const ck_conv2d *g, const float *x, const float *a, ptrdiff_t lda,
                     const float *packed_a, float *y, const float *bias, ck_activation act, ptrdiff_t j0,
                     ptrdiff_t j1, float *scratch);

/// A chunk of a parallel loop: `ctx` is the caller's, `index` in 0..<chunks.
typedef void (*ck_task)(void *ctx, ptrdiff_t index);

/// Runs fn(ctx, i) for i in 0..<chunks on up to `threads` threads (the caller's included) of a
/// persistent pool and returns when all are done. Runs inline with one thread, inside another
/// loop's chunk, or while another thread's loop is running.
void ck_parallel_run(ptrdiff_t chunks, int threads, ck_task fn, void *ctx);

/// Winograd F(2×2, 3×3) weights: U[ξ][o][c] = (G g Gᵀ)[ξ] for the 3×3 filters w[oc][ic][3][3];
/// u holds 16 · oc · ic floats, matrix ξ = 4i + j at ξ · oc · ic.
void ck_winograd_weights(ptrdiff_t oc, ptrdiff_t ic, const float *w, float *u);

/// Floats of scratch `ck_winograd_input` / `ck_winograd_output` need for rows of `tw` tiles.
size_t ck_winograd_scratch(ptrdiff_t tw);

/// Winograd input transform of channels [c0, c1) of x (planes h × w, leading pads ph, pw; zero
/// outside): tile (r, t) (r < th, t < tw) is the 4 × 4 block at rows 2r − ph.., columns 2t − pw..;
/// V[ξ][c][r · tw + t] = (Bᵀ d B)[ξ] at v + ξ · vstride + c · ldv + r · tw + t.
void ck_winograd_input(const float *x, ptrdiff_t c0, ptrdiff_t c1, ptrdiff_t h, ptrdiff_t w, ptrdiff_t ph,
                       ptrdiff_t pw, ptrdiff_t th, ptrdiff_t tw, float *v, ptrdiff_t ldv, ptrdiff_t vstride,
                       float *scratch);

/// Winograd output transform for output channels [o0, o1): M[ξ][o][tile] at m + ξ · mstride +
/// o · ldm + tile; y[o][oy][ox] = act(bias[o] + (Aᵀ M A)) for the oh × ow outputs (tiles cropped at
/// odd edges); bias may be NULL.
void ck_winograd_output(const float *m, ptrdiff_t ldm, ptrdiff_t mstride, ptrdiff_t o0, ptrdiff_t o1,
                        ptrdiff_t th, ptrdiff_t tw, float *y, ptrdiff_t oh, ptrdiff_t ow, const float *bias,
                        ck_activation act, float *scratch);

#endif
