// A small fork-join thread pool for the kernels' parallel loops.
//
// Why not libdispatch's concurrentPerform: every call wakes worker threads through the kernel,
// about 10 µs on a two-core machine, and a network at batch 1 runs a hundred parallel loops of
// 50–200 µs each. Here workers spin briefly between jobs (yielding the core to other runnable
// threads) and only then sleep, so back-to-back loops start in well under a microsecond, as in
// ONNX Runtime's thread pool.
//
// Jobs live in a static ring of slots; a worker takes a reference on the slot of the job it saw
// published and re-checks the slot's generation before reading it, and the submitter reuses a
// slot only when no reference is held, so a worker that wakes late never runs a stale job.
#include "ckernels.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

#define SLOTS 64
#define MAX_WORKERS 256
#define SPIN_PAUSES 2048      // busy-wait rounds before yielding
#define SPIN_YIELDS 400       // sched_yield rounds before sleeping
#define MAX_CLAIMED 256       // jobs up to this many chunks hand them out by position (run_chunks)

typedef struct {
    _Atomic uint64_t gen;     // generation of the job in the slot; 0 while being written
    _Atomic int refs;         // workers looking at the slot
    ck_task fn;
    void *ctx;
    ptrdiff_t chunks;
    int workers;              // workers allowed to join (index < workers)
    _Atomic ptrdiff_t next;
    _Atomic ptrdiff_t done;
    _Atomic unsigned char claimed[MAX_CLAIMED];   // chunk i taken (jobs of at most MAX_CLAIMED chunks)
} job_slot;

static job_slot slots[SLOTS];
static _Atomic uint64_t published;      // generation of the latest job (0: none)
static _Atomic int sleepers;
static pthread_mutex_t sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sleep_cond = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t submit_lock = PTHREAD_MUTEX_INITIALIZER;
static int started;                     // workers started (guarded by submit_lock)
static _Thread_local int in_job;        // this thread is running chunks: nested loops run inline

static inline void cpu_pause(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

// Participant `id` (0 the submitting thread, 1… the workers) of `parties` first runs the chunks
// of its own share, [chunks·id/parties, chunks·(id+1)/parties), then any still untaken after it,
// wrapping around; each chunk is claimed once by an atomic exchange. So with threads that keep
// up, thread t runs the same chunks of every loop: a layer's output rows, split the same way as
// the next layer's input rows, stay in the cache of the core that wrote them (taking chunks in
// arrival order from one counter sent them to either core at random). A late thread finds its
// share taken and helps with what is left. Jobs of more chunks use the counter.
static void run_chunks(job_slot *s, int id) {
    in_job = 1;
    ptrdiff_t n = s->chunks;
    if (n <= MAX_CLAIMED) {
        ptrdiff_t start = n * id / (s->workers + 1);
        for (ptrdiff_t t = 0; t < n; t++) {
            ptrdiff_t i = start + t < n ? start + t : start + t - n;
            if (atomic_load_explicit(&s->claimed[i], memory_order_relaxed) || atomic_exchange(&s->claimed[i], 1)) continue;
            s->fn(s->ctx, i);
            atomic_fetch_add(&s->done, 1);
        }
    } else {
        for (;;) {
            ptrdiff_t i = atomic_fetch_add(&s->next, 1);
            if (i >= n) break;
            s->fn(s->ctx, i);
            atomic_fetch_add(&s->done, 1);
        }
    }
    in_job = 0;
}

static void *worker_main(void *arg) {
    int index = (int)(intptr_t)arg;
    uint64_t seen = 0;
    for (;;) {
        uint64_t g = atomic_load(&published);
        int rounds = 0;
        while (g == seen) {
            if (rounds < SPIN_PAUSES) cpu_pause();
            else if (rounds < SPIN_PAUSES + SPIN_YIELDS) sched_yield();
            else {
                pthread_mutex_lock(&sleep_lock);
                atomic_fetch_add(&sleepers, 1);
                while ((g = atomic_load(&published)) == seen) pthread_cond_wait(&sleep_cond, &sleep_lock);
                atomic_fetch_sub(&sleepers, 1);
                pthread_mutex_unlock(&sleep_lock);
                break;
            }
            rounds++;
            g = atomic_load(&published);
        }
        seen = g;
        job_slot *s = &slots[g % SLOTS];
        atomic_fetch_add(&s->refs, 1);
        if (atomic_load(&s->gen) == g && index < s->workers) run_chunks(s, index + 1);
        atomic_fetch_sub(&s->refs, 1);
    }
    return 0;
}

void ck_parallel_run(ptrdiff_t chunks, int threads, ck_task fn, void *ctx) {
    if (chunks <= 0) return;
    if (threads <= 1 || chunks == 1 || in_job || pthread_mutex_trylock(&submit_lock) != 0) {
        // One thread, one chunk, a loop inside a loop, or another thread is submitting: inline.
        for (ptrdiff_t i = 0; i < chunks; i++) fn(ctx, i);
        return;
    }
    int workers = threads - 1 < MAX_WORKERS ? threads - 1 : MAX_WORKERS;
    while (started < workers) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int failed = pthread_create(&t, &attr, worker_main, (void *)(intptr_t)started);
        pthread_attr_destroy(&attr);
        if (failed) break;
        started++;
    }
    if (workers > started) workers = started;
    uint64_t g = atomic_load(&published) + 1;   // from 1: 0 means "being written"
    job_slot *s = &slots[g % SLOTS];
    atomic_store(&s->gen, 0);
    while (atomic_load(&s->refs) != 0) cpu_pause();   // a late worker from 64 jobs ago
    s->fn = fn;
    s->ctx = ctx;
    s->chunks = chunks;
    s->workers = workers;
    atomic_store(&s->next, 0);
    atomic_store(&s->done, 0);
    for (ptrdiff_t i = 0; i < chunks && i < MAX_CLAIMED; i++) atomic_store_explicit(&s->claimed[i], 0, memory_order_relaxed);
    atomic_store(&s->gen, g);
    atomic_store(&published, g);
    if (atomic_load(&sleepers) > 0) {
        pthread_mutex_lock(&sleep_lock);
        pthread_cond_broadcast(&sleep_cond);
        pthread_mutex_unlock(&sleep_lock);
    }
    run_chunks(s, 0);
    // Wait for the chunks other threads took; yield the core if one of them was descheduled.
    for (int rounds = 0; atomic_load(&s->done) < chunks; rounds++) {
        if (rounds < SPIN_PAUSES) cpu_pause();
        else sched_yield();
    }
    pthread_mutex_unlock(&submit_lock);
}
