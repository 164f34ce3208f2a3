// OpenBLAS, loaded on first use (dlopen), not at process start.
//
// Linked normally, libopenblas.so.0 costs every run of compress — `compress --version` included —
// its ~13,000 symbol relocations and, in Debian's default pthread build, the start of its thread
// pool: about 7 ms of a 16 ms process. Only the products below are used, so the library is
// opened the first time one runs. Debian's single-threaded build (libopenblas0-serial, built
// with USE_LOCKING, so safe to call from several threads at once) is preferred; any
// libopenblas.so.0 will do, and is then set to one thread. COMPRESS_OPENBLAS=<path> names the
// library to load instead (for comparisons). If none can be loaded, the first product prints
// what to install and exits with status 1.
#ifndef COMPRESS_COPENBLAS_H
#define COMPRESS_COPENBLAS_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Row-major C = alpha·op(A)·op(B) + beta·C through `cblas_sgemm`.
void compress_cblas_sgemm(bool transA, bool transB, int m, int n, int k, float alpha,
                          const float *a, int lda, const float *b, int ldb,
                          float beta, float *c, int ldc);

/// Row-major C = alpha·op(A)·op(B) + beta·C through `cblas_dgemm`.
void compress_cblas_dgemm(bool transA, bool transB, int m, int n, int k, double alpha,
                          const double *a, int lda, const double *b, int ldb,
                          double beta, double *c, int ldc);

/// Loads OpenBLAS if it is not loaded yet; returns the path or name it was loaded from.
const char *compress_openblas_library(void);

/// OpenBLAS's build description (`openblas_get_config`), e.g. "... SINGLE_THREADED"; loads it.
const char *compress_openblas_config(void);

/// Whether OpenBLAS is loaded in this process (does not load it).
bool compress_openblas_loaded(void);

#ifdef __cplusplus
}
#endif
#endif
