#include "ckernels.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// Eight floats; unaligned loads and stores go through memcpy.
typedef float v8 __attribute__((vector_size(32)));
typedef int32_t vi8 __attribute__((vector_size(32)));

#define INLINE static inline __attribute__((always_inline))

// Helpers are macros, not functions: a 32-byte vector may not cross a call boundary in the
// baseline (non-AVX) build.
#define ld(p) ({ v8 ld_v_; memcpy(&ld_v_, (p), sizeof ld_v_); ld_v_; })
#define st(p, v) do { v8 st_v_ = (v); memcpy((p), &st_v_, sizeof st_v_); } while (0)
#define splat(f) ({ float sp_f_ = (f); (v8){sp_f_, sp_f_, sp_f_, sp_f_, sp_f_, sp_f_, sp_f_, sp_f_}; })
#define sel(m, a, b) ((v8)((((vi8)(a)) & (m)) | (((vi8)(b)) & ~(m))))

// The reduction and polynomial both exponentials share: for x in [-104, 88.8] (or NaN) sets
// the vi8 `iv` to n = floor(x·log2 e + 1/2) and returns e^r, r = x − n·ln2 (Cody–Waite, two
// constants), by the Cephes degree-6 polynomial; e^x = e^r·2^n.
#define vexp_reduce(xv, iv) ({                                                                 \
    v8 ec_x_ = (xv);                                                                           \
    v8 ec_n_ = __builtin_elementwise_floor(ec_x_ * splat(1.44269504088896341f) + splat(0.5f)); \
    (iv) = __builtin_convertvector(ec_n_, vi8);                                                \
    ec_x_ = ec_x_ - ec_n_ * splat(0.693359375f) - ec_n_ * splat(-2.12194440e-4f);              \
    v8 ec_y_ = splat(1.9875691500e-4f);                                                        \
    ec_y_ = ec_y_ * ec_x_ + splat(1.3981999507e-3f);                                           \
    ec_y_ = ec_y_ * ec_x_ + splat(8.3334519073e-3f);                                           \
    ec_y_ = ec_y_ * ec_x_ + splat(4.1665795894e-2f);                                           \
    ec_y_ = ec_y_ * ec_x_ + splat(1.6666665459e-1f);                                           \
    ec_y_ = ec_y_ * ec_x_ + splat(5.0000001201e-1f);                                           \
    ec_y_ * (ec_x_ * ec_x_) + ec_x_ + splat(1.0f); })

// e^x for -87.3 ≤ x ≤ 88.3 (or NaN): 2^n through the exponent bits.
#define vexp_core(xv) ({ vi8 ek_i_; v8 ek_y_ = vexp_reduce((xv), ek_i_); ek_y_ * (v8)((ek_i_ + 127) << 23); })

// e^x for x ≤ 0 (Cephes expf: x = n·ln2 + r, |r| ≤ ln2/2, e^r by a degree-6 polynomial, 2^n
// through the exponent bits; about 1 ulp). Below -87.3 (results under 2^-126) the argument is
// shifted up by 64·ln2 and the result scaled by 2^-64, so subnormal results come out rounded
// as by expf; below -131.7 the result is 0. NaN stays NaN.
// (The subnormal handling runs only for vectors that need it.)
#define vexp_nonpositive(xv) ({                                                                \
    v8 ex_x_ = (xv);                                                                           \
    vi8 ex_sub_ = (vi8)(ex_x_ < splat(-87.3f));                                                \
    v8 ex_y_;                                                                                  \
    if (!__builtin_reduce_or(ex_sub_)) {   /* the usual case: no result under 2^-126 */        \
        ex_y_ = vexp_core(ex_x_);                                                              \
    } else {                                                                                   \
        ex_x_ = sel(ex_sub_, ex_x_ + splat(44.3614195558365f), ex_x_);                         \
        vi8 ex_zero_ = (vi8)(ex_x_ < splat(-87.3f));                                           \
        ex_x_ = sel(ex_zero_, splat(-87.3f), ex_x_);                                           \
        ex_y_ = vexp_core(ex_x_);                                                              \
        ex_y_ = sel(ex_sub_, ex_y_ * splat(0x1p-64f), ex_y_);                                  \
        ex_y_ = (v8)((vi8)ex_y_ & ~ex_zero_);                                                  \
    }                                                                                          \
    ex_y_; })

// σ(x) as 1 / (1 + e) for x ≥ 0 and e / (1 + e) for x < 0 with e = e^-|x| (never overflows).
#define vsigmoid(xv) ({                                                                        \
    v8 sg_x_ = (xv);                                                                           \
    v8 sg_e_ = vexp_nonpositive((v8)((vi8)sg_x_ | (vi8)splat(-0.0f)));   /* -|x| */            \
    v8 sg_r_ = splat(1.0f) / (splat(1.0f) + sg_e_);                                            \
    sel((vi8)(sg_x_ >= splat(0)), sg_r_, sg_e_ * sg_r_); })

// e^x over the whole float range: x clamped to [-104, 88.8], x = n·ln2 + r as above, the
// Cephes polynomial, then 2^n applied as two factors 2^(n/2)·2^(n − n/2), so results that
// overflow become +Inf and subnormal ones are rounded once from a normal product. Below -104
// the result is 0 (expf gives 0 below -103.97); NaN is returned unchanged.
#define vexp(xv) ({                                                                            \
    v8 xe_in_ = (xv);                                                                          \
    v8 xe_x_ = sel((vi8)(xe_in_ < splat(-104.0f)), splat(-104.0f), xe_in_);                    \
    xe_x_ = sel((vi8)(xe_x_ > splat(88.8f)), splat(88.8f), xe_x_);                             \
    xe_x_ = sel((vi8)(xe_x_ == xe_x_), xe_x_, splat(0));                                       \
    vi8 xe_i_;                                                                                 \
    v8 xe_y_ = vexp_reduce(xe_x_, xe_i_);                                                      \
    vi8 xe_h_ = xe_i_ >> 1;                                                                    \
    xe_y_ = xe_y_ * (v8)((xe_h_ + 127) << 23) * (v8)((xe_i_ - xe_h_ + 127) << 23);             \
    xe_y_ = (v8)((vi8)xe_y_ & ~(vi8)(xe_in_ < splat(-104.0f)));                                \
    sel((vi8)(xe_in_ == xe_in_), xe_y_, xe_in_); })

// tanh x: for |x| < 0.625 the Cephes odd polynomial x + x³·P(x²) (keeps ±0 and subnormal x);
// otherwise (1 − e)/(1 + e) with e = e^(−2|x|) (1 at ±Inf), sign of x restored. NaN stays NaN.
#define vtanh(xv) ({                                                                           \
    v8 th_x_ = (xv);                                                                           \
    vi8 th_sign_ = (vi8)th_x_ & (vi8)splat(-0.0f);                                             \
    v8 th_a_ = (v8)((vi8)th_x_ & ~(vi8)splat(-0.0f));                                          \
    v8 th_s_ = th_x_ * th_x_;                                                                  \
    v8 th_p_ = splat(-5.70498872745e-3f);                                                      \
    th_p_ = th_p_ * th_s_ + splat(2.06390887954e-2f);                                          \
    th_p_ = th_p_ * th_s_ + splat(-5.37397155531e-2f);                                         \
    th_p_ = th_p_ * th_s_ + splat(1.33314422036e-1f);                                          \
    th_p_ = th_p_ * th_s_ + splat(-3.33332819422e-1f);                                         \
    v8 th_small_ = (v8)((vi8)(th_p_ * th_s_ * th_a_ + th_a_) | th_sign_);   /* tanh(-0) = -0 */  \
    v8 th_e_ = vexp_nonpositive(th_a_ * splat(-2.0f));                                         \
    v8 th_big_ = (splat(1.0f) - th_e_) / (splat(1.0f) + th_e_);                                \
    th_big_ = (v8)((vi8)th_big_ | th_sign_);                                                   \
    sel((vi8)(th_a_ < splat(0.625f)), th_small_, th_big_); })

// erf x, N. Juffa's faithfully rounded erff (with FMA): for |x| ≤ 0.921875 x + x·P(x²);
// above, 1 − e^(−Q(|x|)) with Q a degree-8 polynomial, |x| clamped to 3.925 (erf rounds to
// 1 beyond), sign of x restored. ±0 and subnormals keep their value; NaN stays NaN.
#define verf(xv) ({                                                                            \
    v8 ef_x_ = (xv);                                                                           \
    vi8 ef_sign_ = (vi8)ef_x_ & (vi8)splat(-0.0f);                                             \
    v8 ef_a_ = (v8)((vi8)ef_x_ & ~(vi8)splat(-0.0f));                                          \
    v8 ef_s_ = ef_x_ * ef_x_;                                                                  \
    v8 ef_p_ = splat(-5.99104969e-4f);                                                         \
    ef_p_ = ef_p_ * ef_s_ + splat(4.99339588e-3f);                                             \
    ef_p_ = ef_p_ * ef_s_ + splat(-2.67667342e-2f);                                            \
    ef_p_ = ef_p_ * ef_s_ + splat(1.12818025e-1f);                                             \
    ef_p_ = ef_p_ * ef_s_ + splat(-3.76124859e-1f);                                            \
    ef_p_ = ef_p_ * ef_s_ + splat(1.28379151e-1f);                                             \
    v8 ef_small_ = ef_p_ * ef_x_ + ef_x_;                                                      \
    v8 ef_t_ = sel((vi8)(ef_a_ > splat(3.925f)), splat(3.925f), ef_a_);                        \
    v8 ef_q_ = splat(1.72948930e-5f);                                                          \
    ef_q_ = ef_q_ * ef_t_ + splat(-3.83208680e-4f);                                            \
    ef_q_ = ef_q_ * ef_t_ + splat(3.88393435e-3f);                                             \
    ef_q_ = ef_q_ * ef_t_ + splat(-2.42545605e-2f);                                            \
    ef_q_ = ef_q_ * ef_t_ + splat(1.06777847e-1f);                                             \
    ef_q_ = ef_q_ * ef_t_ + splat(6.34846687e-1f);                                             \
    ef_q_ = ef_q_ * ef_t_ + splat(1.28717512e-1f);                                             \
    ef_q_ = ef_q_ * ef_t_ + ef_t_;                                                             \
    v8 ef_big_ = splat(1.0f) - vexp_nonpositive(-ef_q_);                                       \
    ef_big_ = (v8)((vi8)ef_big_ | ef_sign_);                                                   \
    sel((vi8)(ef_a_ > splat(0.921875f)), ef_big_, ef_small_); })

// Relu lets NaN through (the comparison is false); Clip, LeakyRelu, Sigmoid, SiLU, HardSigmoid
// (p0·x + p1 clamped to [0, 1]), HardSwish (x · HardSigmoid(1/6, 1/2)), Tanh, Exp and Erf
// likewise keep NaN.
#define activate(v, act) ({                                                                     \
    v8 ac_v_ = (v);                                                                              \
    switch ((act).kind) {                                                                        \
    case 1: ac_v_ = (v8)((vi8)ac_v_ & ~(vi8)(ac_v_ < splat(0))); break;                          \
    case 2: ac_v_ = sel((vi8)(ac_v_ < splat((act).p0)), splat((act).p0), ac_v_);                 \
            ac_v_ = sel((vi8)(ac_v_ > splat((act).p1)), splat((act).p1), ac_v_); break;          \
    case 3: ac_v_ = sel((vi8)(ac_v_ >= splat(0)), ac_v_, ac_v_ * splat((act).p0)); break;        \
    case 4: ac_v_ = vsigmoid(ac_v_); break;                                                      \
    case 5: ac_v_ = ac_v_ * vsigmoid(ac_v_); break;                                              \
    case 6: { v8 hs_ = ac_v_ * splat((act).p0) + splat((act).p1);                                 \
              hs_ = sel((vi8)(hs_ < splat(0)), splat(0), hs_);                                     \
              ac_v_ = sel((vi8)(hs_ > splat(1)), splat(1), hs_); break; }                          \
    case 7: { v8 hs_ = ac_v_ * splat(1.0f / 6) + splat(0.5f);                                     \
              hs_ = sel((vi8)(hs_ < splat(0)), splat(0), hs_);                                     \
              ac_v_ = ac_v_ * sel((vi8)(hs_ > splat(1)), splat(1), hs_); break; }                  \
    case 8: ac_v_ = vtanh(ac_v_); break;                                                         \
    case 9: ac_v_ = vexp(ac_v_); break;                                                          \
    case 10: ac_v_ = verf(ac_v_); break;                                                         \
    default: break;                                                                              \
    }                                                                                            \
    ac_v_; })

// The depthwise kernels apply the cheap activations in their blocks' stores, and Sigmoid, SiLU,
// Tanh, Exp and Erf afterwards over each finished output row (`ck_activate`, whose loops are
// written once per kind and, with AVX-512, sixteen lanes wide): inline, `activate`'s switch and
// the polynomial's constants ran for every eight values (SiLU cost 0.7–1.2 ns a value there
// against 0.35 in the row pass). The same operations on each value, so the same bits.
#define DW_DEFERS(act) ((act).kind == 4 || (act).kind == 5 || (act).kind >= 8)
#define DW_INLINE(act) (DW_DEFERS(act) ? (ck_activation){0, 0, 0} : (act))

// An activation over an array, eight at a time.
// The loop is written once per kind, with the kind a constant: `activate`'s switch then folds
// away instead of running (an indirect jump and the constants loaded again) every eight values.
#define MAP_LOOP(K)                                                                            \
    { const ck_activation ak_ = {(K), act.p0, act.p1};                                         \
      for (; i + 8 <= n; i += 8) st(y + i, activate(ld(x + i), ak_)); } break
#define MAP_BODY                                                                               \
    ptrdiff_t i = 0;                                                                           \
    switch (act.kind) {                                                                        \
    case 1: MAP_LOOP(1); case 2: MAP_LOOP(2); case 3: MAP_LOOP(3); case 4: MAP_LOOP(4);        \
    case 5: MAP_LOOP(5); case 6: MAP_LOOP(6); case 7: MAP_LOOP(7); case 8: MAP_LOOP(8);        \
    case 9: MAP_LOOP(9); case 10: MAP_LOOP(10); default: MAP_LOOP(0);                          \
    }                                                                                          \
    if (i < n) {                                                                               \
        float t[8] = {0};                                                                      \
        for (ptrdiff_t j = 0; i + j < n; j++) t[j] = x[i + j];                                 \
        v8 r = activate(ld(t), act);                                                           \
        st(t, r);                                                                              \
        for (ptrdiff_t j = 0; i + j < n; j++) y[i + j] = t[j];                                 \
    }

#define MAP_PARAMS const float *x, float *y, ptrdiff_t n, ck_activation act

static void map_base(MAP_PARAMS) { MAP_BODY }

// ---------------------------------------------------------------------------------------------
// GEMM: a 6 × 16 register tile (12 accumulators), B packed 16 columns wide, A read in place.

#define NR 16
#define MR 6

INLINE void pack_b(ptrdiff_t k, const float *b, ptrdiff_t ldb, ptrdiff_t cols, float *dst, const float *scale) {
    if (scale) {
        for (ptrdiff_t p = 0; p < k; p++) {
            float sp = scale[p];
            ptrdiff_t j = 0;
            for (; j < cols; j++) dst[p * NR + j] = b[p * ldb + j] * sp;
            for (; j < NR; j++) dst[p * NR + j] = 0;
        }
    } else if (cols == NR) {
        for (ptrdiff_t p = 0; p < k; p++) {
            st(dst + p * NR, ld(b + p * ldb));
            st(dst + p * NR + 8, ld(b + p * ldb + 8));
        }
    } else {
        for (ptrdiff_t p = 0; p < k; p++) {
            ptrdiff_t j = 0;
            for (; j < cols; j++) dst[p * NR + j] = b[p * ldb + j];
            for (; j < NR; j++) dst[p * NR + j] = 0;
        }
    }
}

// `ap`, when not NULL, is this tile's rows of A packed k-major ([k][6], `ck_pack_a`): the six
// broadcasts of a step read 24 consecutive bytes through one pointer; otherwise A is read in
// place, six rows `lda` apart.
INLINE void tile(int rows, ptrdiff_t k, const float *a, ptrdiff_t lda, const float *ap, const float *bp,
                 float *c, ptrdiff_t ldc, ptrdiff_t cols, const float *bias, ck_activation act) {
    v8 acc[MR][2];
    for (int r = 0; r < MR; r++) {
        v8 init = splat(r < rows && bias ? bias[r] : 0);
        acc[r][0] = init;
        acc[r][1] = init;
    }
    if (ap) {
        for (ptrdiff_t p = 0; p < k; p++, ap += MR) {
            v8 b0 = ld(bp + p * NR), b1 = ld(bp + p * NR + 8);
            for (int r = 0; r < MR; r++) {
                if (r < rows) {
                    v8 av = splat(ap[r]);
                    acc[r][0] = acc[r][0] + av * b0;
                    acc[r][1] = acc[r][1] + av * b1;
                }
            }
        }
    } else {
        const float *ar[MR];
        for (int r = 0; r < MR; r++) ar[r] = a + (r < rows ? r : 0) * lda;
        for (ptrdiff_t p = 0; p < k; p++) {
            v8 b0 = ld(bp + p * NR), b1 = ld(bp + p * NR + 8);
            for (int r = 0; r < MR; r++) {
                if (r < rows) {
                    v8 av = splat(ar[r][p]);
                    acc[r][0] = acc[r][0] + av * b0;
                    acc[r][1] = acc[r][1] + av * b1;
                }
            }
        }
    }
    for (int r = 0; r < MR; r++) {
        if (r >= rows) continue;
        v8 o0 = activate(acc[r][0], act), o1 = activate(acc[r][1], act);
        float *cr = c + r * ldc;
        if (cols == NR) {
            st(cr, o0);
            st(cr + 8, o1);
        } else {
            float t[NR];
            st(t, o0);
            st(t + 8, o1);
            for (ptrdiff_t j = 0; j < cols; j++) cr[j] = t[j];
        }
    }
}

// A panel of at most 8 columns (the tail of a row of 7×7 or 14×14 outputs): half the work of a
// 16-wide tile.
INLINE void tile8(int rows, ptrdiff_t k, const float *a, ptrdiff_t lda, const float *ap, const float *bp,
                  float *c, ptrdiff_t ldc, ptrdiff_t cols, const float *bias, ck_activation act) {
    v8 acc[MR];
    for (int r = 0; r < MR; r++) acc[r] = splat(r < rows && bias ? bias[r] : 0);
    if (ap) {
        for (ptrdiff_t p = 0; p < k; p++, ap += MR) {
            v8 b0 = ld(bp + p * NR);
            for (int r = 0; r < MR; r++)
                if (r < rows) acc[r] = acc[r] + splat(ap[r]) * b0;
        }
    } else {
        const float *ar[MR];
        for (int r = 0; r < MR; r++) ar[r] = a + (r < rows ? r : 0) * lda;
        for (ptrdiff_t p = 0; p < k; p++) {
            v8 b0 = ld(bp + p * NR);
            for (int r = 0; r < MR; r++)
                if (r < rows) acc[r] = acc[r] + splat(ar[r][p]) * b0;
        }
    }
    for (int r = 0; r < rows; r++) {
        float t[8];
        st(t, activate(acc[r], act));
        for (ptrdiff_t j = 0; j < cols; j++) c[r * ldc + j] = t[j];
    }
}

// Columns of a panel that crosses from one image to the next (batched layout): gathered one by one.
INLINE void pack_b_gather(ptrdiff_t k, const float *b, ptrdiff_t ldb, ck_batch bt, ptrdiff_t j, ptrdiff_t cols, float *dst) {
    for (ptrdiff_t jj = 0; jj < NR; jj++) {
        if (jj >= cols) { for (ptrdiff_t p = 0; p < k; p++) dst[p * NR + jj] = 0; continue; }
        ptrdiff_t col = j + jj, img = col / bt.per;
        const float *src = b + img * bt.b_stride + (col - img * bt.per);
        if (bt.b_scale) { for (ptrdiff_t p = 0; p < k; p++) dst[p * NR + jj] = src[p * ldb] * bt.b_scale[p]; }
        else { for (ptrdiff_t p = 0; p < k; p++) dst[p * NR + jj] = src[p * ldb]; }
    }
}

INLINE void scatter_tile(const float *t, int rows, float *c, ptrdiff_t ldc, ck_batch bt, ptrdiff_t i, ptrdiff_t j, ptrdiff_t cols) {
    for (ptrdiff_t jj = 0; jj < cols; jj++) {
        ptrdiff_t col = j + jj, img = col / bt.per;
        float *dst = c + img * bt.c_stride + i * ldc + (col - img * bt.per);
        for (int r = 0; r < rows; r++) dst[r * ldc] = t[r * NR + jj];
    }
}

#define GEMM_TILE(rows)                                                                        \
    do {                                                                                       \
        const float *bi_ = bias ? bias + i : 0;                                                \
        const float *ap_ = packed_a ? packed_a + i * k : 0;                                    \
        if (straddles) {                                                                       \
            tile(rows, k, a + i * lda, lda, ap_, panel, tmp, NR, NR, bi_, act);                \
            scatter_tile(tmp, rows, c, ldc, bt, i, j, cols);                                   \
        } else if (cols <= 8) {                                                                \
            tile8(rows, k, a + i * lda, lda, ap_, panel, cbase + i * ldc, ldc, cols, bi_, act); \
        } else {                                                                               \
            tile(rows, k, a + i * lda, lda, ap_, panel, cbase + i * ldc, ldc, cols, bi_, act); \
        }                                                                                      \
    } while (0)

// Panels of B packed per block: up to 8 (256 columns) while the block stays ≤ 512·32 floats, so
// each row tile writes 1 KB of a C row at a time instead of 128 B: with few inner terms (a 1×1
// convolution of 16–64 channels) the product is bound by storing C, and 64 rows each advancing
// by two cache lines at a time defeat the prefetchers (16 → 64 channels on 112×112, C not in
// cache: ~1200 → ~650 µs with AVX-512, ~810 → ~650 µs with AVX2 on a 2-core EPYC).
static inline ptrdiff_t gemm_block_panels(ptrdiff_t k) {   // 32-column panels (AVX-512)
    ptrdiff_t w = 512 / (k > 0 ? k : 1);
    return w > 8 ? 8 : w < 1 ? 1 : w;
}

// The same block in 16-column panels (the AVX2 and baseline products): the same bytes.
static inline ptrdiff_t gemm_block_panels16(ptrdiff_t k) { return 2 * gemm_block_panels(k); }

// The panel loop shared by the products: PACK fills `panel` with the k × 16 panel of B at
// columns [j, j + cols); a block of panels is packed, then tiles of 6 rows multiply each.
#define GEMM_LOOP(PACK)                                                                        \
    ptrdiff_t wb = gemm_block_panels16(k);                                                     \
    float *tmp = scratch + k * NR * wb;                                                        \
    if (bt.per <= 0) bt.per = j1;                                                              \
    for (ptrdiff_t jb = j0; jb < j1; jb += NR * wb) {                                          \
        ptrdiff_t je = j1 - jb < NR * wb ? j1 : jb + NR * wb;                                  \
        for (ptrdiff_t j = jb; j < je; j += NR) {                                              \
            ptrdiff_t cols = je - j < NR ? je - j : NR;                                        \
            ptrdiff_t img = j / bt.per, pos = j - img * bt.per;                                \
            int straddles = pos + cols > bt.per;                                               \
            float *panel = scratch + ((j - jb) / NR) * k * NR;                                 \
            PACK;                                                                              \
        }                                                                                      \
        ptrdiff_t i = 0;                                                                       \
        for (; i < m; i += MR) {                                                               \
            for (ptrdiff_t j = jb; j < je; j += NR) {                                          \
                ptrdiff_t cols = je - j < NR ? je - j : NR;                                    \
                ptrdiff_t img = j / bt.per, pos = j - img * bt.per;                            \
                int straddles = pos + cols > bt.per;                                           \
                float *cbase = c + img * bt.c_stride + pos;                                    \
                const float *panel = scratch + ((j - jb) / NR) * k * NR;                       \
                switch (m - i < MR ? m - i : MR) {                                             \
                case 6: GEMM_TILE(6); break;                                                   \
                case 5: GEMM_TILE(5); break;                                                   \
                case 4: GEMM_TILE(4); break;                                                   \
                case 3: GEMM_TILE(3); break;                                                   \
                case 2: GEMM_TILE(2); break;                                                   \
                case 1: GEMM_TILE(1); break;                                                   \
                default: break;                                                                \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }

#define GEMM_BODY GEMM_LOOP(if (straddles) pack_b_gather(k, b, ldb, bt, j, cols, panel);       \
                            else pack_b(k, b + img * bt.b_stride + pos, ldb, cols, panel, bt.b_scale))

#define GEMM_PARAMS ptrdiff_t m, ptrdiff_t k, const float *a, ptrdiff_t lda, const float *packed_a, \
    const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc, const float *bias, ck_activation act, \
    ck_batch bt, ptrdiff_t j0, ptrdiff_t j1, float *scratch

static void gemm_base(GEMM_PARAMS) { GEMM_BODY }


// ---------------------------------------------------------------------------------------------
// Depthwise 3×3: each input row the windows read is copied once into a zero-bordered ring row
// (three rows), split into even and odd columns for stride 2, so every output block is nine
// contiguous loads and multiply-adds with no bounds checks.

INLINE ptrdiff_t dw_padded(ptrdiff_t ow, ptrdiff_t sw) { return ((ow + 7) / 8 * 8 - 1) * sw + 3; }

size_t ck_depthwise3x3_scratch(ptrdiff_t ow, ptrdiff_t sw) {
    ptrdiff_t cols = dw_padded(ow, sw);
    return (size_t)(5 * (cols + 8));   // three ring rows, a zero row and one unsplit line
}

INLINE void dw_fill(const float *xrow, ptrdiff_t w, ptrdiff_t pw, ptrdiff_t sw, ptrdiff_t colsP,
                    ptrdiff_t owp, float *line, float *dst) {
    // line[j] = x[j - pw] inside the row, zero outside.
    float *lin = sw == 1 ? dst : line;
    ptrdiff_t lo = pw > 0 ? pw : 0;                 // first j with input
    ptrdiff_t hi = w + pw < colsP ? w + pw : colsP;  // end of input
    if (hi < lo) hi = lo;
    for (ptrdiff_t j = 0; j < lo && j < colsP; j++) lin[j] = 0;
    if (hi > lo) memcpy(lin + lo, xrow + (lo - pw), (size_t)(hi - lo) * sizeof(float));
    for (ptrdiff_t j = hi; j < colsP; j++) lin[j] = 0;
    if (sw != 1) {
        float *even = dst, *odd = dst + owp + 1;
        for (ptrdiff_t j = 0; j < owp; j++) { even[j] = line[2 * j]; odd[j] = line[2 * j + 1]; }
        even[owp] = line[2 * owp];
    }
}

#define DW_BODY                                                                                \
    ptrdiff_t owp = (ow + 7) / 8 * 8;                                                          \
    ptrdiff_t colsP = dw_padded(ow, sw);                                                       \
    ptrdiff_t rowStride = colsP + 8;                                                           \
    float *ring = scratch, *zero = scratch + 3 * rowStride, *line = zero + rowStride;          \
    memset(zero, 0, sizeof(float) * (size_t)rowStride);                                        \
    ptrdiff_t tag[3] = {-1, -1, -1};                                                           \
    ptrdiff_t t1 = sw == 1 ? 1 : owp + 1, t2 = sw == 1 ? 2 : 1; /* offsets of taps 1 and 2 */  \
    v8 k0 = splat(w9[0]), k1 = splat(w9[1]), k2 = splat(w9[2]);                                \
    v8 k3 = splat(w9[3]), k4 = splat(w9[4]), k5 = splat(w9[5]);                                \
    v8 k6 = splat(w9[6]), k7 = splat(w9[7]), k8 = splat(w9[8]);                                \
    v8 bv = splat(bias);                                                                       \
    for (ptrdiff_t o = 0; o < oh; o++) {                                                       \
        const float *r[3];                                                                     \
        for (int t = 0; t < 3; t++) {                                                          \
            ptrdiff_t ih = o * sh - ph + t;                                                    \
            if (ih < 0 || ih >= h) { r[t] = zero; continue; }                                  \
            float *slot = ring + (ih % 3) * rowStride;                                         \
            if (tag[ih % 3] != ih) {                                                           \
                dw_fill(x + ih * w, w, pw, sw, colsP, owp, line, slot);                        \
                tag[ih % 3] = ih;                                                              \
            }                                                                                  \
            r[t] = slot;                                                                       \
        }                                                                                      \
        const float *r0 = r[0], *r1 = r[1], *r2 = r[2];                                        \
        float *yrow = y + o * ow;                                                              \
        for (ptrdiff_t q = 0; q < ow; q += 8) {                                                \
            /* one partial sum per kernel row: three short dependency chains, not one of nine */ \
            v8 s0 = bv + k0 * ld(r0 + q);                                                      \
            v8 s1 = k3 * ld(r1 + q);                                                           \
            v8 s2 = k6 * ld(r2 + q);                                                           \
            s0 = s0 + k1 * ld(r0 + q + t1);                                                    \
            s1 = s1 + k4 * ld(r1 + q + t1);                                                    \
            s2 = s2 + k7 * ld(r2 + q + t1);                                                    \
            s0 = s0 + k2 * ld(r0 + q + t2);                                                    \
            s1 = s1 + k5 * ld(r1 + q + t2);                                                    \
            s2 = s2 + k8 * ld(r2 + q + t2);                                                    \
            v8 acc = activate(s0 + (s1 + s2), act);                                            \
            if (q + 8 <= ow) st(yrow + q, acc);                                                \
            else { float tmp[8]; st(tmp, acc); for (ptrdiff_t i = 0; q + i < ow; i++) yrow[q + i] = tmp[i]; } \
        }                                                                                      \
    }

#define DW_PARAMS const float *x, ptrdiff_t h, ptrdiff_t w, const float *w9, float bias, float *y, \
    ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t ph, ptrdiff_t pw,          \
    ck_activation act, float *scratch

static void dw_base(DW_PARAMS) { DW_BODY }

// ---------------------------------------------------------------------------------------------
// Depthwise 3×3 over eight channels at once, for narrow planes where per-row work dominates the
// one-plane kernel: the eight input planes are transposed (8×8 blocks) into a zero-bordered
// [row][column][channel] block, each output position is nine vector multiply-adds with one
// weight vector per tap (six positions at a time: six independent chains), and each output row
// is transposed back into the eight planes.

#define TRANSPOSE8(r)                                                                          \
    do {                                                                                       \
        v8 t0 = __builtin_shufflevector(r[0], r[1], 0, 8, 1, 9, 4, 12, 5, 13);                 \
        v8 t1 = __builtin_shufflevector(r[0], r[1], 2, 10, 3, 11, 6, 14, 7, 15);               \
        v8 t2 = __builtin_shufflevector(r[2], r[3], 0, 8, 1, 9, 4, 12, 5, 13);                 \
        v8 t3 = __builtin_shufflevector(r[2], r[3], 2, 10, 3, 11, 6, 14, 7, 15);               \
        v8 t4 = __builtin_shufflevector(r[4], r[5], 0, 8, 1, 9, 4, 12, 5, 13);                 \
        v8 t5 = __builtin_shufflevector(r[4], r[5], 2, 10, 3, 11, 6, 14, 7, 15);               \
        v8 t6 = __builtin_shufflevector(r[6], r[7], 0, 8, 1, 9, 4, 12, 5, 13);                 \
        v8 t7 = __builtin_shufflevector(r[6], r[7], 2, 10, 3, 11, 6, 14, 7, 15);               \
        v8 u0 = __builtin_shufflevector(t0, t2, 0, 1, 8, 9, 4, 5, 12, 13);                     \
        v8 u1 = __builtin_shufflevector(t0, t2, 2, 3, 10, 11, 6, 7, 14, 15);                   \
        v8 u2 = __builtin_shufflevector(t1, t3, 0, 1, 8, 9, 4, 5, 12, 13);                     \
        v8 u3 = __builtin_shufflevector(t1, t3, 2, 3, 10, 11, 6, 7, 14, 15);                   \
        v8 u4 = __builtin_shufflevector(t4, t6, 0, 1, 8, 9, 4, 5, 12, 13);                     \
        v8 u5 = __builtin_shufflevector(t4, t6, 2, 3, 10, 11, 6, 7, 14, 15);                   \
        v8 u6 = __builtin_shufflevector(t5, t7, 0, 1, 8, 9, 4, 5, 12, 13);                     \
        v8 u7 = __builtin_shufflevector(t5, t7, 2, 3, 10, 11, 6, 7, 14, 15);                   \
        r[0] = __builtin_shufflevector(u0, u4, 0, 1, 2, 3, 8, 9, 10, 11);                      \
        r[1] = __builtin_shufflevector(u1, u5, 0, 1, 2, 3, 8, 9, 10, 11);                      \
        r[2] = __builtin_shufflevector(u2, u6, 0, 1, 2, 3, 8, 9, 10, 11);                      \
        r[3] = __builtin_shufflevector(u3, u7, 0, 1, 2, 3, 8, 9, 10, 11);                      \
        r[4] = __builtin_shufflevector(u0, u4, 4, 5, 6, 7, 12, 13, 14, 15);                    \
        r[5] = __builtin_shufflevector(u1, u5, 4, 5, 6, 7, 12, 13, 14, 15);                    \
        r[6] = __builtin_shufflevector(u2, u6, 4, 5, 6, 7, 12, 13, 14, 15);                    \
        r[7] = __builtin_shufflevector(u3, u7, 4, 5, 6, 7, 12, 13, 14, 15);                    \
    } while (0)

size_t ck_depthwise3x3_c8_scratch(ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t sh, ptrdiff_t sw) {
    ptrdiff_t rows = (oh - 1) * sh + 3, cols = (ow - 1) * sw + 3;
    return (size_t)(8 * (rows * cols + (ow + 8)));
}

#define DW8_BODY                                                                               \
    ptrdiff_t rowsP = (oh - 1) * sh + 3, colsP = (ow - 1) * sw + 3;                            \
    float *P = scratch, *R = scratch + 8 * rowsP * colsP;                                      \
    ptrdiff_t iw0 = pw < 0 ? -pw : 0;                                                          \
    ptrdiff_t iw1 = w < colsP - pw ? w : colsP - pw;                                           \
    if (iw1 < iw0) iw1 = iw0;                                                                  \
    for (ptrdiff_t r = 0; r < rowsP; r++) {                                                    \
        ptrdiff_t ih = r - ph;                                                                 \
        float *row = P + 8 * r * colsP;                                                        \
        if (ih < 0 || ih >= h || iw1 == iw0) { memset(row, 0, sizeof(float) * 8 * (size_t)colsP); continue; } \
        for (ptrdiff_t j = 0; j < iw0 + pw; j++) st(row + 8 * j, splat(0));                    \
        for (ptrdiff_t j = iw1 + pw; j < colsP; j++) st(row + 8 * j, splat(0));                \
        ptrdiff_t iw = iw0;                                                                    \
        for (; iw + 8 <= iw1; iw += 8) {                                                       \
            v8 v[8];                                                                           \
            for (int c = 0; c < 8; c++) v[c] = ld(x + c * plane + ih * w + iw);                \
            TRANSPOSE8(v);                                                                     \
            for (int i = 0; i < 8; i++) st(row + 8 * (iw + pw + i), v[i]);                     \
        }                                                                                      \
        for (; iw < iw1; iw++)                                                                 \
            for (int c = 0; c < 8; c++) row[8 * (iw + pw) + c] = x[c * plane + ih * w + iw];   \
    }                                                                                          \
    v8 k[9];                                                                                   \
    for (int t = 0; t < 9; t++) {                                                              \
        float kt[8];                                                                           \
        for (int c = 0; c < 8; c++) kt[c] = w9[9 * c + t];                                     \
        k[t] = ld(kt);                                                                         \
    }                                                                                          \
    v8 bv = bias8 ? ld(bias8) : splat(0);                                                      \
    const ck_activation ia8_ = DW_INLINE(act);                                                 \
    for (ptrdiff_t o = 0; o < oh; o++) {                                                       \
        const float *top = P + 8 * (o * sh) * colsP;                                           \
        ptrdiff_t q = 0;                                                                       \
        for (; q + 6 <= ow; q += 6) {                                                          \
            v8 acc[6];                                                                         \
            for (int i = 0; i < 6; i++) acc[i] = bv;                                           \
            for (int t = 0; t < 9; t++) {                                                      \
                const float *src = top + 8 * ((t / 3) * colsP + q * sw + (t % 3));             \
                for (int i = 0; i < 6; i++) acc[i] = acc[i] + k[t] * ld(src + 8 * i * sw);     \
            }                                                                                  \
            for (int i = 0; i < 6; i++) st(R + 8 * (q + i), activate(acc[i], ia8_));            \
        }                                                                                      \
        for (; q < ow; q++) {                                                                  \
            v8 acc = bv;                                                                       \
            for (int t = 0; t < 9; t++)                                                        \
                acc = acc + k[t] * ld(top + 8 * ((t / 3) * colsP + q * sw + (t % 3)));         \
            st(R + 8 * q, activate(acc, ia8_));                                                 \
        }                                                                                      \
        if (DW_DEFERS(act)) ck_activate(R, R, 8 * ow, act);                                    \
        ptrdiff_t p = 0;                                                                       \
        for (; p + 8 <= ow; p += 8) {                                                          \
            v8 v[8];                                                                           \
            for (int i = 0; i < 8; i++) v[i] = ld(R + 8 * (p + i));                            \
            TRANSPOSE8(v);                                                                     \
            for (int c = 0; c < 8; c++) st(y + c * oplane + o * ow + p, v[c]);                 \
        }                                                                                      \
        for (; p < ow; p++)                                                                    \
            for (int c = 0; c < 8; c++) y[c * oplane + o * ow + p] = R[8 * p + c];             \
    }

#define DW8_PARAMS const float *x, ptrdiff_t plane, ptrdiff_t h, ptrdiff_t w, const float *w9,   \
    const float *bias8, float *y, ptrdiff_t oplane, ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t sh,    \
    ptrdiff_t sw, ptrdiff_t ph, ptrdiff_t pw, ck_activation act, float *scratch

static void dw8_base(DW8_PARAMS) { DW8_BODY }

// ---------------------------------------------------------------------------------------------
// Depthwise k×k (any window, stride and dilation) over up to eight channels at once, the
// 3×3-by-8 kernel's layout generalized: the planes are transposed into a zero-bordered
// [row][column][channel] block, every output position is kh·kw vector multiply-adds with one
// weight vector per tap (six positions at a time: six independent chains), and each output row
// is transposed back. Fewer than eight channels (the tail of a layer) run with the missing
// lanes zero and are not stored.

size_t ck_depthwise_c8_scratch(ptrdiff_t kh, ptrdiff_t kw, ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t sh,
                               ptrdiff_t sw, ptrdiff_t dh, ptrdiff_t dw) {
    ptrdiff_t rows = (oh - 1) * sh + (kh - 1) * dh + 1, cols = (ow - 1) * sw + (kw - 1) * dw + 1;
    return (size_t)(8 * (rows * cols + (ow + 8) + kh * kw));
}

// N (≤ 8) consecutive output positions from q of output row o, stride across SW: N independent
// accumulators, enough to hide the multiply-adds' latency (blocks of 6 and single positions left
// a row of 7 with one position summing its taps in one dependent chain). Each position's sum is
// the bias, then the taps in order, as before.
#define DWK_BLOCK(N, SW)                                                                       \
    do {                                                                                       \
        v8 acc[N];                                                                             \
        for (int i = 0; i < (N); i++) acc[i] = bv;                                             \
        const float *kt = K;                                                                   \
        for (ptrdiff_t a = 0; a < kh; a++) {                                                   \
            const float *src = top + 8 * (a * dh * colsP + q * (SW));                          \
            for (ptrdiff_t b = 0; b < kw; b++, kt += 8, src += 8 * dw) {                       \
                v8 kv = ld(kt);                                                                \
                for (int i = 0; i < (N); i++) acc[i] = acc[i] + kv * ld(src + 8 * i * (SW));   \
            }                                                                                  \
        }                                                                                      \
        for (int i = 0; i < (N); i++) st(R + 8 * (q + i), activate(acc[i], iak_));            \
    } while (0)
#define DWK_TAIL(SW)                                                                           \
    switch (ow - q) {                                                                          \
    case 7: DWK_BLOCK(7, SW); break;                                                           \
    case 6: DWK_BLOCK(6, SW); break;                                                           \
    case 5: DWK_BLOCK(5, SW); break;                                                           \
    case 4: DWK_BLOCK(4, SW); break;                                                           \
    case 3: DWK_BLOCK(3, SW); break;                                                           \
    case 2: DWK_BLOCK(2, SW); break;                                                           \
    case 1: DWK_BLOCK(1, SW); break;                                                           \
    default: break;                                                                            \
    }

#define DWK_BODY                                                                               \
    ptrdiff_t rowsP = (oh - 1) * sh + (kh - 1) * dh + 1, colsP = (ow - 1) * sw + (kw - 1) * dw + 1; \
    ptrdiff_t taps = kh * kw;                                                                  \
    float *P = scratch, *R = scratch + 8 * rowsP * colsP, *K = R + 8 * (ow + 8);               \
    ptrdiff_t iw0 = pw < 0 ? -pw : 0;                                                          \
    ptrdiff_t iw1 = w < colsP - pw ? w : colsP - pw;                                           \
    if (iw1 < iw0) iw1 = iw0;                                                                  \
    for (ptrdiff_t r = 0; r < rowsP; r++) {                                                    \
        ptrdiff_t ih = r - ph;                                                                 \
        float *row = P + 8 * r * colsP;                                                        \
        if (ih < 0 || ih >= h || iw1 == iw0) { memset(row, 0, sizeof(float) * 8 * (size_t)colsP); continue; } \
        for (ptrdiff_t j = 0; j < iw0 + pw; j++) st(row + 8 * j, splat(0));                    \
        for (ptrdiff_t j = iw1 + pw; j < colsP; j++) st(row + 8 * j, splat(0));                \
        ptrdiff_t iw = iw0;                                                                    \
        if (nc == 8) {                                                                         \
            for (; iw + 8 <= iw1; iw += 8) {                                                   \
                v8 v[8];                                                                       \
                for (int c = 0; c < 8; c++) v[c] = ld(x + c * plane + ih * w + iw);            \
                TRANSPOSE8(v);                                                                 \
                for (int i = 0; i < 8; i++) st(row + 8 * (iw + pw + i), v[i]);                 \
            }                                                                                  \
            if (iw < iw1) { /* the row's last n < 8 columns: partial loads, same transpose */  \
                ptrdiff_t n_ = iw1 - iw;                                                       \
                v8 v[8];                                                                       \
                for (int c = 0; c < 8; c++) v[c] = DWK_LOADN(x + c * plane + ih * w + iw, n_); \
                TRANSPOSE8(v);                                                                 \
                for (ptrdiff_t i = 0; i < n_; i++) st(row + 8 * (iw + pw + i), v[i]);          \
                iw = iw1;                                                                      \
            }                                                                                  \
        }                                                                                      \
        for (; iw < iw1; iw++)                                                                 \
            for (int c = 0; c < 8; c++) row[8 * (iw + pw) + c] = c < nc ? x[c * plane + ih * w + iw] : 0; \
    }                                                                                          \
    ptrdiff_t t0_ = 0;                                                                         \
    if (nc == 8) /* weights [channel][tap] -> [tap][channel], eight taps per transpose */      \
        for (; t0_ < taps; t0_ += 8) {                                                         \
            ptrdiff_t n_ = taps - t0_ < 8 ? taps - t0_ : 8;                                    \
            v8 v[8];                                                                           \
            for (int c = 0; c < 8; c++) v[c] = DWK_LOADN(wk + taps * c + t0_, n_);             \
            TRANSPOSE8(v);                                                                     \
            for (ptrdiff_t i = 0; i < n_; i++) st(K + 8 * (t0_ + i), v[i]);                    \
        }                                                                                      \
    for (ptrdiff_t t = t0_; t < taps; t++)                                                     \
        for (int c = 0; c < 8; c++) K[8 * t + c] = c < nc ? wk[taps * c + t] : 0;              \
    float bt[8] = {0};                                                                         \
    if (bias) for (int c = 0; c < nc; c++) bt[c] = bias[c];                                    \
    v8 bv = ld(bt);                                                                            \
    const ck_activation iak_ = DW_INLINE(act);                                                 \
    for (ptrdiff_t o = 0; o < oh; o++) {                                                       \
        const float *top = P + 8 * (o * sh) * colsP;                                           \
        ptrdiff_t q = 0;                                                                       \
        if (sw == 1) {                                                                         \
            for (; q + 8 <= ow; q += 8) DWK_BLOCK(8, 1);                                       \
            DWK_TAIL(1);                                                                       \
        } else if (sw == 2) {                                                                  \
            for (; q + 8 <= ow; q += 8) DWK_BLOCK(8, 2);                                       \
            DWK_TAIL(2);                                                                       \
        } else {                                                                               \
            for (; q + 8 <= ow; q += 8) DWK_BLOCK(8, sw);                                      \
            DWK_TAIL(sw);                                                                      \
        }                                                                                      \
        if (DW_DEFERS(act)) ck_activate(R, R, 8 * ow, act);                                    \
        ptrdiff_t p = 0;                                                                       \
        if (nc == 8) {                                                                         \
            for (; p + 8 <= ow; p += 8) {                                                      \
                v8 v[8];                                                                       \
                for (int i = 0; i < 8; i++) v[i] = ld(R + 8 * (p + i));                        \
                TRANSPOSE8(v);                                                                 \
                for (int c = 0; c < 8; c++) st(y + c * oplane + o * ow + p, v[c]);             \
            }                                                                                  \
            if (p < ow) { /* the row's last n < 8 positions: partial stores */                 \
                ptrdiff_t n_ = ow - p;                                                         \
                v8 v[8];                                                                       \
                for (int i = 0; i < 8; i++) v[i] = i < n_ ? ld(R + 8 * (p + i)) : splat(0);    \
                TRANSPOSE8(v);                                                                 \
                /* A full store that runs into the next rows of this call's output (written  \
                   after this one) costs less than a masked one; the last row's is masked. */ \
                if (o * ow + p + 8 <= oh * ow)                                                 \
                    for (int c = 0; c < 8; c++) st(y + c * oplane + o * ow + p, v[c]);        \
                else                                                                           \
                    for (int c = 0; c < 8; c++) DWK_STOREN(y + c * oplane + o * ow + p, v[c], n_); \
                p = ow;                                                                        \
            }                                                                                  \
        }                                                                                      \
        for (; p < ow; p++)                                                                    \
            for (int c = 0; c < nc; c++) y[c * oplane + o * ow + p] = R[8 * p + c];            \
    }

#define DWK_PARAMS const float *x, ptrdiff_t plane, int nc, ptrdiff_t h, ptrdiff_t w,            \
    ptrdiff_t kh, ptrdiff_t kw, const float *wk, const float *bias, float *y, ptrdiff_t oplane,   \
    ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t dh, ptrdiff_t dw,           \
    ptrdiff_t ph, ptrdiff_t pw, ck_activation act, float *scratch

// The first n (0 < n ≤ 8) floats at p, the other lanes zero; and their store. Portable here;
// the AVX2 instantiation below redefines them as masked loads and stores.
#define DWK_LOADN(p, n) ({ float ln_t_[8] = {0}; const float *ln_p_ = (p);                     \
    for (ptrdiff_t ln_i_ = 0; ln_i_ < (n); ln_i_++) ln_t_[ln_i_] = ln_p_[ln_i_]; ld(ln_t_); })
#define DWK_STOREN(p, v, n) do { float sn_t_[8]; float *sn_p_ = (p); st(sn_t_, (v));           \
    for (ptrdiff_t sn_i_ = 0; sn_i_ < (n); sn_i_++) sn_p_[sn_i_] = sn_t_[sn_i_]; } while (0)

static void dwk_base(DWK_PARAMS) { DWK_BODY }

// ---------------------------------------------------------------------------------------------
// Rows scaled by one value each (squeeze-and-excitation: x[N, C, H, W] · s[N, C, 1, 1]).

#define SCALE_BODY                                                                             \
    for (ptrdiff_t r = 0; r < rows; r++) {                                                     \
        const float *xr = x + r * len;                                                         \
        float *yr = y + r * len;                                                               \
        v8 sv = splat(s[r]);                                                                   \
        ptrdiff_t i = 0;                                                                       \
        for (; i + 8 <= len; i += 8) st(yr + i, ld(xr + i) * sv);                              \
        for (; i < len; i++) yr[i] = xr[i] * s[r];                                             \
    }

#define SCALE_PARAMS const float *x, const float *s, float *y, ptrdiff_t rows, ptrdiff_t len

static void scale_base(SCALE_PARAMS) { SCALE_BODY }

// Fake quantization (QuantizeLinear then DequantizeLinear, one pass) of n floats: NaN → 0,
// t = clamp(x / scale, lo, hi), round half to even by adding and subtracting 1.5·2²³ (exact for
// |t| < 2²²), y = round(t)·scale; sums[0] = Σ x², sums[1] = Σ (x − y)², the first n − n % 8
// values in eight float lanes added in lane order in double, then the last n % 8 one by one in
// double. No contraction into fused multiply-adds, so every build and CPU gives the same bits.
#define FQ_PARAMS const float *x, float *y, ptrdiff_t n, float scale, float lo, float hi, double *sums
#define FQ_BODY                                                                                \
    _Pragma("clang fp contract(off)") _Pragma("clang fp reassociate(off)")                     \
    v8 vs = splat(scale), vlo = splat(lo), vhi = splat(hi), magic = splat(12582912.0f);        \
    v8 ps = splat(0.0f), pn = splat(0.0f);                                                     \
    for (ptrdiff_t i = 0; i + 8 <= n; i += 8) {                                                \
        v8 v = ld(x + i);                                                                      \
        v = (v8)((vi8)v & (vi8)(v == v));                                                      \
        v8 t = v / vs;                                                                         \
        t = sel((vi8)(t < vlo), vlo, t);                                                       \
        t = sel((vi8)(t > vhi), vhi, t);                                                       \
        v8 r = (t + magic) - magic;                                                            \
        v8 q = r * vs;                                                                         \
        if (y) st(y + i, q);                                                                   \
        v8 d = v - q;                                                                          \
        v8 vv = v * v, dd = d * d;                                                             \
        ps += vv;                                                                              \
        pn += dd;                                                                              \
    }                                                                                          \
    double s_ = 0, m_ = 0;                                                                     \
    for (int l = 0; l < 8; l++) { s_ += ps[l]; m_ += pn[l]; }                                  \
    for (ptrdiff_t i = n - n % 8; i < n; i++) {                                                \
        float v = x[i] == x[i] ? x[i] : 0.0f;                                                  \
        float t = v / scale;                                                                   \
        t = t < lo ? lo : t;                                                                   \
        t = t > hi ? hi : t;                                                                   \
        float r = (t + 12582912.0f) - 12582912.0f;                                             \
        float q = r * scale;                                                                   \
        if (y) y[i] = q;                                                                       \
        float d = v - q;                                                                       \
        float vv = v * v, dd = d * d;                                                          \
        s_ += vv;                                                                              \
        m_ += dd;                                                                              \
    }                                                                                          \
    sums[0] = s_;                                                                              \
    sums[1] = m_;

// The smallest and largest of n floats (NaN ignored; +inf, -inf when there are none).
#define MM_PARAMS const float *x, ptrdiff_t n, float *out
#define MM_BODY                                                                                \
    v8 lo = splat(__builtin_inff()), hi = splat(-__builtin_inff());                            \
    ptrdiff_t i = 0;                                                                           \
    for (; i + 8 <= n; i += 8) {                                                               \
        v8 v = ld(x + i);                                                                      \
        lo = sel((vi8)(v < lo), v, lo);                                                        \
        hi = sel((vi8)(v > hi), v, hi);                                                        \
    }                                                                                          \
    float a_ = lo[0], b_ = hi[0];                                                              \
    for (int l = 1; l < 8; l++) { if (lo[l] < a_) a_ = lo[l]; if (hi[l] > b_) b_ = hi[l]; }    \
    for (; i < n; i++) { if (x[i] < a_) a_ = x[i]; if (x[i] > b_) b_ = x[i]; }                 \
    out[0] = a_;                                                                               \
    out[1] = b_;

// One column of C (n = 1: a squeeze-and-excitation 1×1 convolution on a 1×1 plane, a classifier
// as a convolution) from the packed A: packing a k × 16 (or 32) panel of B for one column costs
// more than the product. Each lane of an accumulator is one row of a 6-row group of the packed
// layout (lanes 6 and 7 are ignored), four groups at a time; every row's sum is the bias, then
// p = 0, 1, … one multiply-add each, the GEMM tiles' order, so the results are theirs bit for bit.
#define GEMV_COL_PARAMS ptrdiff_t m, ptrdiff_t k, const float *packed_a, const float *x, ptrdiff_t incx, \
    float *c, ptrdiff_t ldc, const float *bias, ck_activation act
#define GEMV_COL_BODY                                                                          \
    ptrdiff_t groups = (m + MR - 1) / MR;                                                      \
    for (ptrdiff_t g0 = 0; g0 < groups; g0 += 4) {                                             \
        int ng = groups - g0 < 4 ? (int)(groups - g0) : 4;                                     \
        v8 acc[4];                                                                             \
        for (int q = 0; q < 4; q++) {                                                          \
            float t[8] = {0};                                                                  \
            for (int r = 0; r < MR; r++) {                                                     \
                ptrdiff_t row = (g0 + q) * MR + r;                                             \
                t[r] = bias && q < ng && row < m ? bias[row] : 0;                              \
            }                                                                                  \
            acc[q] = ld(t);                                                                    \
        }                                                                                      \
        const float *ap = packed_a + g0 * MR * k;                                              \
        ptrdiff_t last = g0 + ng == groups ? k - 1 : k;   /* the buffer's last 6: no 8-wide load */ \
        for (ptrdiff_t p = 0; p < last; p++) {                                                 \
            v8 xv = splat(x[p * incx]);                                                        \
            for (int q = 0; q < 4; q++)                                                        \
                if (q < ng) acc[q] = acc[q] + ld(ap + q * MR * k + p * MR) * xv;               \
        }                                                                                      \
        if (last < k) {                                                                        \
            v8 xv = splat(x[last * incx]);                                                     \
            for (int q = 0; q < ng; q++) {                                                     \
                float t[8] = {0};                                                              \
                memcpy(t, ap + q * MR * k + last * MR, sizeof(float) * MR);                    \
                acc[q] = acc[q] + ld(t) * xv;                                                  \
            }                                                                                  \
        }                                                                                      \
        for (int q = 0; q < ng; q++) {                                                         \
            float t[8];                                                                        \
            st(t, activate(acc[q], act));                                                      \
            for (int r = 0; r < MR; r++) {                                                     \
                ptrdiff_t row = (g0 + q) * MR + r;                                             \
                if (row < m) c[row * ldc] = t[r];                                            \
            }                                                                                  \
        }                                                                                      \
    }

static void gemv_col_base(GEMV_COL_PARAMS) { GEMV_COL_BODY }

static void fq_base(FQ_PARAMS) { FQ_BODY }
static void mm_base(MM_PARAMS) { MM_BODY }

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma")))
AVX2 static void gemm_avx2(GEMM_PARAMS) { GEMM_BODY }
AVX2 static void map_avx2(MAP_PARAMS) { MAP_BODY }
AVX2 static void dw_avx2(DW_PARAMS) { DW_BODY }
AVX2 static void dw8_avx2(DW8_PARAMS) { DW8_BODY }
#undef DWK_LOADN
#undef DWK_STOREN
#define DWK_MASK(n) ({ int mk_n_ = (int)(n); vi8 mk_i_ = {0, 1, 2, 3, 4, 5, 6, 7};                \
    vi8 mk_v_ = {mk_n_, mk_n_, mk_n_, mk_n_, mk_n_, mk_n_, mk_n_, mk_n_}; (__m256i)(mk_i_ < mk_v_); })
#define DWK_LOADN(p, n) ((v8)_mm256_maskload_ps((p), DWK_MASK(n)))
#define DWK_STOREN(p, v, n) _mm256_maskstore_ps((p), DWK_MASK(n), (__m256)(v))
AVX2 static void dwk_avx2(DWK_PARAMS) { DWK_BODY }
AVX2 static void scale_avx2(SCALE_PARAMS) { SCALE_BODY }
AVX2 static void fq_avx2(FQ_PARAMS) { FQ_BODY }
AVX2 static void mm_avx2(MM_PARAMS) { MM_BODY }
AVX2 static void gemv_col_avx2(GEMV_COL_PARAMS) { GEMV_COL_BODY }

// ---------------------------------------------------------------------------------------------
// GEMM with AVX-512: a 12 × 32 register tile (24 of the 32 zmm registers accumulate; each k step
// is two loads of B, twelve broadcasts of A and 24 multiply-adds), B packed 32 columns wide. A
// is read through the same 6-row packed layout (two consecutive groups make the 12 rows) or in
// place. Partial panels use masked loads and stores. The products' summation order is that of
// the AVX2 kernel (bias first, then p = 0, 1, …, one fused multiply-add per step), so both
// variants give bit-identical results.

#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f,avx2,fma")))
#define NR5 32
#define MR5 12

static inline __mmask16 lanes(ptrdiff_t n) {   // the first n ≤ 16 lanes (n may be ≤ 0)
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

AVX512 static void pack_b32(ptrdiff_t k, const float *b, ptrdiff_t ldb, ptrdiff_t cols, float *dst, const float *scale) {
    if (scale) {
        __mmask16 m0 = lanes(cols), m1 = lanes(cols - 16);
        for (ptrdiff_t p = 0; p < k; p++) {
            __m512 sp = _mm512_set1_ps(scale[p]);
            _mm512_storeu_ps(dst + p * NR5, _mm512_mul_ps(_mm512_maskz_loadu_ps(m0, b + p * ldb), sp));
            _mm512_storeu_ps(dst + p * NR5 + 16, _mm512_mul_ps(_mm512_maskz_loadu_ps(m1, b + p * ldb + 16), sp));
        }
    } else if (cols == NR5) {
        for (ptrdiff_t p = 0; p < k; p++) {
            _mm512_storeu_ps(dst + p * NR5, _mm512_loadu_ps(b + p * ldb));
            _mm512_storeu_ps(dst + p * NR5 + 16, _mm512_loadu_ps(b + p * ldb + 16));
        }
    } else {
        __mmask16 m0 = lanes(cols), m1 = lanes(cols - 16);
        for (ptrdiff_t p = 0; p < k; p++) {
            _mm512_storeu_ps(dst + p * NR5, _mm512_maskz_loadu_ps(m0, b + p * ldb));
            _mm512_storeu_ps(dst + p * NR5 + 16, _mm512_maskz_loadu_ps(m1, b + p * ldb + 16));
        }
    }
}

static void pack_b32_gather(ptrdiff_t k, const float *b, ptrdiff_t ldb, ck_batch bt, ptrdiff_t j, ptrdiff_t cols, float *dst) {
    for (ptrdiff_t jj = 0; jj < NR5; jj++) {
        if (jj >= cols) { for (ptrdiff_t p = 0; p < k; p++) dst[p * NR5 + jj] = 0; continue; }
        ptrdiff_t col = j + jj, img = col / bt.per;
        const float *src = b + img * bt.b_stride + (col - img * bt.per);
        if (bt.b_scale) { for (ptrdiff_t p = 0; p < k; p++) dst[p * NR5 + jj] = src[p * ldb] * bt.b_scale[p]; }
        else { for (ptrdiff_t p = 0; p < k; p++) dst[p * NR5 + jj] = src[p * ldb]; }
    }
}

static void scatter_tile32(const float *t, int rows, float *c, ptrdiff_t ldc, ck_batch bt, ptrdiff_t i, ptrdiff_t j, ptrdiff_t cols) {
    for (ptrdiff_t jj = 0; jj < cols; jj++) {
        ptrdiff_t col = j + jj, img = col / bt.per;
        float *dst = c + img * bt.c_stride + i * ldc + (col - img * bt.per);
        for (int r = 0; r < rows; r++) dst[r * ldc] = t[r * NR5 + jj];
    }
}

// The eight-lane `activate` on each half of a sixteen-lane vector: LeakyRelu, Tanh, Exp, Erf,
// and Sigmoid/SiLU where an exponent would be subnormal. Out of line: rarely taken, and large.
AVX512 __attribute__((noinline)) static __m512 act16_halves(__m512 v, ck_activation act) {
    float t[16];
    _mm512_storeu_ps(t, v);
    st(t, activate(ld(t), act));
    st(t + 8, activate(ld(t + 8), act));
    return _mm512_loadu_ps(t);
}

// The activation `kind` (act.kind, or a constant where the caller has switched on it) on one
// 16-lane vector. Relu and Clip keep NaN (a false comparison leaves the lane); Sigmoid, SiLU,
// HardSigmoid and HardSwish are the eight-lane formulas in their order (the same bits); the other
// kinds go through `act16_halves`. Always inline: a call spills every live vector register (all
// are caller-saved), and a register tile called it for each of its 24 accumulators.
AVX512 static inline __attribute__((always_inline)) __m512 act16_kind(__m512 v, const int kind, ck_activation act) {
    switch (kind) {
    case 0: return v;
    case 1: return _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ), _mm512_setzero_ps());
    case 2: {
        __m512 lo = _mm512_set1_ps(act.p0), hi = _mm512_set1_ps(act.p1);
        v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, lo, _CMP_LT_OQ), lo);
        return _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, hi, _CMP_GT_OQ), hi);
    }
    case 4: case 5: {   // Sigmoid, SiLU: vsigmoid's operations on sixteen lanes, in its order (same bits)
        __m512 nx = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000)));   // -|x|
        if (_mm512_cmp_ps_mask(nx, _mm512_set1_ps(-87.3f), _CMP_LT_OQ)) return act16_halves(v, act);   // subnormal e
        __m512 n = _mm512_roundscale_ps(_mm512_fmadd_ps(nx, _mm512_set1_ps(1.44269504088896341f), _mm512_set1_ps(0.5f)),
                                        _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
        __m512i ni = _mm512_cvttps_epi32(n);
        __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), nx);
        r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
        __m512 y = _mm512_set1_ps(1.9875691500e-4f);
        y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507e-3f));
        y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
        y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894e-2f));
        y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459e-1f));
        y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201e-1f));
        y = _mm512_add_ps(_mm512_fmadd_ps(y, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
        __m512 e = _mm512_mul_ps(y, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(ni, _mm512_set1_epi32(127)), 23)));
        __m512 q = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
        __m512 sg = _mm512_mask_mov_ps(_mm512_mul_ps(e, q), _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GE_OQ), q);
        return kind == 4 ? sg : _mm512_mul_ps(v, sg);
    }
    case 6: case 7: {   // HardSigmoid, HardSwish: the eight-lane formulas (NaN kept), sixteen lanes at once
        __m512 hs = kind == 6 ? _mm512_fmadd_ps(v, _mm512_set1_ps(act.p0), _mm512_set1_ps(act.p1))
                              : _mm512_fmadd_ps(v, _mm512_set1_ps(1.0f / 6), _mm512_set1_ps(0.5f));
        hs = _mm512_mask_mov_ps(hs, _mm512_cmp_ps_mask(hs, _mm512_setzero_ps(), _CMP_LT_OQ), _mm512_setzero_ps());
        hs = _mm512_mask_mov_ps(hs, _mm512_cmp_ps_mask(hs, _mm512_set1_ps(1.0f), _CMP_GT_OQ), _mm512_set1_ps(1.0f));
        return kind == 6 ? hs : _mm512_mul_ps(v, hs);
    }
    default: return act16_halves(v, act);
    }
}

AVX512 static inline __attribute__((always_inline)) __m512 act16(__m512 v, ck_activation act) {
    return act16_kind(v, act.kind, act);
}

// `act16` over a register tile's accumulators (`rows` of acc0, and of acc1 where `wide`), the
// kind switched on once for the tile rather than per vector.
#define ACT_TILE_CASE(K)                                                                       \
    case K:                                                                                    \
        for (int r_ = 0; r_ < rows; r_++) {                                                    \
            acc0[r_] = act16_kind(acc0[r_], K, act);                                           \
            if (wide) acc1[r_] = act16_kind(acc1[r_], K, act);                                 \
        }                                                                                      \
        break;
AVX512 static inline __attribute__((always_inline)) void act_tile16(__m512 *acc0, __m512 *acc1, const int rows,
                                                                     const int wide, ck_activation act) {
    switch (act.kind) {
    case 0: break;
    ACT_TILE_CASE(1) ACT_TILE_CASE(2) ACT_TILE_CASE(4) ACT_TILE_CASE(5) ACT_TILE_CASE(6) ACT_TILE_CASE(7)
    default:
        for (int r = 0; r < rows; r++) {
            acc0[r] = act16_halves(acc0[r], act);
            if (wide) acc1[r] = act16_halves(acc1[r], act);
        }
        break;
    }
}

// The first `n` lanes of `v` stored to `dst` (all 16 where n ≥ 16).
AVX512 static inline __attribute__((always_inline)) void store16(float *dst, __m512 v, ptrdiff_t n) {
    if (n >= 16) _mm512_storeu_ps(dst, v); else _mm512_mask_storeu_ps(dst, lanes(n), v);
}

// Sigmoid and SiLU over an array sixteen at a time (`act16`: the eight-lane operations, so the
// same bits as `map_avx2`), one loop per kind; the last n % 16 values masked.
#define MAP16_LOOP(K)                                                                          \
    { const ck_activation a16_ = {(K), act.p0, act.p1};                                        \
      for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, act16(_mm512_loadu_ps(x + i), a16_)); \
      if (i < n) _mm512_mask_storeu_ps(y + i, lanes(n - i), act16(_mm512_maskz_loadu_ps(lanes(n - i), x + i), a16_)); } break
AVX512 static void map_avx512(MAP_PARAMS) {
    ptrdiff_t i = 0;
    switch (act.kind) {
    case 4: MAP16_LOOP(4);
    case 5: MAP16_LOOP(5);
    default: map_avx2(x, y, n, act); break;
    }
}

// `rows` ≤ 12 rows by `cols` ≤ 32 columns (WIDE: more than 16 columns, two accumulators a row).
// A: packed (`ap`, rows 0–5 from `ap`, rows 6–11 from `ap + 6k`) or in place (`a`, `lda`).
AVX512 static inline __attribute__((always_inline)) void tile32(
        const int rows, const int wide, ptrdiff_t k, const float *a, ptrdiff_t lda, const float *ap,
        const float *bp, float *c, ptrdiff_t ldc, ptrdiff_t cols, const float *bias, ck_activation act) {
    __m512 acc0[MR5], acc1[MR5];
    for (int r = 0; r < rows; r++) {
        acc0[r] = bias ? _mm512_set1_ps(bias[r]) : _mm512_setzero_ps();
        acc1[r] = acc0[r];
    }
    if (ap) {
        const float *ap0 = ap, *ap1 = ap + 6 * k;
        for (ptrdiff_t p = 0; p < k; p++, ap0 += 6, ap1 += 6, bp += NR5) {
            __m512 b0 = _mm512_loadu_ps(bp), b1 = wide ? _mm512_loadu_ps(bp + 16) : b0;
            for (int r = 0; r < rows; r++) {
                __m512 av = _mm512_set1_ps(r < 6 ? ap0[r] : ap1[r - 6]);
                acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
                if (wide) acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
            }
        }
    } else {
        for (ptrdiff_t p = 0; p < k; p++, bp += NR5) {
            __m512 b0 = _mm512_loadu_ps(bp), b1 = wide ? _mm512_loadu_ps(bp + 16) : b0;
            for (int r = 0; r < rows; r++) {
                __m512 av = _mm512_set1_ps(a[r * lda + p]);
                acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
                if (wide) acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
            }
        }
    }
    act_tile16(acc0, acc1, rows, wide, act);
    for (int r = 0; r < rows; r++) {
        store16(c + r * ldc, acc0[r], cols);
        if (wide) store16(c + r * ldc + 16, acc1[r], cols - 16);
    }
}

#define TILE32_FN(R)                                                                           \
    AVX512 static void tile32_##R(int wide, ptrdiff_t k, const float *a, ptrdiff_t lda, const float *ap, \
                                  const float *bp, float *c, ptrdiff_t ldc, ptrdiff_t cols,    \
                                  const float *bias, ck_activation act) {                      \
        if (wide) tile32(R, 1, k, a, lda, ap, bp, c, ldc, cols, bias, act);                     \
        else tile32(R, 0, k, a, lda, ap, bp, c, ldc, cols, bias, act);                          \
    }
TILE32_FN(1) TILE32_FN(2) TILE32_FN(3) TILE32_FN(4) TILE32_FN(5) TILE32_FN(6)
TILE32_FN(7) TILE32_FN(8) TILE32_FN(9) TILE32_FN(10) TILE32_FN(11) TILE32_FN(12)

typedef void (*tile32_fn)(int, ptrdiff_t, const float *, ptrdiff_t, const float *, const float *, float *,
                          ptrdiff_t, ptrdiff_t, const float *, ck_activation);
static const tile32_fn tiles32[MR5 + 1] = {0, tile32_1, tile32_2, tile32_3, tile32_4, tile32_5, tile32_6,
                                           tile32_7, tile32_8, tile32_9, tile32_10, tile32_11, tile32_12};

AVX512 static void gemm_avx512(GEMM_PARAMS) {
    if (bt.per <= 0) bt.per = j1;
    ptrdiff_t wb = gemm_block_panels(k);
    float *tmp = scratch + k * NR5 * wb;
    for (ptrdiff_t jb = j0; jb < j1; jb += NR5 * wb) {
        ptrdiff_t je = j1 - jb < NR5 * wb ? j1 : jb + NR5 * wb;
        int straddles = 0;
        for (ptrdiff_t j = jb; j < je; j += NR5) {
            ptrdiff_t cols = je - j < NR5 ? je - j : NR5;
            ptrdiff_t img = j / bt.per, pos = j - img * bt.per;
            float *panel = scratch + ((j - jb) / NR5) * k * NR5;
            if (pos + cols > bt.per) { straddles = 1; pack_b32_gather(k, b, ldb, bt, j, cols, panel); }
            else pack_b32(k, b + img * bt.b_stride + pos, ldb, cols, panel, bt.b_scale);
        }
        for (ptrdiff_t i = 0; i < m; i += MR5) {
            int rows = m - i < MR5 ? (int)(m - i) : MR5;
            const float *bi = bias ? bias + i : 0;
            const float *ap = packed_a ? packed_a + i * k : 0;
            for (ptrdiff_t j = jb; j < je; j += NR5) {
                ptrdiff_t cols = je - j < NR5 ? je - j : NR5;
                ptrdiff_t img = j / bt.per, pos = j - img * bt.per;
                const float *panel = scratch + ((j - jb) / NR5) * k * NR5;
                if (straddles && pos + cols > bt.per) {
                    tiles32[rows](1, k, a + i * lda, lda, ap, panel, tmp, NR5, NR5, bi, act);
                    scatter_tile32(tmp, rows, c, ldc, bt, i, j, cols);
                } else {
                    tiles32[rows](cols > 16, k, a + i * lda, lda, ap, panel, c + img * bt.c_stride + pos + i * ldc, ldc, cols, bi, act);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The product transposed, for 1×1 convolutions over few positions: C^T = B^T·A^T, the vector
// along A's rows (output channels, 32 a panel) and the register tile's rows along B's columns
// (positions). A 7×7 plane's 49 columns fill only 49 of the column tiles' 64 lanes; here every
// lane is a channel. Each value is the bias, then the k products added in order by fused
// multiply-adds, then the activation by `act16`: the same operations as `tile32`, so the same
// bits. The tile is transposed back in registers (`transpose_store`).

size_t ck_packed_at_size(ptrdiff_t m, ptrdiff_t k) { return (size_t)((m + 31) / 32 * 32 * k); }

// A as k-major panels of 32 rows: panel q holds A[32q + l, p] at [q][p][l] (zero past m).
void ck_pack_at(ptrdiff_t m, ptrdiff_t k, const float *a, ptrdiff_t lda, float *out) {
    for (ptrdiff_t i = 0; i < m; i += 32)
        for (ptrdiff_t p = 0; p < k; p++)
            for (ptrdiff_t l = 0; l < 32; l++)
                *out++ = i + l < m ? a[(i + l) * lda + p] : 0;
}

// Rows 0..<rows of a 16 × 16 block (the rest taken as zero) transposed, and the first `chans`
// of the transposed rows stored `ldc` apart, lanes `mask`: four butterfly stages, each swapping
// one bit of the row index with the same bit of the lane index.
AVX512 static inline __attribute__((always_inline)) void transpose_store(
        const __m512 *in, const int rows, float *c, ptrdiff_t ldc, ptrdiff_t chans, __mmask16 mask) {
    __m512 v[16];
    for (int r = 0; r < 16; r++) v[r] = r < rows ? in[r] : _mm512_setzero_ps();
    for (int s = 1; s < 16; s <<= 1) {
        int ia[16], ib[16];
        for (int j = 0; j < 16; j++) {
            ia[j] = (j & s) ? 16 + j - s : j;
            ib[j] = (j & s) ? 16 + j : j + s;
        }
        const __m512i xa = _mm512_loadu_si512(ia), xb = _mm512_loadu_si512(ib);
        for (int i = 0; i < 16; i++) {
            if (i & s) continue;
            __m512 a = v[i], b = v[i + s];
            v[i] = _mm512_permutex2var_ps(a, xa, b);
            v[i + s] = _mm512_permutex2var_ps(a, xb, b);
        }
    }
    for (ptrdiff_t ch = 0; ch < chans; ch++) _mm512_mask_storeu_ps(c + ch * ldc, mask, v[ch]);
}

AVX512 static inline __attribute__((always_inline)) void tile_t(
        const int rows, const int wide, ptrdiff_t k, const float *x, ptrdiff_t ldb, const float *wp,
        float *c, ptrdiff_t ldc, ptrdiff_t chans, const float *bias, ck_activation act) {
    __m512 acc0[MR5], acc1[MR5];
    __m512 z0 = bias ? _mm512_maskz_loadu_ps(lanes(chans), bias) : _mm512_setzero_ps();
    __m512 z1 = bias && wide ? _mm512_maskz_loadu_ps(lanes(chans - 16), bias + 16) : _mm512_setzero_ps();
    for (int r = 0; r < rows; r++) { acc0[r] = z0; acc1[r] = z1; }
    for (ptrdiff_t p = 0; p < k; p++, x += ldb, wp += 32) {
        __m512 w0 = _mm512_loadu_ps(wp), w1 = wide ? _mm512_loadu_ps(wp + 16) : w0;
        for (int r = 0; r < rows; r++) {
            __m512 av = _mm512_set1_ps(x[r]);
            acc0[r] = _mm512_fmadd_ps(av, w0, acc0[r]);
            if (wide) acc1[r] = _mm512_fmadd_ps(av, w1, acc1[r]);
        }
    }
    act_tile16(acc0, acc1, rows, wide, act);
    const __mmask16 mask = lanes(rows);
    transpose_store(acc0, rows, c, ldc, chans < 16 ? chans : 16, mask);
    if (wide) transpose_store(acc1, rows, c + 16 * ldc, ldc, chans - 16, mask);
}

#define TILE_T_FN(R)                                                                           \
    AVX512 static void tile_t_##R(int wide, ptrdiff_t k, const float *x, ptrdiff_t ldb, const float *wp, \
                                  float *c, ptrdiff_t ldc, ptrdiff_t chans, const float *bias, ck_activation act) { \
        if (wide) tile_t(R, 1, k, x, ldb, wp, c, ldc, chans, bias, act);                         \
        else tile_t(R, 0, k, x, ldb, wp, c, ldc, chans, bias, act);                              \
    }
TILE_T_FN(1) TILE_T_FN(2) TILE_T_FN(3) TILE_T_FN(4) TILE_T_FN(5) TILE_T_FN(6)
TILE_T_FN(7) TILE_T_FN(8) TILE_T_FN(9) TILE_T_FN(10) TILE_T_FN(11) TILE_T_FN(12)

typedef void (*tile_t_fn)(int, ptrdiff_t, const float *, ptrdiff_t, const float *, float *, ptrdiff_t, ptrdiff_t,
                          const float *, ck_activation);
static const tile_t_fn tiles_t[MR5 + 1] = {0, tile_t_1, tile_t_2, tile_t_3, tile_t_4, tile_t_5, tile_t_6,
                                           tile_t_7, tile_t_8, tile_t_9, tile_t_10, tile_t_11, tile_t_12};

int ck_gemm_t_available(void) { return ck_uses_avx512(); }

void ck_gemm_t_columns(ptrdiff_t m, ptrdiff_t k, const float *packed_at, const float *b, ptrdiff_t ldb, float *c,
                       ptrdiff_t ldc, const float *bias, ck_activation act, ptrdiff_t i0, ptrdiff_t i1,
                       ptrdiff_t j0, ptrdiff_t j1) {
    if (!ck_uses_avx512() || j1 <= j0) return;
    ptrdiff_t n = j1 - j0, tiles = (n + MR5 - 1) / MR5, end = i1 < m ? i1 : m;
    for (ptrdiff_t q = i0; q < end; q += 32) {
        ptrdiff_t chans = end - q < 32 ? end - q : 32;
        const float *wp = packed_at + (q / 32) * 32 * k;
        // positions in `tiles` tiles of nearly equal rows (49 → 10, 10, 10, 10, 9)
        for (ptrdiff_t t = 0, j = j0; t < tiles; t++) {
            ptrdiff_t rows = (n - (j - j0)) / (tiles - t);
            tiles_t[rows](chans > 16, k, b + j, ldb, wp, c + q * ldc + j, ldc, chans, bias ? bias + q : 0, act);
            j += rows;
        }
    }
}

static int detect(void) {
    const char *off = getenv("COMPRESS_NO_AVX2");
    if (off && off[0] == '1') return 0;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return 0;
    const char *no512 = getenv("COMPRESS_NO_AVX512");
    if (no512 && no512[0] == '1') return 1;
    return __builtin_cpu_supports("avx512f") ? 2 : 1;
}
#else
static int detect(void) { return 0; }
#endif

// 0 baseline, 1 AVX2 + FMA, 2 AVX-512 (the GEMM; the other kernels use their AVX2 variants);
// -1 not yet detected (threads that race compute the same value).
static _Atomic int level_state = -1;
static _Atomic int level_cap = 2;   // ck_force_level

static int level(void) {
    int l = level_state;
    if (l < 0) {
        l = detect();
        if (l > level_cap) l = level_cap;
        level_state = l;
    }
    return l;
}

int ck_uses_avx2(void) { return level() >= 1; }

int ck_uses_avx512(void) { return level() >= 2; }

int ck_supported_level(void) { return detect(); }

void ck_force_level(int cap) {
    level_cap = cap < 0 ? 2 : cap;
    level_state = -1;
}

void ck_force_baseline(int on) { ck_force_level(on ? 0 : -1); }

int ck_gemm_panel_width(void) { return level() >= 2 ? 32 : NR; }

int ck_gemm_row_tile(void) { return level() >= 2 ? 12 : MR; }

// Enough for either variant: a block of panels of B (the same bytes in both) and a 12 × 32 tile.
size_t ck_gemm_scratch(ptrdiff_t k) {
    return (size_t)((k > 0 ? k : 1) * 32 * gemm_block_panels(k) + 12 * 32);
}

void ck_gemm_columns(GEMM_PARAMS) {
    if (j1 - j0 == 1 && packed_a && m > 0 && k > 0 && !bt.b_scale) {
        ptrdiff_t per = bt.per > 0 ? bt.per : j1, img = j0 / per, pos = j0 - img * per;
        const float *xb = b + img * bt.b_stride + pos;
        float *cc = c + img * bt.c_stride + pos;
#if defined(__x86_64__)
        if (ck_uses_avx2()) { gemv_col_avx2(m, k, packed_a, xb, ldb, cc, ldc, bias, act); return; }
#endif
        gemv_col_base(m, k, packed_a, xb, ldb, cc, ldc, bias, act);
        return;
    }
#if defined(__x86_64__)
    if (ck_uses_avx512()) { gemm_avx512(m, k, a, lda, packed_a, b, ldb, c, ldc, bias, act, bt, j0, j1, scratch); return; }
    if (ck_uses_avx2()) { gemm_avx2(m, k, a, lda, packed_a, b, ldb, c, ldc, bias, act, bt, j0, j1, scratch); return; }
#endif
    gemm_base(m, k, a, lda, packed_a, b, ldb, c, ldc, bias, act, bt, j0, j1, scratch);
}

void ck_depthwise3x3(DW_PARAMS) {
#if defined(__x86_64__)
    if (ck_uses_avx2()) { dw_avx2(x, h, w, w9, bias, y, oh, ow, sh, sw, ph, pw, act, scratch); return; }
#endif
    dw_base(x, h, w, w9, bias, y, oh, ow, sh, sw, ph, pw, act, scratch);
}

void ck_depthwise3x3_c8(DW8_PARAMS) {
#if defined(__x86_64__)
    if (ck_uses_avx2()) { dw8_avx2(x, plane, h, w, w9, bias8, y, oplane, oh, ow, sh, sw, ph, pw, act, scratch); return; }
#endif
    dw8_base(x, plane, h, w, w9, bias8, y, oplane, oh, ow, sh, sw, ph, pw, act, scratch);
}

void ck_depthwise_c8(DWK_PARAMS) {
#if defined(__x86_64__)
    if (ck_uses_avx2()) { dwk_avx2(x, plane, nc, h, w, kh, kw, wk, bias, y, oplane, oh, ow, sh, sw, dh, dw, ph, pw, act, scratch); return; }
#endif
    dwk_base(x, plane, nc, h, w, kh, kw, wk, bias, y, oplane, oh, ow, sh, sw, dh, dw, ph, pw, act, scratch);
}


size_t ck_packed_a_size(ptrdiff_t m, ptrdiff_t k) { return (size_t)((m + MR - 1) / MR * MR * k); }

void ck_pack_a(ptrdiff_t m, ptrdiff_t k, const float *a, ptrdiff_t lda, float *out) {
    for (ptrdiff_t i = 0; i < m; i += MR)
        for (ptrdiff_t p = 0; p < k; p++)
            for (ptrdiff_t r = 0; r < MR; r++)
                *out++ = i + r < m ? a[(i + r) * lda + p] : 0;
}

void ck_activate(MAP_PARAMS) {
#if defined(__x86_64__)
    if ((act.kind == 4 || act.kind == 5) && ck_uses_avx512()) { map_avx512(x, y, n, act); return; }
    if (ck_uses_avx2()) { map_avx2(x, y, n, act); return; }
#endif
    map_base(x, y, n, act);
}

void ck_scale_rows(SCALE_PARAMS) {
#if defined(__x86_64__)
    if (ck_uses_avx2()) { scale_avx2(x, s, y, rows, len); return; }
#endif
    scale_base(x, s, y, rows, len);
}

void ck_fake_quantize(FQ_PARAMS) {
#if defined(__x86_64__)
    if (ck_uses_avx2()) { fq_avx2(x, y, n, scale, lo, hi, sums); return; }
#endif
    fq_base(x, y, n, scale, lo, hi, sums);
}

void ck_min_max(MM_PARAMS) {
#if defined(__x86_64__)
    if (ck_uses_avx2()) { mm_avx2(x, n, out); return; }
#endif
    mm_base(x, n, out);
}

// ---------------------------------------------------------------------------------------------
// Convolution as an implicit product (AVX-512 or AVX2, stride 1 or 2 across): each panel of B
// (k × 32 with AVX-512, k × 16 with AVX2) is gathered straight from the input planes instead of
// from an im2col matrix, so the column matrix is never written or read back (on ResNet-18 the
// im2col pass, its copies and the packing reads of the 7 MB matrix took about a quarter of the
// convolution time). The panel's output positions fall into runs, each run one output row, at
// most one run per lane of a vector (16 lanes with AVX-512, 8 with AVX2); with stride 1 across,
// a tap reads each run as consecutive input values, so a row of the panel is a few masked loads
// (the mask drops the padding) per vector; with stride 2, two masked loads of twice the vector's
// consecutive values and a permute keeping the even ones. Row r of B is (c, kh, kw) in the
// weights' order; the multiply is the GEMM's own tile (`tile32`, or `tile` / `tile8`), so the
// results equal the explicit path's bit for bit.

#define CONV_PARAMS ptrdiff_t m, const ck_conv2d *g, const float *x, const float *a, ptrdiff_t lda,                \
    const float *packed_a, float *y, const float *bias, ck_activation act, ptrdiff_t j0, ptrdiff_t j1, float *scratch

#define CONV_MAX_TAPS 64

#if defined(__x86_64__)

typedef struct {
    ptrdiff_t off[CONV_MAX_TAPS][2][16];   // input offset (within a channel plane) of the half's lane 0
    __mmask16 mask[CONV_MAX_TAPS][2][16];  // lanes the run fills
    __mmask16 src[CONV_MAX_TAPS][2][16][2];  // stride 2: the even input values those lanes read
    int count[CONV_MAX_TAPS][2];
} conv_runs;

// The lanes [lo, hi) ⊆ [a, b) of a run (one output row, its first lane a at output column ow0)
// whose input column for tap column v lies in the row: lane l reads iw = (ow0 + l − a)·sw − pw +
// v·dw = sw·l + shift, valid while 0 ≤ iw < w, i.e. ceil(−shift / sw) ≤ l < ceil((w − shift) / sw).
// Returns shift (the input column of lane 0); the run is empty when *hi ≤ *lo.
INLINE ptrdiff_t conv_run_lanes(const ck_conv2d *g, ptrdiff_t ow0, ptrdiff_t a, ptrdiff_t b, ptrdiff_t v,
                                ptrdiff_t *lo, ptrdiff_t *hi) {
    // (sw is 1 or 2 and every quotient below is of a non-negative value: a shift, not a division)
    ptrdiff_t sw = g->sw, e = sw - 1, shift = (ow0 - a) * sw - g->pw + v * g->dw;
    ptrdiff_t first = -shift <= 0 ? -(shift >> e) : (-shift + e) >> e;
    ptrdiff_t end = g->w - shift <= 0 ? -((shift - g->w) >> e) : (g->w - shift + e) >> e;
    *lo = first > a ? first : a;
    *hi = end < b ? end : b;
    return shift;
}

// Stride 2: lanes [lo, hi) (0 ≤ lo < hi ≤ 16) read the even values 2·lo … 2·(hi − 1) of 32
// loaded at once; the two 16-lane load masks of those values.
static inline void conv_even_masks(ptrdiff_t lo, ptrdiff_t hi, __mmask16 *m0, __mmask16 *m1) {
    uint32_t spread = (uint32_t)((((uint64_t)1 << (2 * hi)) - ((uint64_t)1 << (2 * lo))) & 0x55555555u);
    *m0 = (__mmask16)(spread & 0xFFFF);
    *m1 = (__mmask16)(spread >> 16);
}

AVX512 static void conv_panel_runs(const ck_conv2d *g, ptrdiff_t j, ptrdiff_t cols, conv_runs *t) {
    ptrdiff_t taps = g->kh * g->kw;
    for (ptrdiff_t tap = 0; tap < taps; tap++) t->count[tap][0] = t->count[tap][1] = 0;
    for (int half = 0; half < 2; half++) {
        ptrdiff_t l0 = 16 * half, l1 = cols < l0 + 16 ? cols : l0 + 16;
        for (ptrdiff_t a = l0; a < l1;) {
            ptrdiff_t q = j + a, oh = q / g->ow, ow0 = q - oh * g->ow;
            ptrdiff_t b = a + (g->ow - ow0) < l1 ? a + (g->ow - ow0) : l1;   // the run: lanes [a, b)
            for (ptrdiff_t u = 0; u < g->kh; u++) {
                ptrdiff_t ih = oh * g->sh - g->ph + u * g->dh;
                if (ih < 0 || ih >= g->h) continue;
                for (ptrdiff_t v = 0; v < g->kw; v++) {
                    ptrdiff_t sw = g->sw, lo, hi, shift = conv_run_lanes(g, ow0, a, b, v, &lo, &hi);
                    if (hi <= lo) continue;
                    ptrdiff_t tap = u * g->kw + v;
                    int n = t->count[tap][half]++;
                    __mmask16 mk = (__mmask16)(lanes(hi - l0) & ~lanes(lo - l0));
                    t->off[tap][half][n] = ih * g->w + shift + sw * l0;
                    t->mask[tap][half][n] = mk;
                    conv_even_masks(lo - l0, hi - l0, &t->src[tap][half][n][0], &t->src[tap][half][n][1]);
                }
            }
            a = b;
        }
    }
}

// Few input channels (c ≤ 4: a network's first layer, on an image): the k × 32 panels cost more
// to gather than to multiply (k = 27 for a 3×3 RGB stem, each gathered value used by as few as
// 16 output channels), and the runs of each panel are worked out again for every panel. Here
// each block of up to 16 output positions of one output row loads its tap vectors straight into
// registers and multiplies them into up to 16 rows at once: per tap one masked load (stride 1)
// or two and a permute keeping the even values (stride 2), zeros in the padding. The sums run
// in the tile's order (bias, then each tap r = (c, kh, kw) in turn, one FMA each, padding taps
// included), so the results equal the panel path's bit for bit.
#define DIRECT_ROWS 16
#define PF_ROWS 2

AVX512 static inline __attribute__((always_inline)) void conv_direct_block(
        const int rows, const ck_conv2d *g, const float *x, const float *a, ptrdiff_t lda, float *y, ptrdiff_t ldc,
        const float *bias, ck_activation act, ptrdiff_t oh, ptrdiff_t cols, const __mmask16 *mlo,
        const __mmask16 *mhi, const ptrdiff_t *shift) {
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    __m512 acc[DIRECT_ROWS];
    for (int r = 0; r < rows; r++) acc[r] = bias ? _mm512_set1_ps(bias[r]) : _mm512_setzero_ps();
    ptrdiff_t plane = g->h * g->w, p = 0;
    for (ptrdiff_t c = 0; c < g->c; c++)
        for (ptrdiff_t u = 0; u < g->kh; u++) {
            ptrdiff_t ih = oh * g->sh - g->ph + u * g->dh;
            int inside = ih >= 0 && ih < g->h;
            const float *row = x + c * plane + (inside ? ih * g->w : 0);
            for (ptrdiff_t v = 0; v < g->kw; v++, p++) {
                __m512 xv = _mm512_setzero_ps();
                if (inside && g->sw == 1) xv = _mm512_maskz_loadu_ps(mlo[v], row + shift[v]);
                else if (inside) xv = _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(mlo[v], row + shift[v]), even,
                                                             _mm512_maskz_loadu_ps(mhi[v], row + shift[v] + 16));
                for (int r = 0; r < rows; r++) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(a[r * lda + p]), xv, acc[r]);
            }
        }
    act_tile16(acc, acc, rows, 0, act);
    for (int r = 0; r < rows; r++) store16(y + r * ldc, acc[r], cols);
}

#define DIRECT_FN(R)                                                                           \
    AVX512 static void conv_direct_##R(const ck_conv2d *g, const float *x, const float *a, ptrdiff_t lda, float *y, \
                                       ptrdiff_t ldc, const float *bias, ck_activation act, ptrdiff_t oh, ptrdiff_t cols, \
                                       const __mmask16 *mlo, const __mmask16 *mhi, const ptrdiff_t *shift) { \
        conv_direct_block(R, g, x, a, lda, y, ldc, bias, act, oh, cols, mlo, mhi, shift);       \
    }
DIRECT_FN(1) DIRECT_FN(2) DIRECT_FN(3) DIRECT_FN(4) DIRECT_FN(5) DIRECT_FN(6) DIRECT_FN(7) DIRECT_FN(8)
DIRECT_FN(9) DIRECT_FN(10) DIRECT_FN(11) DIRECT_FN(12) DIRECT_FN(13) DIRECT_FN(14) DIRECT_FN(15) DIRECT_FN(16)

typedef void (*conv_direct_fn)(const ck_conv2d *, const float *, const float *, ptrdiff_t, float *, ptrdiff_t,
                               const float *, ck_activation, ptrdiff_t, ptrdiff_t, const __mmask16 *,
                               const __mmask16 *, const ptrdiff_t *);
static const conv_direct_fn conv_directs[DIRECT_ROWS + 1] = {
    0, conv_direct_1, conv_direct_2, conv_direct_3, conv_direct_4, conv_direct_5, conv_direct_6, conv_direct_7,
    conv_direct_8, conv_direct_9, conv_direct_10, conv_direct_11, conv_direct_12, conv_direct_13, conv_direct_14,
    conv_direct_15, conv_direct_16};

// Whether `conv_avx512` hands `m` rows of this geometry to the direct blocks: few channels,
// output rows long enough to fill the 16 lanes mostly (shorter rows pack several into a panel
// instead), and at most two groups of rows (each group loads the taps again: with 64 filters of
// 3×3 the panels were faster).
static inline int conv_direct_takes(ptrdiff_t m, const ck_conv2d *g) { return g->c <= 4 && g->ow >= 16 && m <= 2 * DIRECT_ROWS; }

AVX512 static void conv_direct512(ptrdiff_t m, const ck_conv2d *g, const float *x, const float *a, ptrdiff_t lda,
                                  float *y, const float *bias, ck_activation act, ptrdiff_t j0, ptrdiff_t j1) {
    ptrdiff_t ldc = g->oh * g->ow;
    __mmask16 mlo[CONV_MAX_TAPS], mhi[CONV_MAX_TAPS];
    ptrdiff_t shift[CONV_MAX_TAPS];
    for (ptrdiff_t j = j0; j < j1;) {
        ptrdiff_t oh = j / g->ow, ow0 = j - oh * g->ow;
        ptrdiff_t cols = g->ow - ow0 < 16 ? g->ow - ow0 : 16;
        if (j1 - j < cols) cols = j1 - j;
        for (ptrdiff_t v = 0; v < g->kw; v++) {   // the lanes [lo, hi) whose input column is in the row
            ptrdiff_t lo, hi;
            shift[v] = conv_run_lanes(g, ow0, 0, cols, v, &lo, &hi);
            if (hi <= lo) { mlo[v] = mhi[v] = 0; continue; }
            if (g->sw == 1) { mlo[v] = (__mmask16)(lanes(hi) & ~lanes(lo)); continue; }
            conv_even_masks(lo, hi, &mlo[v], &mhi[v]);
        }
        // The input this block's columns read for output row oh + PF_ROWS, fetched ahead: the
        // first layer's input comes from memory, and its masked loads alone leave the
        // prefetchers behind (0.4 ms for MobileNetV3's stem with the caches flushed, 0.2 warm).
        if (oh + PF_ROWS < g->oh) {
            ptrdiff_t c0 = ow0 * g->sw - g->pw, c1 = c0 + (cols - 1) * g->sw + (g->kw - 1) * g->dw;
            if (c0 < 0) c0 = 0;
            if (c1 >= g->w) c1 = g->w - 1;
            for (ptrdiff_t c = 0; c < g->c; c++)
                for (ptrdiff_t u = 0; u < g->kh; u++) {
                    ptrdiff_t ih = (oh + PF_ROWS) * g->sh - g->ph + u * g->dh;
                    if (ih < 0 || ih >= g->h || c1 < c0) continue;
                    const float *in = x + c * g->h * g->w + ih * g->w;
                    for (uintptr_t q = (uintptr_t)(in + c0) & ~(uintptr_t)63; q <= (uintptr_t)(in + c1); q += 64)
                        _mm_prefetch((const char *)q, _MM_HINT_T0);
                }
        }
        for (ptrdiff_t i = 0; i < m; i += DIRECT_ROWS) {
            int rows = m - i < DIRECT_ROWS ? (int)(m - i) : DIRECT_ROWS;
            // And the group's output two blocks ahead, for writing (its lines are read before
            // they are written), just before the group's stores.
            if (j + 32 < j1) for (int r = 0; r < rows; r++) __builtin_prefetch(y + (i + r) * ldc + j + 32, 1, 3);
            conv_directs[rows](g, x, a + i * lda, lda, y + i * ldc + j, ldc, bias ? bias + i : 0, act, oh, cols, mlo, mhi, shift);
        }
        j += cols;
    }
}

AVX512 static void conv_avx512(CONV_PARAMS) {
    if (conv_direct_takes(m, g)) { conv_direct512(m, g, x, a, lda, y, bias, act, j0, j1); return; }
    ptrdiff_t taps = g->kh * g->kw, k = g->c * taps, plane = g->h * g->w, ldc = g->oh * g->ow;
    ptrdiff_t wb = gemm_block_panels(k);   // panels gathered per block, as the GEMM packs them
    conv_runs *t = (conv_runs *)(scratch + k * NR5 * wb);
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    for (ptrdiff_t jb = j0; jb < j1; jb += NR5 * wb) {
      ptrdiff_t je = j1 - jb < NR5 * wb ? j1 : jb + NR5 * wb;
      for (ptrdiff_t j = jb; j < je; j += NR5) {
        ptrdiff_t cols = je - j < NR5 ? je - j : NR5;
        int halves = cols > 16 ? 2 : 1;
        conv_panel_runs(g, j, cols, t);
        float *d = scratch + ((j - jb) / NR5) * k * NR5;
        for (ptrdiff_t ch = 0; ch < g->c; ch++) {
            const float *xc = x + ch * plane;
            for (ptrdiff_t tap = 0; tap < taps; tap++, d += NR5) {
                for (int half = 0; half < halves; half++) {
                    __m512 v = _mm512_setzero_ps();
                    if (g->sw == 1) {
                        for (int n = 0; n < t->count[tap][half]; n++)
                            v = _mm512_mask_loadu_ps(v, t->mask[tap][half][n], xc + t->off[tap][half][n]);
                    } else {   // stride 2: 32 consecutive values, the even ones kept
                        for (int n = 0; n < t->count[tap][half]; n++) {
                            const float *p = xc + t->off[tap][half][n];
                            __m512 lo = _mm512_maskz_loadu_ps(t->src[tap][half][n][0], p);
                            __m512 hi = _mm512_maskz_loadu_ps(t->src[tap][half][n][1], p + 16);
                            v = _mm512_mask_mov_ps(v, t->mask[tap][half][n], _mm512_permutex2var_ps(lo, even, hi));
                        }
                    }
                    _mm512_storeu_ps(d + 16 * half, v);
                }
            }
        }
      }
      for (ptrdiff_t i = 0; i < m; i += MR5) {
        int rows = m - i < MR5 ? (int)(m - i) : MR5;
        for (ptrdiff_t j = jb; j < je; j += NR5) {
            ptrdiff_t cols = je - j < NR5 ? je - j : NR5;
            tiles32[rows](cols > 16, k, a + i * lda, lda, packed_a ? packed_a + i * k : 0, scratch + ((j - jb) / NR5) * k * NR5,
                          y + i * ldc + j, ldc, cols, bias ? bias + i : 0, act);
        }
      }
    }
}

// The AVX2 variant: k × 16 panels (the layout `pack_b` writes), each row two halves of eight
// lanes, multiplied by the AVX2 GEMM's 6 × 16 `tile` (`tile8` for panels of at most 8 columns,
// as `GEMM_TILE` does). A half's lanes fall into at most `per` runs (the output rows it spans);
// each (tap, half) slot gets exactly `per` masked loads, padded with empty masks (a load with
// an all-zero mask reads nothing and gives zeros), so a channel's slots are one flat loop with
// no per-slot counts. The masks are int32 lanes loaded unaligned (the scratch need not be
// 32-byte aligned).
typedef struct {
    ptrdiff_t off[CONV_MAX_TAPS * 2 * 8];    // slot s = 2·tap + half, its runs r < per at s·per + r:
                                             // input offset (within a channel plane) of the half's lane 0
    int32_t mask[CONV_MAX_TAPS * 2 * 8][16]; // stride 1: lanes 0–7, the lanes the run fills; stride 2:
                                             // which of the 16 values loaded from `off` its lanes read
    int count[CONV_MAX_TAPS * 2];
} conv_runs8;

// Fills `t` for the panel at column j; returns `per`.
AVX2 static int conv_panel_runs8(const ck_conv2d *g, ptrdiff_t j, ptrdiff_t cols, conv_runs8 *t) {
    ptrdiff_t slots = 2 * g->kh * g->kw, sw = g->sw;
    int per = 1;
    for (int half = 0; half < 2; half++) {   // runs per half: the output rows its lanes span
        int n = 0;
        for (ptrdiff_t a = 8 * half, l1 = cols < a + 8 ? cols : a + 8; a < l1; n++) {
            ptrdiff_t q = j + a;
            a += g->ow - q % g->ow;
        }
        if (n > per) per = n;
    }
    for (ptrdiff_t s = 0; s < slots; s++) t->count[s] = 0;
    const vi8 i0 = {0, 1, 2, 3, 4, 5, 6, 7}, i1 = i0 + 8;
    const vi8 every = (i0 & (int32_t)(sw - 1)) == 0;   // stride 2: the even values only
    for (int half = 0; half < 2; half++) {
        ptrdiff_t l0 = 8 * half, l1 = cols < l0 + 8 ? cols : l0 + 8;
        for (ptrdiff_t a = l0; a < l1;) {
            ptrdiff_t q = j + a, oh = q / g->ow, ow0 = q - oh * g->ow;
            ptrdiff_t b = a + (g->ow - ow0) < l1 ? a + (g->ow - ow0) : l1;   // the run: lanes [a, b)
            for (ptrdiff_t u = 0; u < g->kh; u++) {
                ptrdiff_t ih = oh * g->sh - g->ph + u * g->dh;
                if (ih < 0 || ih >= g->h) continue;
                for (ptrdiff_t v = 0; v < g->kw; v++) {
                    ptrdiff_t lo, hi, shift = conv_run_lanes(g, ow0, a, b, v, &lo, &hi);
                    if (hi <= lo) continue;
                    ptrdiff_t s = 2 * (u * g->kw + v) + half, e = s * per + t->count[s]++;
                    t->off[e] = ih * g->w + shift + sw * l0;
                    // lane i of the half reads value sw·i: values sw·(lo − l0) … sw·(hi − 1 − l0)
                    int32_t f = (int32_t)(sw * (lo - l0)), z = (int32_t)(sw * (hi - 1 - l0));
                    vi8 fv = {f, f, f, f, f, f, f, f}, zv = {z, z, z, z, z, z, z, z};
                    vi8 m0 = (i0 >= fv) & (i0 <= zv) & every, m1 = (i1 >= fv) & (i1 <= zv) & every;
                    memcpy(t->mask[e], &m0, sizeof m0);
                    memcpy(t->mask[e] + 8, &m1, sizeof m1);
                }
            }
            a = b;
        }
    }
    const vi8 none = i0 & 0;
    for (ptrdiff_t s = 0; s < slots; s++)
        for (ptrdiff_t e = s * per + t->count[s]; e < (s + 1) * per; e++) {
            t->off[e] = 0;
            memcpy(t->mask[e], &none, sizeof none);
            memcpy(t->mask[e] + 8, &none, sizeof none);
        }
    return per;
}

#define CONV8_MASK(e, h) _mm256_loadu_si256((const __m256i *)(t->mask[e] + 8 * (h)))
#define CONV8_LOAD(e) _mm256_maskload_ps(xc + t->off[e], CONV8_MASK(e, 0))
// Stride 2: 16 consecutive values from the run's offset, the even ones kept.
#define CONV8_LOAD2(e) ({                                                                      \
    const float *p_ = xc + t->off[e];                                                          \
    __m256 ev_ = _mm256_shuffle_ps(_mm256_maskload_ps(p_, CONV8_MASK(e, 0)),                   \
                                   _mm256_maskload_ps(p_ + 8, CONV8_MASK(e, 1)),               \
                                   _MM_SHUFFLE(2, 0, 2, 0));   /* 0 2 8 10 | 4 6 12 14 */       \
    _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(ev_), _MM_SHUFFLE(3, 1, 2, 0))); })

// One row of tiles over the gathered panel `scratch` (columns [j, j + cols) of y).
#define CONV8_TILE(rows)                                                                       \
    do {                                                                                       \
        const float *bi_ = bias ? bias + i : 0;                                                \
        const float *ap_ = packed_a ? packed_a + i * k : 0;                                    \
        if (cols <= 8) tile8(rows, k, a + i * lda, lda, ap_, scratch, y + i * ldc + j, ldc, cols, bi_, act); \
        else tile(rows, k, a + i * lda, lda, ap_, scratch, y + i * ldc + j, ldc, cols, bi_, act); \
    } while (0)

AVX2 static void conv_avx2(CONV_PARAMS) {
    ptrdiff_t taps = g->kh * g->kw, k = g->c * taps, plane = g->h * g->w, ldc = g->oh * g->ow, slots = 2 * taps;
    conv_runs8 *t = (conv_runs8 *)(scratch + k * NR);
    for (ptrdiff_t j = j0; j < j1; j += NR) {
        ptrdiff_t cols = j1 - j < NR ? j1 - j : NR;
        int per = conv_panel_runs8(g, j, cols, t);
        for (ptrdiff_t ch = 0; ch < g->c; ch++) {
            const float *xc = x + ch * plane;
            float *d = scratch + ch * taps * NR;   // slot s of this channel: d + 8·s
            if (g->sw == 1 && per == 1) {
                for (ptrdiff_t s = 0; s < slots; s++) _mm256_storeu_ps(d + 8 * s, CONV8_LOAD(s));
            } else if (g->sw == 1 && per == 2) {
                for (ptrdiff_t s = 0; s < slots; s++)
                    _mm256_storeu_ps(d + 8 * s, _mm256_or_ps(CONV8_LOAD(2 * s), CONV8_LOAD(2 * s + 1)));
            } else if (g->sw == 1) {
                for (ptrdiff_t s = 0; s < slots; s++) {
                    __m256 v = CONV8_LOAD(s * per);
                    for (int r = 1; r < per; r++) v = _mm256_or_ps(v, CONV8_LOAD(s * per + r));   // disjoint lanes
                    _mm256_storeu_ps(d + 8 * s, v);
                }
            } else if (per == 1) {
                for (ptrdiff_t s = 0; s < slots; s++) _mm256_storeu_ps(d + 8 * s, CONV8_LOAD2(s));
            } else {
                for (ptrdiff_t s = 0; s < slots; s++) {
                    __m256 v = CONV8_LOAD2(s * per);
                    for (int r = 1; r < per; r++) v = _mm256_or_ps(v, CONV8_LOAD2(s * per + r));
                    _mm256_storeu_ps(d + 8 * s, v);
                }
            }
        }
        ptrdiff_t i = 0;
        for (; i + MR <= m; i += MR) CONV8_TILE(MR);
        switch (m - i) {
        case 5: CONV8_TILE(5); break;
        case 4: CONV8_TILE(4); break;
        case 3: CONV8_TILE(3); break;
        case 2: CONV8_TILE(2); break;
        case 1: CONV8_TILE(1); break;
        default: break;
        }
    }
}
#endif

int ck_conv_implicit(const ck_conv2d *g) {
#if defined(__x86_64__)
    return ck_uses_avx2() && (g->sw == 1 || g->sw == 2) && g->kh * g->kw <= CONV_MAX_TAPS && g->c > 0 && g->ow > 0;
#else
    (void)g;
    return 0;
#endif
}

// Enough for either variant (the level may be forced between this call and the product).
size_t ck_conv_scratch(const ck_conv2d *g) {
#if defined(__x86_64__)
    size_t k = (size_t)(g->c * g->kh * g->kw);
    size_t s512 = k * NR5 * (size_t)gemm_block_panels((ptrdiff_t)k) + (sizeof(conv_runs) + sizeof(float) - 1) / sizeof(float);
    size_t s2 = k * NR + (sizeof(conv_runs8) + sizeof(float) - 1) / sizeof(float);
    return s512 > s2 ? s512 : s2;
#else
    (void)g;
    return 0;
#endif
}

void ck_conv_columns(CONV_PARAMS) {
#if defined(__x86_64__)
    if (ck_conv_implicit(g)) {
        if (ck_uses_avx512()) conv_avx512(m, g, x, a, lda, packed_a, y, bias, act, j0, j1, scratch);
        else conv_avx2(m, g, x, a, lda, packed_a, y, bias, act, j0, j1, scratch);
        return;
    }
#endif
    (void)m; (void)x; (void)a; (void)lda; (void)packed_a; (void)y; (void)bias; (void)act; (void)j0; (void)j1; (void)scratch;
    abort();   // callers check ck_conv_implicit first
}

// ---------------------------------------------------------------------------------------------
// Winograd F(2×2, 3×3) transforms (Lavin & Gray 2016), for 3×3 stride-1 convolutions: the
// weights become 16 matrices U[ξ] = (G g Gᵀ)[ξ] of [oc × ic], each input tile (4 × 4, step 2)
// 16 matrices V[ξ] = (Bᵀ d B)[ξ] of [ic × tiles], the products M[ξ] = U[ξ] · V[ξ] (the caller's
// GEMM) and each tile's 2 × 2 outputs Aᵀ M A. The input and output transforms run along a row of
// tiles, the even and odd input columns split apart so every step is a contiguous vector op
// (left to the compiler's vectorizer, once for the baseline target and once with AVX2 + FMA).

void ck_winograd_weights(ptrdiff_t oc, ptrdiff_t ic, const float *w, float *u) {
    ptrdiff_t plane = oc * ic;
    for (ptrdiff_t o = 0; o < oc; o++)
        for (ptrdiff_t c = 0; c < ic; c++) {
            const float *g = w + (o * ic + c) * 9;
            float t[4][3];   // G g
            for (int k = 0; k < 3; k++) {
                float g0 = g[k], g1 = g[3 + k], g2 = g[6 + k];
                t[0][k] = g0;
                t[1][k] = 0.5f * (g0 + g1 + g2);
                t[2][k] = 0.5f * (g0 - g1 + g2);
                t[3][k] = g2;
            }
            for (int i = 0; i < 4; i++) {
                float a = t[i][0], b = t[i][1], c2 = t[i][2];
                float r[4] = {a, 0.5f * (a + b + c2), 0.5f * (a - b + c2), c2};
                for (int j = 0; j < 4; j++) u[(i * 4 + j) * plane + o * ic + c] = r[j];
            }
        }
}

size_t ck_winograd_scratch(ptrdiff_t tw) { return (size_t)(24 * (tw + 9) + 64); }

INLINE void wino_input(const float *restrict x, ptrdiff_t c0, ptrdiff_t c1, ptrdiff_t h, ptrdiff_t w,
                       ptrdiff_t ph, ptrdiff_t pw, ptrdiff_t th, ptrdiff_t tw, float *restrict v,
                       ptrdiff_t ldv, ptrdiff_t vstride, float *restrict scratch) {
    ptrdiff_t n = tw + 1;                 // even / odd columns per input row (one tile beyond)
    ptrdiff_t ln = (tw + 8) & ~(ptrdiff_t)7;
    float *eo = scratch;                   // E, O of one row: 2 · ln
    float *hb = scratch + 2 * ln;          // rows q = 0..3, columns j = 0..3 of d·B: 16 · ln
    for (ptrdiff_t c = c0; c < c1; c++) {
        const float *xc = x + c * h * w;
        for (ptrdiff_t r = 0; r < th; r++) {
            for (int q = 0; q < 4; q++) {
                ptrdiff_t ih = 2 * r - ph + q;
                float *restrict e = eo, *restrict o = eo + ln;
                if (ih < 0 || ih >= h) {
                    for (ptrdiff_t t = 0; t < n; t++) { e[t] = 0; o[t] = 0; }
                } else {
                    const float *row = xc + ih * w;
                    // Tiles whose two columns 2t − pw, 2t + 1 − pw both lie in the row: [lo, hi).
                    ptrdiff_t lo = (pw + 1) / 2, hi = (w + pw - 1) / 2;
                    if (hi > n) hi = n;
                    if (lo > hi) lo = hi;
                    for (ptrdiff_t t = 0; t < lo; t++) {
                        ptrdiff_t a = 2 * t - pw, b = a + 1;
                        e[t] = a >= 0 && a < w ? row[a] : 0;
                        o[t] = b >= 0 && b < w ? row[b] : 0;
                    }
                    const float *restrict rp = row + 2 * lo - pw;
                    for (ptrdiff_t t = 0; t < hi - lo; t++) {
                        e[lo + t] = rp[2 * t];
                        o[lo + t] = rp[2 * t + 1];
                    }
                    for (ptrdiff_t t = hi; t < n; t++) {
                        ptrdiff_t a = 2 * t - pw, b = a + 1;
                        e[t] = a >= 0 && a < w ? row[a] : 0;
                        o[t] = b >= 0 && b < w ? row[b] : 0;
                    }
                }
                float *restrict h0 = hb + (q * 4) * ln, *restrict h1 = h0 + ln, *restrict h2 = h1 + ln,
                              *restrict h3 = h2 + ln;
                for (ptrdiff_t t = 0; t < tw; t++) {
                    float e0 = e[t], e1 = e[t + 1], o0 = o[t], o1 = o[t + 1];
                    h0[t] = e0 - e1;
                    h1[t] = o0 + e1;
                    h2[t] = e1 - o0;
                    h3[t] = o0 - o1;
                }
            }
            float *dst = v + c * ldv + r * tw;
            for (int j = 0; j < 4; j++) {
                const float *restrict q0 = hb + j * ln, *restrict q1 = q0 + 4 * ln, *restrict q2 = q1 + 4 * ln,
                            *restrict q3 = q2 + 4 * ln;
                float *restrict v0 = dst + j * vstride, *restrict v1 = v0 + 4 * vstride,
                      *restrict v2 = v1 + 4 * vstride, *restrict v3 = v2 + 4 * vstride;
                for (ptrdiff_t t = 0; t < tw; t++) {
                    float a = q0[t], b = q1[t], cc = q2[t], d = q3[t];
                    v0[t] = a - cc;
                    v1[t] = b + cc;
                    v2[t] = cc - b;
                    v3[t] = b - d;
                }
            }
        }
    }
}

INLINE void wino_output(const float *restrict mm, ptrdiff_t ldm, ptrdiff_t mstride, ptrdiff_t o0, ptrdiff_t o1,
                        ptrdiff_t th, ptrdiff_t tw, float *restrict y, ptrdiff_t oh, ptrdiff_t ow,
                        const float *bias, ck_activation act, float *restrict scratch) {
    ptrdiff_t ln = (tw + 8) & ~(ptrdiff_t)7;
    float *s = scratch;                     // s[a][j]: 8 · ln
    float *row = scratch + 8 * ln;          // one interleaved output row: 2 · ln (+ 8)
    for (ptrdiff_t oc = o0; oc < o1; oc++) {
        float b = bias ? bias[oc] : 0;
        for (ptrdiff_t r = 0; r < th; r++) {
            const float *src = mm + oc * ldm + r * tw;
            for (int j = 0; j < 4; j++) {
                const float *restrict m0 = src + j * mstride, *restrict m1 = m0 + 4 * mstride,
                            *restrict m2 = m1 + 4 * mstride, *restrict m3 = m2 + 4 * mstride;
                float *restrict s0 = s + j * ln, *restrict s1 = s + (4 + j) * ln;
                for (ptrdiff_t t = 0; t < tw; t++) {
                    s0[t] = m0[t] + m1[t] + m2[t];
                    s1[t] = m1[t] - m2[t] - m3[t];
                }
            }
            for (int a = 0; a < 2; a++) {
                ptrdiff_t oy = 2 * r + a;
                if (oy >= oh) break;
                const float *restrict p0 = s + (4 * a) * ln, *restrict p1 = p0 + ln, *restrict p2 = p1 + ln,
                            *restrict p3 = p2 + ln;
                float *restrict out = row;
                for (ptrdiff_t t = 0; t < tw; t++) {
                    out[2 * t] = b + p0[t] + p1[t] + p2[t];
                    out[2 * t + 1] = b + p1[t] - p2[t] - p3[t];
                }
                float *yr = y + (oc * oh + oy) * ow;
                ptrdiff_t i = 0;
                if (act.kind == 0) {
                    memcpy(yr, row, (size_t)ow * sizeof(float));
                    continue;
                }
                for (; i + 8 <= ow; i += 8) st(yr + i, activate(ld(row + i), act));
                if (i < ow) {
                    v8 tail = activate(ld(row + i), act);   // row holds 2·tw ≥ ow values, 8 readable past
                    float t8[8];
                    st(t8, tail);
                    for (ptrdiff_t k = 0; i + k < ow; k++) yr[i + k] = t8[k];
                }
            }
        }
    }
}

#define WINO_IN_PARAMS const float *x, ptrdiff_t c0, ptrdiff_t c1, ptrdiff_t h, ptrdiff_t w, ptrdiff_t ph, \
    ptrdiff_t pw, ptrdiff_t th, ptrdiff_t tw, float *v, ptrdiff_t ldv, ptrdiff_t vstride, float *scratch
#define WINO_IN_ARGS x, c0, c1, h, w, ph, pw, th, tw, v, ldv, vstride, scratch
#define WINO_OUT_PARAMS const float *m, ptrdiff_t ldm, ptrdiff_t mstride, ptrdiff_t o0, ptrdiff_t o1, ptrdiff_t th, \
    ptrdiff_t tw, float *y, ptrdiff_t oh, ptrdiff_t ow, const float *bias, ck_activation act, float *scratch
#define WINO_OUT_ARGS m, ldm, mstride, o0, o1, th, tw, y, oh, ow, bias, act, scratch

static void wino_in_base(WINO_IN_PARAMS) { wino_input(WINO_IN_ARGS); }
static void wino_out_base(WINO_OUT_PARAMS) { wino_output(WINO_OUT_ARGS); }
#if defined(__x86_64__)
AVX2 static void wino_in_avx2(WINO_IN_PARAMS) { wino_input(WINO_IN_ARGS); }
AVX2 static void wino_out_avx2(WINO_OUT_PARAMS) { wino_output(WINO_OUT_ARGS); }
#endif

void ck_winograd_input(WINO_IN_PARAMS) {
#if defined(__x86_64__)
    if (ck_uses_avx2()) { wino_in_avx2(WINO_IN_ARGS); return; }
#endif
    wino_in_base(WINO_IN_ARGS);
}

void ck_winograd_output(WINO_OUT_PARAMS) {
#if defined(__x86_64__)
    if (ck_uses_avx2()) { wino_out_avx2(WINO_OUT_ARGS); return; }
#endif
    wino_out_base(WINO_OUT_ARGS);
}
