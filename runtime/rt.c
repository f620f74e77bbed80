/* The model object behind every generated network: it owns the weights and the activation
 * arena (both allocated once, at create), checks inputs, and runs the generated forward function
 * over chunks of the batch on an OpenMP team. Nothing here aborts on bad input. */
#include "rt.h"
#include "io.h"

#include <omp.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(pnetrt_tensor_desc) == 16 * 8, "pnetrt_tensor_desc must be 16 eight-byte fields");
_Static_assert(sizeof(pnetrt_layer_desc) == 10 * 8, "pnetrt_layer_desc must be 10 eight-byte fields");
_Static_assert(sizeof(pnetrt_desc) == 24 * 8, "pnetrt_desc must be 24 eight-byte fields");

/* The least work, in FLOPs per call, that justifies one more thread. */
#define PNETRT_FLOPS_PER_THREAD 4e6

struct pnetrt_model {
    const pnetrt_desc *d;
    float *params;       /* owned unless it is the embedded array */
    bool owns_params;
    float *prepared;     /* what the kernels read: params transformed by d->prepare */
    char *arena;
    char *scratch;       /* threads * d->scratch_bytes */
    int scratch_threads;
    int threads;
    double flops_per_sample;
    bool adaptive;       /* small calls use fewer threads (PNET_ADAPTIVE_THREADS=0 turns it off) */
    char err[512];
};

static int fail(pnetrt_model *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(pnetrt_model *m, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->err, sizeof m->err, fmt, ap);
    va_end(ap);
    return 1;
}

int64_t pnetrt_sample_elems(const pnetrt_tensor_desc *t) {
    int64_t n = 1;
    for (int64_t i = 0; i < t->rank; i++)
        if (t->shape[i] >= 0) n *= t->shape[i];
    return n;
}

static void *alloc_aligned(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    return p;
}

/* Loads every parameter from a safetensors file, by PyTorch name, with its exact shape. */
static int load_weights(pnetrt_model *m, const char *path) {
    pnetrt_st *st;
    if (pnetrt_st_open(path, &st, m->err, sizeof m->err)) return 1;
    for (int64_t p = 0; p < m->d->nparams; p++) {
        const pnetrt_tensor_desc *t = &m->d->params[p];
        if (pnetrt_st_read_f32(st, t->name, (int)t->rank, t->shape, m->params + t->offset, m->err, sizeof m->err)) {
            pnetrt_st_close(st);
            return 1;
        }
    }
    pnetrt_st_close(st);
    return 0;
}

static int prepare(pnetrt_model *m);
static int reserve_scratch(pnetrt_model *m, int threads);

int pnetrt_create(pnetrt_model **out, const pnetrt_desc *d, const char *weights_path) {
    if (!out) return 1;
    *out = NULL;
    pnetrt_model *m = calloc(1, sizeof *m);
    if (!m) return 1;
    *out = m;
    m->d = d;
    m->threads = omp_get_max_threads();
    if (!d || d->abi != PNETRT_ABI)
        return fail(m, "network was compiled for libpnetrt ABI %lld, but this libpnetrt has ABI %d",
                    d ? (long long)d->abi : -1LL, PNETRT_ABI);
    size_t arena = (size_t)(d->arena_sample_bytes * d->chunk + d->arena_fixed_bytes);
    m->arena = alloc_aligned(arena);
    if (!m->arena) return fail(m, "cannot allocate the %zu-byte activation arena", arena);
    memset(m->arena, 0, arena); /* touch every page now, not during the first call */
    if (reserve_scratch(m, m->threads)) return 1;
    for (int64_t i = 0; i < d->nlayers; i++) m->flops_per_sample += (double)d->layers[i].flops;
    const char *ad = getenv("PNET_ADAPTIVE_THREADS");
    m->adaptive = !(ad && strcmp(ad, "0") == 0);
    if (!weights_path && d->embedded) {
        m->params = (float *)d->embedded;
    } else {
        m->params = alloc_aligned((size_t)d->param_floats * sizeof(float));
        if (!m->params) return fail(m, "cannot allocate %lld parameters", (long long)d->param_floats);
        m->owns_params = true;
        memset(m->params, 0, (size_t)d->param_floats * sizeof(float));
        if (weights_path) {
            if (load_weights(m, weights_path)) return 1;
        } else {
            pnetrt_init_params(d, m->params, 0);
        }
    }
    return prepare(m);
}

/* Derives the buffer the kernels read (packed weights) from the raw parameters. */
static int prepare(pnetrt_model *m) {
    const pnetrt_desc *d = m->d;
    if (!d->prepare) {
        m->prepared = m->params;
        return 0;
    }
    m->prepared = alloc_aligned((size_t)d->prepared_floats * sizeof(float));
    if (!m->prepared) return fail(m, "cannot allocate %lld prepared parameters", (long long)d->prepared_floats);
    d->prepare(m->params, m->prepared);
    return 0;
}

/* Per-thread scratch for `threads` threads, allocated outside infer. */
static int reserve_scratch(pnetrt_model *m, int threads) {
    if (threads <= m->scratch_threads) return 0;
    size_t bytes = (size_t)m->d->scratch_bytes * (size_t)threads;
    char *s = alloc_aligned(bytes);
    if (!s) return fail(m, "cannot allocate %zu bytes of scratch for %d threads", bytes, threads);
    memset(s, 0, bytes);
    free(m->scratch);
    m->scratch = s;
    m->scratch_threads = threads;
    return 0;
}

int pnetrt_set_threads(pnetrt_model *m, int threads) {
    if (!m) return 1;
    if (threads < 1 || threads > 4096) return fail(m, "thread count %d is out of range (1 to 4096)", threads);
    if (m->d && m->d->abi == PNETRT_ABI && reserve_scratch(m, threads)) return 1;
    m->threads = threads;
    return 0;
}

int pnetrt_threads(const pnetrt_model *m) { return m ? m->threads : 0; }
const pnetrt_desc *pnetrt_model_desc(const pnetrt_model *m) { return m ? m->d : NULL; }

const char *pnetrt_last_error(const pnetrt_model *m) {
    if (!m) return "no network (creation failed before it began)";
    return m->err;
}

void pnetrt_destroy(pnetrt_model *m) {
    if (!m) return;
    if (m->prepared && m->prepared != m->params) free(m->prepared);
    if (m->owns_params) free(m->params);
    free(m->arena);
    free(m->scratch);
    free(m);
}

/* The barrier between kernels of one forward call: a sense-reversing counter that spins
 * briefly (kernels are short) and then yields, so more threads than cores still progress. The
 * OpenMP team of the call sets it up; a call on one thread has none. */
typedef struct spin_barrier {
    _Atomic int count;
    _Atomic int sense;
    int n;
} spin_barrier;

static _Thread_local spin_barrier *tls_barrier;
static _Thread_local int tls_sense;

void pnetrt_barrier(void) {
    spin_barrier *b = tls_barrier;
    if (!b || b->n <= 1) return;
    int sense = tls_sense = !tls_sense;
    if (atomic_fetch_add_explicit(&b->count, 1, memory_order_acq_rel) == b->n - 1) {
        atomic_store_explicit(&b->count, 0, memory_order_relaxed);
        atomic_store_explicit(&b->sense, sense, memory_order_release);
        return;
    }
    for (long spins = 0; atomic_load_explicit(&b->sense, memory_order_acquire) != sense; spins++) {
        if (spins < 4000) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        } else {
            sched_yield();
        }
    }
}

/* Ids read by embeddings must lie in [0, limit). */
static int check_ids(pnetrt_model *m, int64_t batch, const void *const *inputs) {
    for (int64_t i = 0; i < m->d->ninputs; i++) {
        const pnetrt_tensor_desc *t = &m->d->inputs[i];
        if (!t->limit) continue;
        int64_t n = pnetrt_sample_elems(t) * (t->shape[0] < 0 ? batch : 1);
        const int32_t *v = inputs[i];
        for (int64_t k = 0; k < n; k++)
            if (v[k] < 0 || v[k] >= t->limit)
                return fail(m, "input '%s' holds %d at element %lld, outside the vocabulary [0, %lld)", t->name, v[k],
                            (long long)k, (long long)t->limit);
    }
    return 0;
}

int pnetrt_infer(pnetrt_model *m, int64_t batch, const void *const *inputs, void *const *outputs) {
    if (!m) return 1;
    const pnetrt_desc *d = m->d;
    if (!d || d->abi != PNETRT_ABI || !m->arena || !m->prepared) return fail(m, "the network was not created successfully");
    if (batch < 0) return fail(m, "batch size %lld is negative", (long long)batch);
    if (!inputs && d->ninputs) return fail(m, "no input buffers");
    if (!outputs && d->noutputs) return fail(m, "no output buffers");
    for (int64_t i = 0; i < d->ninputs; i++)
        if (!inputs[i]) return fail(m, "input '%s' is NULL", d->inputs[i].name);
    for (int64_t i = 0; i < d->noutputs; i++)
        if (!outputs[i]) return fail(m, "output '%s' is NULL", d->outputs[i].name);
    if (check_ids(m, batch, inputs)) return 1;
    enum { MAXIO = 64 };
    if (d->ninputs > MAXIO || d->noutputs > MAXIO) return fail(m, "too many inputs or outputs");
    const void *in[MAXIO];
    void *out[MAXIO];
    int threads = m->threads < m->scratch_threads ? m->threads : m->scratch_threads;
    for (int64_t s = 0; s < batch; s += d->chunk) {
        int64_t n = batch - s < d->chunk ? batch - s : d->chunk;
        for (int64_t i = 0; i < d->ninputs; i++) {
            const pnetrt_tensor_desc *t = &d->inputs[i];
            in[i] = (const char *)inputs[i] + (t->shape[0] < 0 ? s * pnetrt_sample_elems(t) * 4 : 0);
        }
        for (int64_t i = 0; i < d->noutputs; i++) {
            const pnetrt_tensor_desc *t = &d->outputs[i];
            out[i] = (char *)outputs[i] + (t->shape[0] < 0 ? s * pnetrt_sample_elems(t) * 4 : 0);
        }
        pnetrt_call call = {n, in, out, m->prepared, m->arena, m->scratch};
        /* Small calls run on fewer threads: each thread should get enough work to pay for the
         * barriers between kernels. Results do not depend on the count. */
        int team = threads;
        double work = m->flops_per_sample * (double)n;
        if (m->adaptive && work < PNETRT_FLOPS_PER_THREAD * team) team = work < PNETRT_FLOPS_PER_THREAD ? 1 : (int)(work / PNETRT_FLOPS_PER_THREAD);
        if (team <= 1) {
            tls_barrier = NULL;
            d->forward(&call, 0, 1);
        } else {
            spin_barrier bar = {0, 0, 0};
#pragma omp parallel num_threads(team)
            {
                int nth = omp_get_num_threads();
#pragma omp single
                bar.n = nth;
                tls_barrier = &bar;
                tls_sense = 0;
                d->forward(&call, omp_get_thread_num(), nth);
                tls_barrier = NULL;
            }
        }
    }
    return 0;
}
