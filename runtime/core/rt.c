/* The model object behind every generated network: it owns the weights and the activation
 * arena (both allocated once, at create), its settings (threads, replicas, schedule, micro-batches),
 * its error messages and its lock. The Chrome trace is in trace.c, the inference schedules that run
 * the generated forward function on an OpenMP team in infer.c. Nothing here aborts on bad input. */
#include "comm.h"
#include "model_impl.h"
#include "io.h"

#include <omp.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(pnetrt_tensor_desc) == 17 * 8, "pnetrt_tensor_desc must be 17 eight-byte fields");
_Static_assert(sizeof(pnetrt_layer_desc) == 10 * 8, "pnetrt_layer_desc must be 10 eight-byte fields");
_Static_assert(sizeof(pnetrt_desc) == 34 * 8, "pnetrt_desc must be 34 eight-byte fields");

const char *pnetrt_prog = "net";
bool pnetrt_prog_named;

/* The last error of this thread's calls, and the handle it is of: with threads sharing a handle,
 * m->err may already hold another thread's error when this one reads it. */
static _Thread_local struct {
    uint64_t id;
    char err[512];
} tls_error;

void pnetrt_lock(pnetrt_model *m) { pthread_mutex_lock(&m->lock); }

int pnetrt_unlock(pnetrt_model *m, int rc) {
    if (rc) {
        tls_error.id = m->id;
        memcpy(tls_error.err, m->err, sizeof tls_error.err);
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}

int pnetrt_failf(pnetrt_model *m, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->err, sizeof m->err, fmt, ap);
    va_end(ap);
    return 1;
}

/* A one-line note on stderr for an option that does not apply: named by the executable, or by the
 * network when embedded. */
static void note(const pnetrt_model *m, const char *msg) {
    fprintf(stderr, "%s: note: %s\n", pnetrt_prog_named ? pnetrt_prog : m->d->name, msg);
}

static void *alloc_aligned(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    return p;
}

/* Zeroed memory that joins the resident set only a page at a time, as it is written: a mapping,
 * page-aligned, with its size and offset in a header page before it. Freed by pnetrt_zunmap.
 *
 * From 2 MiB up it starts on a 2 MiB boundary and asks for transparent huge pages (the header
 * page stays outside them): the kernels stream parameters and gradients through the TLB, and ranks
 * on one node copy a gradient's slice from the other process's pages (Open MPI's single copy pins
 * them page by page). With 4 KiB pages that copy ran at a third of the speed (1.34 MB: 0.25 ms
 * against 0.085, docs/performance.md). Residency grows by at most a huge page at each end of what
 * is written. */
void *pnetrt_zmap(size_t bytes) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE), huge = (size_t)2 << 20;
    bool big = bytes >= huge;
    size_t all = bytes + page + (big ? huge : 0);
    char *p = mmap(NULL, all, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    char *user = p + page;
    if (big) {
        user = (char *)(((uintptr_t)p + page + huge - 1) & ~(uintptr_t)(huge - 1));
        madvise(user, (bytes + page - 1) / page * page, MADV_HUGEPAGE);
    }
    size_t *head = (size_t *)(user - page);
    head[0] = all;
    head[1] = (size_t)(user - p);
    return user;
}

void pnetrt_zunmap(void *p) {
    if (!p) return;
    const size_t *head = (const size_t *)((char *)p - (size_t)sysconf(_SC_PAGESIZE));
    munmap((char *)p - head[1], head[0]);
}

/* Whether the model's parameter p is one this rank reads and keeps (all, unless it runs one
 * pipeline stage and holds only that stage's). */
static bool param_held(const pnetrt_model *m, int64_t p) {
    return !m->partial_params || m->d->param_stage[p] == m->rank_stage;
}

/* Opens a weights file, its names looked up under the model's prefix. */
static int open_weights(pnetrt_model *m, const char *path, pnetrt_st **st) {
    if (pnetrt_st_open(path, st, m->err, sizeof m->err)) return 1;
    if (pnetrt_st_set_prefix(*st, m->weights_prefix, m->err, sizeof m->err)) {
        pnetrt_st_close(*st);
        *st = NULL;
        return 1;
    }
    return 0;
}

/* After every parameter was read: the file's other tensors, as a warning. A pnet checkpoint's
 * optimizer state is no surprise. */
static void note_unused(pnetrt_model *m, const pnetrt_st *st, const char *path) {
    const char *f = pnetrt_st_meta(st, "format");
    char list[400];
    int n = pnetrt_st_unused(st, f && !strcmp(f, "pnet-checkpoint") ? "optimizer." : NULL, list, sizeof list);
    if (n)
        snprintf(m->load_warning, sizeof m->load_warning, "%s: %d tensor%s %s not parameters of network '%s' and %s not loaded: %s",
                 path, n, n == 1 ? "" : "s", n == 1 ? "is" : "are", m->d->name, n == 1 ? "was" : "were", list);
}

const char *pnetrt_load_warning(const pnetrt_model *m) { return m ? m->load_warning : ""; }

/* Loads every parameter from a safetensors file, by PyTorch name, with its exact shape. */
static int load_weights(pnetrt_model *m, const char *path) {
    pnetrt_st *st;
    if (open_weights(m, path, &st)) return 1;
    for (int64_t p = 0; p < m->d->nparams; p++) {
        const pnetrt_tensor_desc *t = &m->d->params[p];
        int rc = param_held(m, p) ? pnetrt_st_read_f32(st, t->name, (int)t->rank, t->shape, m->params + t->offset, m->err, sizeof m->err)
                                  : pnetrt_st_read_f32_range(st, t->name, (int)t->rank, t->shape, 0, 0, NULL, m->err, sizeof m->err);
        if (rc) {
            pnetrt_st_close(st);
            return 1;
        }
    }
    note_unused(m, st, path);
    pnetrt_st_close(st);
    return 0;
}

/* Floats of a tensor that one step of load_prepared reads at most (whole rows, at least one). */
#define PNETRT_LOAD_SLICE ((int64_t)1 << 20)

/* Rows of parameter t (its first axis; a scalar is one row) and floats per row. */
static void param_rows(const pnetrt_tensor_desc *t, int64_t *rows, int64_t *row) {
    int64_t n = pnetrt_sample_elems(t);
    *rows = t->rank > 0 ? t->shape[0] : 1;
    *row = *rows > 0 ? n / *rows : 0;
}

/* Fills the prepared buffer one parameter, and a slice of rows, at a time with
 * d->prepare_param: from the safetensors file st, from the array raw (embedded weights), or else
 * from the default initialisation. Only a slice of one tensor is ever held besides prepared. */
static int load_prepared(pnetrt_model *m, pnetrt_st *st, const float *raw) {
    const pnetrt_desc *d = m->d;
    int64_t cap = 0;
    for (int64_t p = 0; p < d->nparams && !raw; p++) {
        int64_t rows, row;
        param_rows(&d->params[p], &rows, &row);
        int64_t per = row > 0 && row < PNETRT_LOAD_SLICE ? PNETRT_LOAD_SLICE / row : 1;
        int64_t f = (per < rows ? per : rows) * row;
        if (f > cap) cap = f;
    }
    float *buf = cap ? malloc((size_t)cap * sizeof(float)) : NULL;
    if (cap && !buf)
        return pnetrt_failf(m, "cannot allocate %zu bytes to load the parameters", (size_t)cap * sizeof(float));
    int rc = 0;
    for (int64_t p = 0; p < d->nparams && !rc; p++) {
        const pnetrt_tensor_desc *t = &d->params[p];
        if (!param_held(m, p)) {
            /* Another rank's stage: only checked (present, with its shape), not read. */
            if (st) rc = pnetrt_st_read_f32_range(st, t->name, (int)t->rank, t->shape, 0, 0, NULL, m->err, sizeof m->err);
            continue;
        }
        int64_t rows, row;
        param_rows(t, &rows, &row);
        int64_t per = row > 0 && row < PNETRT_LOAD_SLICE ? PNETRT_LOAD_SLICE / row : 1;
        for (int64_t r0 = 0; r0 < rows && !rc; r0 += per) {
            int64_t n = rows - r0 < per ? rows - r0 : per;
            const float *src = raw ? raw + t->offset + r0 * row : buf;
            if (st) rc = pnetrt_st_read_f32_range(st, t->name, (int)t->rank, t->shape, r0 * row, n * row, buf, m->err, sizeof m->err);
            else if (!raw) pnetrt_init_param(d, p, r0 * row, n * row, buf, 0);
            if (!rc) d->prepare_param(p, r0, n, src, m->prepared);
        }
    }
    free(buf);
    return rc;
}

/* The raw parameters, from the prepared buffer: exact copies, as d->prepare_param made them. */
static float *unprepare(pnetrt_model *m) {
    const pnetrt_desc *d = m->d;
    float *raw = pnetrt_zmap((size_t)d->param_floats * sizeof(float));
    if (!raw) {
        pnetrt_failf(m, "cannot allocate %zu bytes for the raw parameters", (size_t)d->param_floats * sizeof(float));
        return NULL;
    }
    for (int64_t p = 0; p < d->nparams; p++) {
        if (!param_held(m, p)) continue; /* another rank's stage: zero pages */
        int64_t rows, row;
        param_rows(&d->params[p], &rows, &row);
        d->unprepare_param(p, 0, rows, m->prepared, raw + d->params[p].offset);
    }
    return raw;
}

static int load(pnetrt_model *m, const char *path);
static int reserve(pnetrt_model *m, int threads, int replicas);

bool pnetrt_replicas_picked(const pnetrt_model *m) { return m->d->replicas <= 0 && !m->replicas_set; }
int pnetrt_last_plan(const pnetrt_model *m) { return m ? m->last_plan : PNETRT_PLAN_STATIC; }

int pnetrt_fail(pnetrt_model *m, const char *msg) {
    snprintf(m->err, sizeof m->err, "%s", msg);
    return 1;
}

float *pnetrt_params_mut(pnetrt_model *m) {
    if (!m->params) { /* loaded straight into the prepared buffer */
        if (!(m->params = unprepare(m))) return NULL;
        m->owns_params = true;
        /* The prepared copy is derived again before any call reads it (stale, below): give its
         * pages back, so that training holds one copy of the parameters. */
        if (m->prepared_bytes) madvise(m->prepared, m->prepared_bytes, MADV_DONTNEED);
    } else if (!m->owns_params) {
        float *p = pnetrt_zmap((size_t)m->d->param_floats * sizeof(float));
        if (!p) return NULL;
        memcpy(p, m->params, (size_t)m->d->param_floats * sizeof(float));
        if (m->prepared == m->params) m->prepared = p;
        m->params = p;
        m->owns_params = true;
    }
    m->stale = true;
    m->params_gen++;
    return m->params;
}

uint64_t pnetrt_params_gen(const pnetrt_model *m) { return m->params_gen; }

pnetrt_trainer **pnetrt_trainer_slot(pnetrt_model *m) { return &m->trainer; }
pnetrt_comm *pnetrt_model_comm(const pnetrt_model *m) { return m ? m->comm : NULL; }
void pnetrt_model_set_comm(pnetrt_model *m, pnetrt_comm *c) {
    if (m->owns_comm) pnetrt_comm_free(m->comm);
    m->comm = c;
    m->owns_comm = c != NULL;
}
void pnetrt_trainer_hook(pnetrt_model *m, pnetrt_trainer_free_fn *free_fn) { m->trainer_free = free_fn; }
int pnetrt_replicas_chosen(const pnetrt_model *m) { return m->replicas_set ? m->replicas : 0; }
char *pnetrt_scratch(pnetrt_model *m) { return m->scratch; }
int pnetrt_scratch_threads(const pnetrt_model *m) { return m->scratch_threads; }

int pnetrt_create(pnetrt_model **out, const pnetrt_desc *d, const char *weights_path) {
    return pnetrt_create_prefixed(out, d, weights_path, NULL);
}

int pnetrt_create_prefixed(pnetrt_model **out, const pnetrt_desc *d, const char *weights_path, const char *prefix) {
    if (!out) return 1;
    *out = NULL;
    pnetrt_model *m = calloc(1, sizeof *m);
    if (!m) return 1;
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    int bad = pthread_mutex_init(&m->lock, &attr);
    pthread_mutexattr_destroy(&attr);
    if (bad) {
        free(m);
        return 1;
    }
    static _Atomic uint64_t ids;
    m->id = atomic_fetch_add(&ids, 1) + 1;
    *out = m;
    m->d = d;
    m->threads = omp_get_max_threads();
    m->comm = pnetrt_comm_default();
    if (!d || d->abi != PNETRT_ABI)
        return pnetrt_failf(m, "network was compiled for libpnetrt ABI %lld, but this libpnetrt has ABI %d",
                            d ? (long long)d->abi : -1LL, PNETRT_ABI);
    if (d->nstages > PNETRT_MAX_STAGES || d->ninputs > PNETRT_MAX_IO || d->noutputs > PNETRT_MAX_IO)
        return pnetrt_failf(
            m,
            "network has %lld stages, %lld inputs and %lld outputs; libpnetrt takes at most %d stages and %d "
            "inputs and outputs",
            (long long)d->nstages, (long long)d->ninputs, (long long)d->noutputs, PNETRT_MAX_STAGES, PNETRT_MAX_IO);
    m->replicas = d->replicas > 0 ? (int)d->replicas : 1;
    m->microbatches = d->microbatches > 0 ? (int)d->microbatches : 1;
    m->pipeline = d->nstages > 1;
    m->stage_flops = calloc((size_t)(d->nstages > 0 ? d->nstages : 1), sizeof(double));
    if (!m->stage_flops) return pnetrt_failf(m, "out of memory");
    for (int64_t i = 0; i < d->nlayers; i++)
        if (d->layers[i].stage >= 0 && d->layers[i].stage < d->nstages) m->stage_flops[d->layers[i].stage] += (double)d->layers[i].flops;
    if (reserve(m, m->threads, m->replicas)) return 1;
    m->rank_stage = -1;
    if (pnetrt_rank_layout(m, pnetrt_layout_default)) return 1;
    for (int64_t i = 0; i < d->nlayers; i++) m->flops_per_sample += (double)d->layers[i].flops;
    const char *tr = getenv("PNET_TRACE");
    if (tr && *tr) {
        /* The first network of the process writes PATH; each later one PATH.K.NAME.json, so no
         * network's trace overwrites another's. */
        static _Atomic int traced;
        int k = atomic_fetch_add(&traced, 1);
        char path[4096];
        size_t n = strlen(tr);
        if (n > 5 && !strcmp(tr + n - 5, ".json")) n -= 5;
        if (k == 0) snprintf(path, sizeof path, "%s", tr);
        else snprintf(path, sizeof path, "%.*s.%d.%s.json", (int)n, tr, k + 1, d->name);
        if (pnetrt_set_trace(m, path)) {
            char e[sizeof m->err];
            snprintf(e, sizeof e, "PNET_TRACE: %s", m->err);
            return pnetrt_fail(m, e);
        }
    }
    const char *ad = getenv("PNET_ADAPTIVE_THREADS");
    m->adaptive = !(ad && strcmp(ad, "0") == 0);
    m->weights_prefix = prefix;
    int rc = load(m, weights_path);
    m->weights_prefix = NULL;
    if (rc) return 1;
    m->ready = true;
    return 0;
}

bool pnetrt_ready(pnetrt_model *m) {
    if (m && m->ready) return true;
    if (m) pnetrt_failf(m, "the network was not created successfully");
    return false;
}

double pnetrt_memory_limit(void) {
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    return pages > 0 && psize > 0 ? 0.5 * (double)pages * (double)psize : 1e12;
}

int pnetrt_check_batch(pnetrt_model *m, int64_t batch, const pnetrt_tensor_desc *t, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        int64_t elems = pnetrt_sample_elems(&t[i]);
        if (t[i].rank > 0 && t[i].shape[0] < 0 && elems > 0 && batch > PTRDIFF_MAX / 4 / elems)
            return pnetrt_failf(m, "batch size %lld is too large: '%s' would be over %lld bytes", (long long)batch,
                                t[i].name, (long long)PTRDIFF_MAX);
    }
    return 0;
}

/* Maps the zeroed prepared buffer. Its pages join the resident set only when written, so the raw
 * slots of packed dense layers, which no kernel reads and prepare_param never writes, cost
 * address space but no memory. Transparent huge pages where the kernel gives them on request
 * (`madvise` mode): the kernels stream the weights, and with 4 KiB pages a one-sample mlp_l call
 * on one thread ran 0.85x as fast as with the heap buffer before (docs/performance.md). */
static int alloc_prepared(pnetrt_model *m) {
    size_t bytes = (size_t)m->d->prepared_floats * sizeof(float);
    void *p = mmap(NULL, bytes ? bytes : 64, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return pnetrt_failf(m, "cannot allocate %zu bytes for the parameters", bytes);
    madvise(p, bytes ? bytes : 64, MADV_HUGEPAGE);
    m->prepared = p;
    m->prepared_bytes = bytes ? bytes : 64;
    return 0;
}

/* Derives the buffer the kernels read (packed weights) from the raw parameters. */
static int prepare(pnetrt_model *m) {
    const pnetrt_desc *d = m->d;
    if (!d->prepare) {
        m->prepared = m->params;
        return 0;
    }
    if (alloc_prepared(m)) return 1;
    d->prepare(m->params, m->prepared);
    return 0;
}

/* The parameters, from the weights file at path, else the embedded weights, else the default
 * initialisation. Where the network prepares one parameter at a time, each tensor goes straight
 * into the prepared buffer (a file a slice at a time), and raw parameters are derived only when
 * pnetrt_params_mut asks (training, saving): embedded weights stay the raw ones. Otherwise the
 * raw buffer is filled and the prepared one derived from it. */
static int load(pnetrt_model *m, const char *path) {
    const pnetrt_desc *d = m->d;
    const float *embedded = path ? NULL : d->embedded;
    if (d->prepare && d->prepare_param && d->unprepare_param) {
        pnetrt_st *st = NULL;
        if (path && open_weights(m, path, &st)) return 1;
        /* A rank that runs one pipeline stage reads, prepares and touches only that stage's
         * parameters: the others stay zero pages of the mapping, which cost no memory. */
        m->partial_params = m->rank_stage >= 0 && d->param_stage;
        int rc = alloc_prepared(m) || load_prepared(m, st, embedded);
        if (!rc && st) note_unused(m, st, path);
        pnetrt_st_close(st);
        if (!rc && embedded) m->params = (float *)embedded;
        return rc;
    }
    if (embedded) {
        m->params = (float *)embedded;
    } else {
        size_t bytes = (size_t)d->param_floats * sizeof(float);
        m->params = pnetrt_zmap(bytes);
        if (!m->params) return pnetrt_failf(m, "cannot allocate %zu bytes for the parameters", bytes);
        m->owns_params = true;
        /* A rank that runs one pipeline stage of a network that needs no preparing reads and
         * touches only that stage's parameters, as with prepare_param above. */
        m->partial_params = m->rank_stage >= 0 && d->param_stage && !d->prepare;
        if (path) {
            if (load_weights(m, path)) return 1;
        } else {
            for (int64_t p = 0; p < d->nparams; p++)
                if (param_held(m, p))
                    pnetrt_init_param(d, p, 0, pnetrt_sample_elems(&d->params[p]), m->params + d->params[p].offset, 0);
        }
    }
    return prepare(m);
}

/* Samples one pipeline micro-batch slot holds: a chunk's share, rounded up. */
static int64_t slot_cap(const pnetrt_desc *d, int M) { return (d->chunk + M - 1) / M; }


/* Replica groups of a pipeline running at once: each needs a thread per stage. 0: too few
 * threads for one pipeline, so stages run one after another instead. */
int pnetrt_pipe_groups(int threads, int replicas, int stages) {
    int g = threads / stages;
    if (g > replicas) g = replicas;
    if (g * stages > PNETRT_MAX_GROUPS) g = PNETRT_MAX_GROUPS / stages;
    return g;
}

/* Replica groups running at once: one per replica, at most one per thread. */
int pnetrt_group_count(int threads, int replicas) {
    int g = replicas < threads ? replicas : threads;
    return g < 1 ? 1 : g > PNETRT_MAX_GROUPS ? PNETRT_MAX_GROUPS : g;
}

/* Allocates and touches n arenas of `bytes` each into *arr (growing from *have). */
static int grow_arenas(pnetrt_model *m, char ***arr, int *have, int n, size_t bytes) {
    if (n <= *have) return 0;
    if ((double)bytes * n > pnetrt_memory_limit())
        return pnetrt_failf(
            m,
            "%d activation arenas of %zu bytes (replicas x micro-batches) need more than half of this machine's memory",
            n, bytes);
    char **a = realloc(*arr, sizeof(char *) * (size_t)n);
    if (!a) return pnetrt_failf(m, "out of memory");
    *arr = a;
    for (int i = *have; i < n; i++) {
        a[i] = alloc_aligned(bytes);
        if (!a[i]) return pnetrt_failf(m, "cannot allocate a %zu-byte activation arena", bytes);
        memset(a[i], 0, bytes); /* touch every page now, not during the first call */
        *have = i + 1;
    }
    return 0;
}

/* Per-thread scratch, one full-chunk arena per replica group, and, for pipelines, one smaller
 * arena per micro-batch slot: all allocated and touched here, outside infer. */
static int reserve(pnetrt_model *m, int threads, int replicas) {
    const pnetrt_desc *d = m->d;
    if (threads > m->scratch_threads) {
        size_t bytes = (size_t)d->scratch_bytes * (size_t)threads;
        char *s = alloc_aligned(bytes);
        if (!s) return pnetrt_failf(m, "cannot allocate %zu bytes of scratch for %d threads", bytes, threads);
        memset(s, 0, bytes);
        free(m->scratch);
        m->scratch = s;
        m->scratch_threads = threads;
    }
    size_t full = (size_t)(d->arena_sample_bytes * d->chunk + d->arena_fixed_bytes);
    int groups = pnetrt_group_count(threads, replicas);
    if (pnetrt_replicas_picked(m) && !(m->pipeline && d->nstages > 1)) {
        /* A call may pick up to one replica per thread (auto_replicas): arenas for them, at most
         * one per core (more replicas than cores gain nothing) and within an eighth of this
         * machine's memory. */
        long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
        double budget = pages > 0 && psize > 0 ? 0.125 * (double)pages * (double)psize : 1e11;
        int fit = (int)(budget / (double)(full ? full : 1)), cores = omp_get_num_procs();
        if (fit > cores) fit = cores;
        int cap = pnetrt_group_count(threads, fit < threads ? fit : threads);
        if (cap > groups) groups = cap;
    }
    if (grow_arenas(m, &m->arenas, &m->narenas, groups, full)) return 1;
    m->arena = m->arenas[0];
    if (m->pipeline && d->nstages > 1) {
        int64_t cap = slot_cap(d, m->microbatches);
        if (cap != m->slot_cap) { /* the micro-batch count changed: new slot sizes */
            for (int i = 0; i < m->nslots; i++) free(m->slots[i]);
            m->nslots = 0;
            m->slot_cap = cap;
        }
        size_t bytes = (size_t)(d->arena_sample_bytes * cap + d->arena_fixed_bytes);
        int pg = pnetrt_pipe_groups(threads, replicas, (int)d->nstages);
        if (grow_arenas(m, &m->slots, &m->nslots, pg * m->microbatches, bytes)) return 1;
        if (pg > m->nhand) {
            pnetrt_handoff *h = calloc((size_t)pg, sizeof *h);
            if (!h) return pnetrt_failf(m, "out of memory");
            free(m->hand);
            m->hand = h;
            m->nhand = pg;
        }
    }
    return 0;
}

static int set_threads(pnetrt_model *m, int threads) {
    if (threads < 1 || threads > 4096) return pnetrt_failf(m, "thread count %d is out of range (1 to 4096)", threads);
    if (m->d && m->d->abi == PNETRT_ABI && reserve(m, threads, m->replicas)) return 1;
    m->threads = threads;
    return 0;
}

int pnetrt_set_threads(pnetrt_model *m, int threads) {
    if (!m) return 1;
    pnetrt_lock(m);
    return pnetrt_unlock(m, set_threads(m, threads));
}

static int set_replicas(pnetrt_model *m, int replicas) {
    if (replicas < 1 || replicas > 4096)
        return pnetrt_failf(m, "replica count %d is out of range (1 to 4096)", replicas);
    bool was = m->replicas_set;
    m->replicas_set = true;
    if (m->d && m->d->abi == PNETRT_ABI && reserve(m, m->threads, replicas)) {
        m->replicas_set = was;
        return 1;
    }
    m->replicas = replicas;
    return 0;
}

int pnetrt_set_replicas(pnetrt_model *m, int replicas) {
    if (!m) return 1;
    pnetrt_lock(m);
    return pnetrt_unlock(m, set_replicas(m, replicas));
}

int pnetrt_last_replicas(const pnetrt_model *m) { return m ? m->last_replicas : 0; }
int pnetrt_last_threads(const pnetrt_model *m) { return m ? m->last_team : 0; }

/* The counts are checked even when the network has no stages, where they then have no effect. */
static int set_stage_threads(pnetrt_model *m, const int *shares, int n) {
    int S = (int)m->d->nstages;
    if (!shares) {
        free(m->stage_shares);
        m->stage_shares = NULL;
        return 0;
    }
    if (n < 1 || n > PNETRT_MAX_STAGES)
        return pnetrt_failf(m, "%d stage thread counts given; a network has 1 to %d stages", n, PNETRT_MAX_STAGES);
    if (S > 1 && n != S) return pnetrt_failf(m, "%d stage thread counts given, but the network has %d stages", n, S);
    for (int s = 0; s < n; s++)
        if (shares[s] < 1 || shares[s] > 4096)
            return pnetrt_failf(m, "stage %d's thread count %d is out of range (1 to 4096)", s, shares[s]);
    if (S <= 1) {
        note(m, "stage threads have no effect: the network has no pipeline stages");
        return 0;
    }
    if (!m->stage_shares && !(m->stage_shares = malloc(sizeof(int) * (size_t)S)))
        return pnetrt_failf(m, "out of memory");
    memcpy(m->stage_shares, shares, sizeof(int) * (size_t)S);
    m->pipe_set = true; /* the user's pipeline runs as a pipeline (infer.c, train.c) */
    return 0;
}

int pnetrt_set_stage_threads(pnetrt_model *m, const int *shares, int n) {
    if (!m || !m->d) return 1;
    pnetrt_lock(m);
    return pnetrt_unlock(m, set_stage_threads(m, shares, n));
}

int pnetrt_replicas(const pnetrt_model *m) { return m ? m->replicas : 0; }

static int set_microbatches(pnetrt_model *m, int microbatches) {
    if (microbatches < 1 || microbatches > 65536)
        return pnetrt_failf(m, "micro-batch count %d is out of range (1 to 65536)", microbatches);
    if (m->d && m->d->nstages <= 1) note(m, "micro-batches have no effect: the network has no pipeline stages");
    int old = m->microbatches;
    m->microbatches = microbatches;
    if (m->d && m->d->abi == PNETRT_ABI && reserve(m, m->threads, m->replicas)) {
        m->microbatches = old;
        return 1;
    }
    m->pipe_set = true; /* the user's pipeline runs as a pipeline (infer.c, train.c) */
    return 0;
}

int pnetrt_set_microbatches(pnetrt_model *m, int microbatches) {
    if (!m) return 1;
    pnetrt_lock(m);
    return pnetrt_unlock(m, set_microbatches(m, microbatches));
}

static int set_pipeline(pnetrt_model *m, bool on) {
    bool old = m->pipeline;
    m->pipeline = on && m->d && m->d->nstages > 1;
    if (m->d && m->d->abi == PNETRT_ABI && reserve(m, m->threads, m->replicas)) {
        m->pipeline = old;
        return 1;
    }
    return 0;
}

int pnetrt_set_pipeline(pnetrt_model *m, bool on) {
    if (!m) return 1;
    pnetrt_lock(m);
    return pnetrt_unlock(m, set_pipeline(m, on));
}

int pnetrt_microbatches(const pnetrt_model *m) { return m ? m->microbatches : 0; }


double pnetrt_predicted_bubble(const pnetrt_model *m, int64_t *streamed) {
    if (!m || m->last_wall <= 0 || m->d->nstages < 2 || m->last_stream < 1) return -1;
    double S = (double)m->d->nstages, Q = (double)m->last_stream;
    if (streamed) *streamed = m->last_stream;
    return (S - 1) / (Q + S - 1);
}

double pnetrt_stage_busy(const pnetrt_model *m, int s) {
    return m && s >= 0 && s < PNETRT_MAX_STAGES && m->last_wall > 0 ? m->busy[s] : 0;
}

double pnetrt_measured_bubble(const pnetrt_model *m) {
    if (!m || m->last_wall <= 0 || m->d->nstages < 2) return -1;
    if (m->rank_stage >= 0) return 1.0 - m->busy[m->rank_stage] / m->last_wall; /* this rank's stage's idle share */
    int S = (int)m->d->nstages < PNETRT_MAX_STAGES ? (int)m->d->nstages : PNETRT_MAX_STAGES;
    double idle = 0;
    for (int s = 0; s < S; s++) idle += 1.0 - m->busy[s] / m->last_wall;
    return idle / S;
}

static int set_schedule(pnetrt_model *m, const char *schedule) {
    if (!schedule) return pnetrt_failf(m, "no schedule given; expected serial, batch, pipeline or hybrid");
    m->schedule_set = true; /* the user's schedule runs as asked: no adaptive plan (infer.c) */
    if (strcmp(schedule, "serial") == 0) return set_threads(m, 1) || set_replicas(m, 1) || set_pipeline(m, false);
    if (strcmp(schedule, "batch") == 0) return set_pipeline(m, false);
    if ((!strcmp(schedule, "pipeline") || !strcmp(schedule, "hybrid")) && m->d && m->d->nstages <= 1)
        note(m, strcmp(schedule, "pipeline") ? "the hybrid schedule runs as batch-parallel: the network has no pipeline stages"
                                             : "the pipeline schedule has no effect: the network has no pipeline stages");
    if (strcmp(schedule, "pipeline") == 0) return set_pipeline(m, true) || set_replicas(m, 1);
    if (strcmp(schedule, "hybrid") == 0) return set_pipeline(m, true);
    return pnetrt_failf(m, "unknown schedule '%s'; expected serial, batch, pipeline or hybrid", schedule);
}

int pnetrt_set_schedule(pnetrt_model *m, const char *schedule) {
    if (!m) return 1;
    pnetrt_lock(m);
    return pnetrt_unlock(m, set_schedule(m, schedule));
}
bool pnetrt_pipelined(const pnetrt_model *m) { return m && m->pipeline; }

bool pnetrt_plans_free(const pnetrt_model *m, bool pipe) {
    return m->adaptive && !m->schedule_set && !(pipe && m->pipe_set);
}

bool pnetrt_adaptive(const pnetrt_model *m) { return m->adaptive; }

double pnetrt_flops_per_sample(const pnetrt_model *m) { return m->flops_per_sample; }

int pnetrt_threads(const pnetrt_model *m) { return m ? m->threads : 0; }

int pnetrt_call_threads(const pnetrt_model *m) { return omp_in_parallel() ? 1 : m->threads; }
const pnetrt_desc *pnetrt_model_desc(const pnetrt_model *m) { return m ? m->d : NULL; }

const char *pnetrt_last_error(const pnetrt_model *m) {
    if (!m) return "no network (creation failed before it began)";
    return tls_error.id == m->id ? tls_error.err : m->err;
}

void pnetrt_destroy(pnetrt_model *m) {
    if (!m) return;
    if (m->trace && m->trace_path && pnetrt_write_trace(m, m->trace_path))
        fprintf(stderr, "%s: warning: %s\n", m->d->name, m->err);
    free(m->trace);
    free(m->trace_path);
    if (m->prepared_bytes) munmap(m->prepared, m->prepared_bytes);
    if (m->owns_params) pnetrt_zunmap(m->params);
    for (int i = 0; i < m->narenas; i++) free(m->arenas[i]);
    free(m->arenas);
    for (int i = 0; i < m->nslots; i++) free(m->slots[i]);
    free(m->slots);
    free(m->hand);
    free(m->scratch);
    free(m->stage_flops);
    free(m->stage_shares);
    pnetrt_stages_free(m);
    if (m->trainer) m->trainer_free(m->trainer);
    if (m->owns_comm) pnetrt_comm_free(m->comm);
    pthread_mutex_destroy(&m->lock);
    if (tls_error.id == m->id) tls_error.id = 0;
    free(m);
}

