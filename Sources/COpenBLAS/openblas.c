// OpenBLAS, opened on first use; see include/COpenBLAS.h.
#include "COpenBLAS.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

// The CBLAS ABI (the same in every CBLAS; OpenBLAS's blasint is int in libopenblas.so.0).
enum { RowMajor = 101, NoTrans = 111, Trans = 112 };
typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int,
                         const float *, int, float, float *, int);
typedef void (*dgemm_fn)(int, int, int, int, int, int, double, const double *, int,
                         const double *, int, double, double *, int);
typedef void (*set_threads_fn)(int);
typedef char *(*get_config_fn)(void);

static pthread_once_t once = PTHREAD_ONCE_INIT;
static sgemm_fn sgemm;
static dgemm_fn dgemm;
static get_config_fn get_config;
static const char *loaded_from;
static atomic_bool loaded;

// Where to look, best first: the single-threaded build (no thread pool to start), then whatever
// the system's default is.
static const char *const candidates[] = {
#if defined(__APPLE__)
    "libopenblas.dylib",
    "/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
    "/usr/local/opt/openblas/lib/libopenblas.dylib",
#else
#if defined(__x86_64__)
    "/usr/lib/x86_64-linux-gnu/openblas-serial/libopenblas.so.0",
#elif defined(__aarch64__)
    "/usr/lib/aarch64-linux-gnu/openblas-serial/libopenblas.so.0",
#endif
    "libopenblas.so.0",
    "libopenblas.so",
#endif
};

static void fail(const char *what, const char *detail) {
    fprintf(stderr,
            "error: cannot load OpenBLAS (%s: %s); install it (Debian/Ubuntu: apt-get install "
            "libopenblas0-serial) or set COMPRESS_OPENBLAS to the library's path\n",
            what, detail ? detail : "not found");
    _exit(1);  // possibly on a worker thread: no exit handlers
}

static void load(void) {
    void *lib = NULL;
    const char *from = NULL;
    const char *override = getenv("COMPRESS_OPENBLAS");
    if (override && *override) {
        lib = dlopen(override, RTLD_NOW | RTLD_LOCAL);
        if (!lib) fail(override, dlerror());
        from = override;
    } else {
        const char *err = NULL;
        for (size_t i = 0; i < sizeof candidates / sizeof candidates[0] && !lib; i++) {
            lib = dlopen(candidates[i], RTLD_NOW | RTLD_LOCAL);
            if (lib) from = candidates[i]; else if (!err) err = dlerror();
        }
        if (!lib) fail("libopenblas.so.0", err);
    }
    sgemm = (sgemm_fn)dlsym(lib, "cblas_sgemm");
    dgemm = (dgemm_fn)dlsym(lib, "cblas_dgemm");
    if (!sgemm || !dgemm) fail(from, "no cblas_sgemm/cblas_dgemm in it");
    // compress splits large products over its own pool; a threaded OpenBLAS would compete with it.
    set_threads_fn set_threads = (set_threads_fn)dlsym(lib, "openblas_set_num_threads");
    if (set_threads) set_threads(1);
    get_config = (get_config_fn)dlsym(lib, "openblas_get_config");
    loaded_from = from;
    atomic_store_explicit(&loaded, true, memory_order_release);
}

static inline void ensure_loaded(void) {
    if (__builtin_expect(!atomic_load_explicit(&loaded, memory_order_acquire), 0)) pthread_once(&once, load);
}

void compress_cblas_sgemm(bool transA, bool transB, int m, int n, int k, float alpha,
                          const float *a, int lda, const float *b, int ldb,
                          float beta, float *c, int ldc) {
    ensure_loaded();
    sgemm(RowMajor, transA ? Trans : NoTrans, transB ? Trans : NoTrans, m, n, k, alpha, a, lda, b, ldb,
          beta, c, ldc);
}

void compress_cblas_dgemm(bool transA, bool transB, int m, int n, int k, double alpha,
                          const double *a, int lda, const double *b, int ldb,
                          double beta, double *c, int ldc) {
    ensure_loaded();
    dgemm(RowMajor, transA ? Trans : NoTrans, transB ? Trans : NoTrans, m, n, k, alpha, a, lda, b, ldb,
          beta, c, ldc);
}

const char *compress_openblas_library(void) {
    ensure_loaded();
    return loaded_from;
}

const char *compress_openblas_config(void) {
    ensure_loaded();
    return get_config ? get_config() : "";
}

bool compress_openblas_loaded(void) {
    return atomic_load_explicit(&loaded, memory_order_acquire);
}
