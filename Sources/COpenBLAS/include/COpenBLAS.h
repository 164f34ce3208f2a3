// OpenBLAS, loaded on first use (dlopen), not at process start.
//
// Linked normally, libopenblas.so.0 costs every run of compress — `compress --version` included —
// its ~13,000 symbol relocations and, in Debian's default pthread build, the start of its thread
// pool (a spinning thread per core but one): most of a 16 ms process on a busy 2-core machine.
// Only the products below are used, so the library is opened the first time one runs: Debian's
// pthread build, with OPENBLAS_NUM_THREADS=1 unless set (no pool is started), else any
// libopenblas.so.0, set to one thread either way. Any other build (libopenblas0-serial,
// -openmp) is called by one thread at a time: Debian's 0.3.21 serial build gives wrong products
// when called from several threads at once. COMPRESS_OPENBLAS=<path> names the library to load instead. If
// none can be loaded, the first product prints what to install and exits with status 1.
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

/// OpenBLAS's build description (`openblas_get_config`), e.g. "OpenBLAS 0.3.21 ... MAX_THREADS=64"; loads it.
const char *compress_openblas_config(void);

/// Whether OpenBLAS is loaded in this process (does not load it).
bool compress_openblas_loaded(void);

/// Whether calls are serialized (an OpenBLAS build other than the pthread one was loaded); loads it.
bool compress_openblas_serialized(void);

#ifdef __cplusplus
}
#endif
#endif
