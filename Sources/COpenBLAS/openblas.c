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
typedef void (*sgemv_fn)(int, int, int, int, float, const float *, int, const float *, int, float,
                         float *, int);
typedef void (*set_threads_fn)(int);
typedef int (*get_int_fn)(void);
typedef char *(*get_config_fn)(void);

static pthread_once_t once = PTHREAD_ONCE_INIT;
static sgemm_fn sgemm;
static sgemv_fn sgemv;
static dgemm_fn dgemm;
static get_config_fn get_config;
static const char *loaded_from;
static atomic_bool loaded;
// Any build but the pthread one (openblas_get_parallel() == 1) is called by one thread at a time:
// Debian's 0.3.21 serial build returns wrong products when called from several threads at once
// (Tests/TensorCoreTests/GEMMTests: concurrent products), although it was built with USE_LOCKING,
// and 0.3.21's buffer allocator takes no lock in an OpenMP build (driver/others/memory.c).
static bool serialize;
static pthread_mutex_t serial_lock = PTHREAD_MUTEX_INITIALIZER;

// Where to look, best first: Debian's pthread build (safe to call from several threads; started
// with OPENBLAS_NUM_THREADS=1 it starts no thread pool), then whatever the system's default is.
static const char *const candidates[] = {
#if defined(__APPLE__)
    "libopenblas.dylib",
    "/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
    "/usr/local/opt/openblas/lib/libopenblas.dylib",
#else
#if defined(__x86_64__)
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
#elif defined(__aarch64__)
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
#endif
    "libopenblas.so.0",
    "libopenblas.so",
#endif
};

static void fail(const char *what, const char *detail) {
    fprintf(stderr,
            "error: cannot load OpenBLAS (%s: %s); install it (Debian/Ubuntu: apt-get install "
            "libopenblas0-pthread) or set COMPRESS_OPENBLAS to the library's path\n",
            what, detail ? detail : "not found");
    _exit(1);  // possibly on a worker thread: no exit handlers
}

static void load(void) {
    // A threaded OpenBLAS starts its pool when it loads: one thread per core but one, each
    // spinning ~30 ms of CPU before it sleeps, though compress runs it single-threaded (it splits
    // large products over its own pool). With OPENBLAS_NUM_THREADS=1 it starts none. Set only
    // when unset (a user's setting wins); the first setenv of a process leaves the previous
    // environment array in place, so a getenv running meanwhile on another thread stays valid.
    if (!getenv("OPENBLAS_NUM_THREADS")) setenv("OPENBLAS_NUM_THREADS", "1", 0);
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
    sgemv = (sgemv_fn)dlsym(lib, "cblas_sgemv");   // optional: products with one row or column
    // compress splits large products over its own pool; a threaded OpenBLAS would compete with it.
    set_threads_fn set_threads = (set_threads_fn)dlsym(lib, "openblas_set_num_threads");
    if (set_threads) set_threads(1);
    get_int_fn get_parallel = (get_int_fn)dlsym(lib, "openblas_get_parallel");
    serialize = !get_parallel || get_parallel() != 1;
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
    if (serialize) pthread_mutex_lock(&serial_lock);
    // One row or one column of C (a batch-1 Gemm / MatMul against a weight matrix): a
    // matrix-vector product. sgemm would first copy the whole matrix into its packed panels on
    // every call (OpenBLAS 0.3.21 does not forward these shapes to gemv), which costs more than
    // the arithmetic: MobileNetV3-Small's classifier spent 14 % of the network's time packing.
    if (sgemv && m == 1 && n > 1) {
        // Cᵀ (n) = op(B)ᵀ (n × k) · op(A)ᵀ (k): B stored N×K (transB) is op(B)ᵀ itself, K×N its transpose.
        sgemv(RowMajor, transB ? NoTrans : Trans, transB ? n : k, transB ? k : n, alpha, b, ldb, a, transA ? lda : 1,
              beta, c, 1);
    } else if (sgemv && n == 1 && m > 1) {
        // C (m, stride ldc) = op(A) (m × k) · op(B) (k, stride 1 or ldb).
        sgemv(RowMajor, transA ? Trans : NoTrans, transA ? k : m, transA ? m : k, alpha, a, lda, b, transB ? 1 : ldb,
              beta, c, ldc);
    } else {
        sgemm(RowMajor, transA ? Trans : NoTrans, transB ? Trans : NoTrans, m, n, k, alpha, a, lda, b, ldb,
              beta, c, ldc);
    }
    if (serialize) pthread_mutex_unlock(&serial_lock);
}

void compress_cblas_dgemm(bool transA, bool transB, int m, int n, int k, double alpha,
                          const double *a, int lda, const double *b, int ldb,
                          double beta, double *c, int ldc) {
    ensure_loaded();
    if (serialize) pthread_mutex_lock(&serial_lock);
    dgemm(RowMajor, transA ? Trans : NoTrans, transB ? Trans : NoTrans, m, n, k, alpha, a, lda, b, ldb,
          beta, c, ldc);
    if (serialize) pthread_mutex_unlock(&serial_lock);
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

bool compress_openblas_serialized(void) {
    ensure_loaded();
    return serialize;
}
