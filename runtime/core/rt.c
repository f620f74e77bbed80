/* The model object behind every generated network: it owns the weights and the activation
 * arena (both allocated once, at create), checks inputs, and runs the generated forward function
 * over chunks of the batch on an OpenMP team. Nothing here aborts on bad input. */
#include "comm.h"
#include "model.h"
#include "transport.h"
#include "fileio.h"
#include "io.h"

#include <omp.h>
#include <pthread.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <stdatomic.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(pnetrt_tensor_desc) == 16 * 8, "pnetrt_tensor_desc must be 16 eight-byte fields");
_Static_assert(sizeof(pnetrt_layer_desc) == 10 * 8, "pnetrt_layer_desc must be 10 eight-byte fields");
_Static_assert(sizeof(pnetrt_desc) == 29 * 8, "pnetrt_desc must be 29 eight-byte fields");

const char *pnetrt_prog = "net";
bool pnetrt_prog_named;

/* One slice of the trace: a stage (or the whole network) on one thread for one micro-batch of one
 * replica. */
typedef struct trace_event {
    double begin, end;
    int thread, stage, replica;
    int64_t microbatch, samples;
} trace_event;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The least work, in FLOPs per call, that justifies one more thread. */
#define PNETRT_FLOPS_PER_THREAD 4e6
/* Batch-parallel replicas picked by the runtime: the least FLOPs a shard's chunk must do per byte
 * of weights it streams, from the caches when the weights fit in PNETRT_CACHED_WEIGHTS bytes, from
 * memory otherwise (where one replica on the whole team reads each weight once instead), and the
 * least samples per shard. */
#define PNETRT_SHARD_FLOPS_PER_BYTE 32.0
#define PNETRT_SHARD_FLOPS_PER_DRAM_BYTE 256.0
#define PNETRT_CACHED_WEIGHTS (8.0 * 1024 * 1024)
#define PNETRT_MIN_SHARD 4

struct pnetrt_model {
    const pnetrt_desc *d;
    float *params;       /* raw parameters: owned unless it is the embedded array; NULL until
                          * pnetrt_params_mut needs them where d->unprepare_param derives them */
    bool owns_params;
    float *prepared;     /* what the kernels read: params transformed by d->prepare */
    size_t prepared_bytes; /* prepared's mapping, or 0 when prepared is params */
    char *arena;         /* arenas[0] */
    char **arenas;       /* one activation arena per concurrently running replica */
    int narenas;
    char **slots;        /* pipeline micro-batch slots, slot_cap samples each */
    int nslots;
    pnetrt_handoff *hand; /* pipeline hand-offs, one per replica group that runs at once */
    int nhand;
    int64_t slot_cap;
    int replicas;        /* batch-parallel replicas (@shard(batch, R) or pnetrt_set_replicas) */
    int microbatches;    /* micro-batches per chunk in a pipeline (@pipeline or pnetrt_set_microbatches) */
    bool pipeline;       /* run pipeline stages concurrently (when the network has several) */
    double *stage_flops; /* FLOPs per sample of each stage, to share threads among stages */
    int *stage_shares;   /* the user's thread shares per stage (pnetrt_set_stage_threads), or NULL */
    trace_event *trace;  /* events, when tracing; written to trace_path by pnetrt_destroy */
    _Atomic int64_t ntrace;
    int64_t trace_cap;
    char *trace_path;
    double t0;           /* trace time origin */
    double busy[PNETRT_MAX_STAGES]; /* pipeline stage busy seconds of the last call (group 0) */
    double last_wall;    /* seconds of the last call */
    int64_t last_stream; /* micro-batches with samples that replica group 0 streamed in the last call */
    char *scratch;       /* threads * d->scratch_bytes */
    int scratch_threads;
    int threads;
    double flops_per_sample;
    bool adaptive;       /* small calls use fewer threads (PNET_ADAPTIVE_THREADS=0 turns it off) */
    bool stale;          /* params changed (training) since prepared was derived */
    bool replicas_set;   /* replicas chosen by the user, not the default */
    int last_replicas;   /* replicas of the last call */
    int last_team;       /* threads the last call ran on */
    pnetrt_trainer *trainer; /* training state, made by the first training call */
    pnetrt_trainer_free_fn *trainer_free; /* the training module's hook that frees it */
    pnetrt_comm *comm;       /* the ranks it runs on (comm.h), or NULL: this process alone */
    bool owns_comm;          /* comm came from pnetrt_model_set_comm, not the process default */
    bool ready;              /* pnetrt_create succeeded: a failed model only answers last_error */
    /* Calls that use the arenas or state hold the lock, so threads sharing a handle take turns.
     * Recursive: set_schedule calls set_threads, save_file calls save. */
    pthread_mutex_t lock;
    uint64_t id;             /* unique in the process: which handle a thread's last error is of */
    char err[512];
};

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

static int fail(pnetrt_model *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(pnetrt_model *m, const char *fmt, ...) {
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
    if (cap && !buf) return fail(m, "cannot allocate %zu bytes to load the parameters", (size_t)cap * sizeof(float));
    int rc = 0;
    for (int64_t p = 0; p < d->nparams && !rc; p++) {
        const pnetrt_tensor_desc *t = &d->params[p];
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
    float *raw = alloc_aligned((size_t)d->param_floats * sizeof(float));
    if (!raw) {
        fail(m, "cannot allocate %zu bytes for the raw parameters", (size_t)d->param_floats * sizeof(float));
        return NULL;
    }
    memset(raw, 0, (size_t)d->param_floats * sizeof(float));
    for (int64_t p = 0; p < d->nparams; p++) {
        int64_t rows, row;
        param_rows(&d->params[p], &rows, &row);
        d->unprepare_param(p, 0, rows, m->prepared, raw + d->params[p].offset);
    }
    return raw;
}

static int load(pnetrt_model *m, const char *path);
static int reserve(pnetrt_model *m, int threads, int replicas);

bool pnetrt_replicas_picked(const pnetrt_model *m) { return m->d->replicas <= 0 && !m->replicas_set; }

int pnetrt_fail(pnetrt_model *m, const char *msg) {
    snprintf(m->err, sizeof m->err, "%s", msg);
    return 1;
}

float *pnetrt_params_mut(pnetrt_model *m) {
    if (!m->params) { /* loaded straight into the prepared buffer */
        if (!(m->params = unprepare(m))) return NULL;
        m->owns_params = true;
    } else if (!m->owns_params) {
        float *p = alloc_aligned((size_t)m->d->param_floats * sizeof(float));
        if (!p) return NULL;
        memcpy(p, m->params, (size_t)m->d->param_floats * sizeof(float));
        if (m->prepared == m->params) m->prepared = p;
        m->params = p;
        m->owns_params = true;
    }
    m->stale = true;
    return m->params;
}

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
        return fail(m, "network was compiled for libpnetrt ABI %lld, but this libpnetrt has ABI %d",
                    d ? (long long)d->abi : -1LL, PNETRT_ABI);
    if (d->nstages > PNETRT_MAX_STAGES || d->ninputs > PNETRT_MAX_IO || d->noutputs > PNETRT_MAX_IO)
        return fail(m, "network has %lld stages, %lld inputs and %lld outputs; libpnetrt takes at most %d stages and %d "
                       "inputs and outputs", (long long)d->nstages, (long long)d->ninputs, (long long)d->noutputs,
                    PNETRT_MAX_STAGES, PNETRT_MAX_IO);
    m->replicas = d->replicas > 0 ? (int)d->replicas : 1;
    m->microbatches = d->microbatches > 0 ? (int)d->microbatches : 1;
    m->pipeline = d->nstages > 1;
    m->stage_flops = calloc((size_t)(d->nstages > 0 ? d->nstages : 1), sizeof(double));
    if (!m->stage_flops) return fail(m, "out of memory");
    for (int64_t i = 0; i < d->nlayers; i++)
        if (d->layers[i].stage >= 0 && d->layers[i].stage < d->nstages) m->stage_flops[d->layers[i].stage] += (double)d->layers[i].flops;
    if (reserve(m, m->threads, m->replicas)) return 1;
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
    if (load(m, weights_path)) return 1;
    m->ready = true;
    return 0;
}

bool pnetrt_ready(pnetrt_model *m) {
    if (m && m->ready) return true;
    if (m) fail(m, "the network was not created successfully");
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
            return fail(m, "batch size %lld is too large: '%s' would be over %lld bytes", (long long)batch, t[i].name,
                        (long long)PTRDIFF_MAX);
    }
    return 0;
}

/* Maps the zeroed prepared buffer. Its pages join the resident set only when written, so the raw
 * slots of packed dense layers, which no kernel reads and prepare_param never writes, cost
 * address space but no memory. */
static int alloc_prepared(pnetrt_model *m) {
    size_t bytes = (size_t)m->d->prepared_floats * sizeof(float);
    void *p = mmap(NULL, bytes ? bytes : 64, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return fail(m, "cannot allocate %zu bytes for the parameters", bytes);
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
        if (path && pnetrt_st_open(path, &st, m->err, sizeof m->err)) return 1;
        int rc = alloc_prepared(m) || load_prepared(m, st, embedded);
        pnetrt_st_close(st);
        if (!rc && embedded) m->params = (float *)embedded;
        return rc;
    }
    if (embedded) {
        m->params = (float *)embedded;
    } else {
        size_t bytes = (size_t)d->param_floats * sizeof(float);
        m->params = alloc_aligned(bytes);
        if (!m->params) return fail(m, "cannot allocate %zu bytes for the parameters", bytes);
        m->owns_params = true;
        memset(m->params, 0, bytes);
        if (path) {
            if (load_weights(m, path)) return 1;
        } else {
            pnetrt_init_params(d, m->params, 0);
        }
    }
    return prepare(m);
}

enum { PNETRT_MAX_GROUPS = 256 };

/* Samples one pipeline micro-batch slot holds: a chunk's share, rounded up. */
static int64_t slot_cap(const pnetrt_desc *d, int M) { return (d->chunk + M - 1) / M; }

/* Replica groups of a pipeline running at once: each needs a thread per stage. 0: too few
 * threads for one pipeline, so stages run one after another instead. */
static int pipe_groups(int threads, int replicas, int stages) {
    int g = threads / stages;
    if (g > replicas) g = replicas;
    if (g * stages > PNETRT_MAX_GROUPS) g = PNETRT_MAX_GROUPS / stages;
    return g;
}

/* Replica groups running at once: one per replica, at most one per thread. */
static int group_count(int threads, int replicas) {
    int g = replicas < threads ? replicas : threads;
    return g < 1 ? 1 : g > PNETRT_MAX_GROUPS ? PNETRT_MAX_GROUPS : g;
}

/* Allocates and touches n arenas of `bytes` each into *arr (growing from *have). */
static int grow_arenas(pnetrt_model *m, char ***arr, int *have, int n, size_t bytes) {
    if (n <= *have) return 0;
    if ((double)bytes * n > pnetrt_memory_limit())
        return fail(m, "%d activation arenas of %zu bytes (replicas x micro-batches) need more than half of this machine's memory",
                    n, bytes);
    char **a = realloc(*arr, sizeof(char *) * (size_t)n);
    if (!a) return fail(m, "out of memory");
    *arr = a;
    for (int i = *have; i < n; i++) {
        a[i] = alloc_aligned(bytes);
        if (!a[i]) return fail(m, "cannot allocate a %zu-byte activation arena", bytes);
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
        if (!s) return fail(m, "cannot allocate %zu bytes of scratch for %d threads", bytes, threads);
        memset(s, 0, bytes);
        free(m->scratch);
        m->scratch = s;
        m->scratch_threads = threads;
    }
    size_t full = (size_t)(d->arena_sample_bytes * d->chunk + d->arena_fixed_bytes);
    int groups = group_count(threads, replicas);
    if (pnetrt_replicas_picked(m) && !(m->pipeline && d->nstages > 1)) {
        /* A call may pick up to one replica per thread (auto_replicas): arenas for them, at most
         * one per core (more replicas than cores gain nothing) and within an eighth of this
         * machine's memory. */
        long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
        double budget = pages > 0 && psize > 0 ? 0.125 * (double)pages * (double)psize : 1e11;
        int fit = (int)(budget / (double)(full ? full : 1)), cores = omp_get_num_procs();
        if (fit > cores) fit = cores;
        int cap = group_count(threads, fit < threads ? fit : threads);
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
        int pg = pipe_groups(threads, replicas, (int)d->nstages);
        if (grow_arenas(m, &m->slots, &m->nslots, pg * m->microbatches, bytes)) return 1;
        if (pg > m->nhand) {
            pnetrt_handoff *h = calloc((size_t)pg, sizeof *h);
            if (!h) return fail(m, "out of memory");
            free(m->hand);
            m->hand = h;
            m->nhand = pg;
        }
    }
    return 0;
}

static int set_threads(pnetrt_model *m, int threads) {
    if (threads < 1 || threads > 4096) return fail(m, "thread count %d is out of range (1 to 4096)", threads);
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
    if (replicas < 1 || replicas > 4096) return fail(m, "replica count %d is out of range (1 to 4096)", replicas);
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
        return fail(m, "%d stage thread counts given; a network has 1 to %d stages", n, PNETRT_MAX_STAGES);
    if (S > 1 && n != S) return fail(m, "%d stage thread counts given, but the network has %d stages", n, S);
    for (int s = 0; s < n; s++)
        if (shares[s] < 1 || shares[s] > 4096) return fail(m, "stage %d's thread count %d is out of range (1 to 4096)", s, shares[s]);
    if (S <= 1) {
        note(m, "stage threads have no effect: the network has no pipeline stages");
        return 0;
    }
    if (!m->stage_shares && !(m->stage_shares = malloc(sizeof(int) * (size_t)S))) return fail(m, "out of memory");
    memcpy(m->stage_shares, shares, sizeof(int) * (size_t)S);
    return 0;
}

int pnetrt_set_stage_threads(pnetrt_model *m, const int *shares, int n) {
    if (!m || !m->d) return 1;
    pnetrt_lock(m);
    return pnetrt_unlock(m, set_stage_threads(m, shares, n));
}

int pnetrt_replicas(const pnetrt_model *m) { return m ? m->replicas : 0; }

static int set_microbatches(pnetrt_model *m, int microbatches) {
    if (microbatches < 1 || microbatches > 65536) return fail(m, "micro-batch count %d is out of range (1 to 65536)", microbatches);
    if (m->d && m->d->nstages <= 1) note(m, "micro-batches have no effect: the network has no pipeline stages");
    int old = m->microbatches;
    m->microbatches = microbatches;
    if (m->d && m->d->abi == PNETRT_ABI && reserve(m, m->threads, m->replicas)) {
        m->microbatches = old;
        return 1;
    }
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

/* "PATH: cannot write the trace: why", from fileio's "PATH: why". */
static int trace_fail(pnetrt_model *m, const char *path, const char *err) {
    return fail(m, "%s: cannot write the trace: %s", path, pnetrt_io_reason(err, path));
}

int pnetrt_set_trace(pnetrt_model *m, const char *path) {
    if (!m) return 1;
    free(m->trace);
    free(m->trace_path);
    m->trace = NULL;
    m->trace_path = NULL;
    atomic_store(&m->ntrace, 0);
    if (!path) return 0;
    /* Fail now, not after the run, on what the write would refuse (fileio.h), leaving the file as it is. */
    char err[512];
    if (pnetrt_io_check_output(path, err, sizeof err)) return trace_fail(m, path, err);
    m->trace_cap = INT64_C(1) << 20;
    m->trace = malloc(sizeof(trace_event) * (size_t)m->trace_cap);
    m->trace_path = strdup(path);
    if (!m->trace || !m->trace_path) return fail(m, "cannot allocate the trace buffer");
    m->t0 = now_s();
    return 0;
}

/* Chrome trace-event JSON (Perfetto, chrome://tracing): one track per thread, one slice per
 * (stage, micro-batch, replica). */
int pnetrt_write_trace(pnetrt_model *m, const char *path) {
    if (!m || !m->trace) return 1;
    /* Built in memory, then written as every user-named file is (fileio.h): links followed, atomically. */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return fail(m, "%s: cannot write the trace: %s", path, strerror(errno));
    int64_t n = atomic_load(&m->ntrace);
    if (n > m->trace_cap) n = m->trace_cap;
    fprintf(f, "{\"displayTimeUnit\": \"ms\", \"traceEvents\": [\n");
    fprintf(f, "{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": 1, \"args\": {\"name\": \"%s\"}}", m->d->name);
    for (int64_t i = 0; i < n; i++) {
        const trace_event *e = &m->trace[i];
        char name[64];
        if (e->stage >= 0) snprintf(name, sizeof name, "stage %d", e->stage);
        else snprintf(name, sizeof name, "%s", m->d->name);
        fprintf(f, ",\n{\"name\": \"%s\", \"cat\": \"pnet\", \"ph\": \"X\", \"pid\": 1, \"tid\": %d, \"ts\": %.3f, "
                   "\"dur\": %.3f, \"args\": {\"stage\": %d, \"microbatch\": %lld, \"replica\": %d, \"samples\": %lld}}",
                name, e->thread, e->begin * 1e6, (e->end - e->begin) * 1e6, e->stage,
                (long long)e->microbatch, e->replica, (long long)e->samples);
    }
    fprintf(f, "\n]}\n");
    bool bad = ferror(f) != 0;
    bad |= fclose(f) != 0;
    char err[512];
    int rc = bad ? fail(m, "%s: cannot write the trace: out of memory", path)
             : pnetrt_io_write_atomic(path, 1, (const void *const *)&text, &len, err, sizeof err) ? trace_fail(m, path, err)
                                                                                                   : 0;
    free(text);
    return rc;
}

double pnetrt_predicted_bubble(const pnetrt_model *m, int64_t *streamed) {
    if (!m || m->last_wall <= 0 || m->d->nstages < 2 || m->last_stream < 1) return -1;
    double S = (double)m->d->nstages, Q = (double)m->last_stream;
    if (streamed) *streamed = m->last_stream;
    return (S - 1) / (Q + S - 1);
}

double pnetrt_measured_bubble(const pnetrt_model *m) {
    if (!m || m->last_wall <= 0 || m->d->nstages < 2) return -1;
    int S = (int)m->d->nstages < PNETRT_MAX_STAGES ? (int)m->d->nstages : PNETRT_MAX_STAGES;
    double idle = 0;
    for (int s = 0; s < S; s++) idle += 1.0 - m->busy[s] / m->last_wall;
    return idle / S;
}

static int set_schedule(pnetrt_model *m, const char *schedule) {
    if (!schedule) return fail(m, "no schedule given; expected serial, batch, pipeline or hybrid");
    if (strcmp(schedule, "serial") == 0) return set_threads(m, 1) || set_replicas(m, 1) || set_pipeline(m, false);
    if (strcmp(schedule, "batch") == 0) return set_pipeline(m, false);
    if ((!strcmp(schedule, "pipeline") || !strcmp(schedule, "hybrid")) && m->d && m->d->nstages <= 1)
        note(m, strcmp(schedule, "pipeline") ? "the hybrid schedule runs as batch-parallel: the network has no pipeline stages"
                                             : "the pipeline schedule has no effect: the network has no pipeline stages");
    if (strcmp(schedule, "pipeline") == 0) return set_pipeline(m, true) || set_replicas(m, 1);
    if (strcmp(schedule, "hybrid") == 0) return set_pipeline(m, true);
    return fail(m, "unknown schedule '%s'; expected serial, batch, pipeline or hybrid", schedule);
}

int pnetrt_set_schedule(pnetrt_model *m, const char *schedule) {
    if (!m) return 1;
    pnetrt_lock(m);
    return pnetrt_unlock(m, set_schedule(m, schedule));
}
bool pnetrt_pipelined(const pnetrt_model *m) { return m && m->pipeline; }

/* Small calls run on fewer threads: each thread should get PNETRT_FLOPS_PER_THREAD of work to pay
 * for the barriers between kernels (on a busy machine, each barrier may wait for a thread the
 * scheduler has not run yet). Results do not depend on the count. */
int pnetrt_work_threads(const pnetrt_model *m, double flops, int threads) {
    if (!m->adaptive || flops >= PNETRT_FLOPS_PER_THREAD * threads) return threads;
    return flops < PNETRT_FLOPS_PER_THREAD ? 1 : (int)(flops / PNETRT_FLOPS_PER_THREAD);
}

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
    if (m->owns_params) free(m->params);
    for (int i = 0; i < m->narenas; i++) free(m->arenas[i]);
    free(m->arenas);
    for (int i = 0; i < m->nslots; i++) free(m->slots[i]);
    free(m->slots);
    free(m->hand);
    free(m->scratch);
    free(m->stage_flops);
    free(m->stage_shares);
    if (m->trainer) m->trainer_free(m->trainer);
    if (m->owns_comm) pnetrt_comm_free(m->comm);
    pthread_mutex_destroy(&m->lock);
    if (tls_error.id == m->id) tls_error.id = 0;
    free(m);
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

static void trace_add(pnetrt_model *m, double b, double e, int stage, int replica, int64_t mb, int64_t n) {
    if (!m->trace) return;
    int64_t i = atomic_fetch_add_explicit(&m->ntrace, 1, memory_order_relaxed);
    if (i < m->trace_cap) m->trace[i] = (trace_event){b - m->t0, e - m->t0, omp_get_thread_num(), stage, replica, mb, n};
}

typedef struct run_ctx {
    pnetrt_model *m;
    int64_t batch;
    const void *const *inputs;
    void *const *outputs;
    int replicas, groups;
} run_ctx;

/* The caller's buffers at sample `first`: batched tensors move, batch-independent ones do not. */
static void slice_io(const run_ctx *rc, int64_t first, const void **in, void **out) {
    const pnetrt_desc *d = rc->m->d;
    for (int64_t i = 0; i < d->ninputs; i++) {
        const pnetrt_tensor_desc *t = &d->inputs[i];
        in[i] = (const char *)rc->inputs[i] + (t->shape[0] < 0 ? first * pnetrt_sample_elems(t) * 4 : 0);
    }
    for (int64_t i = 0; i < d->noutputs; i++) {
        const pnetrt_tensor_desc *t = &d->outputs[i];
        out[i] = (char *)rc->outputs[i] + (t->shape[0] < 0 ? first * pnetrt_sample_elems(t) * 4 : 0);
    }
}

/* Replica r's shard of the batch, [B*r/R, B*(r+1)/R), chunk by chunk through the forward
 * function on the calling thread's group (local index ith of nth), with the group's arena. */
static void run_replica(const run_ctx *rc, int r, char *arena, char *scratch, int ith, int nth) {
    const pnetrt_desc *d = rc->m->d;
    int64_t s0 = rc->batch * r / rc->replicas, s1 = rc->batch * (r + 1) / rc->replicas;
    const void *in[d->ninputs + 1]; /* at most PNETRT_MAX_IO each (pnetrt_infer) */
    void *out[d->noutputs + 1];
    for (int64_t s = s0; s < s1; s += d->chunk) {
        int64_t n = s1 - s < d->chunk ? s1 - s : d->chunk;
        slice_io(rc, s, in, out);
        pnetrt_call call = {n, in, out, rc->m->prepared, arena, scratch, d->chunk};
        double b = rc->m->trace ? now_s() : 0;
        d->forward(&call, ith, nth);
        pnetrt_barrier(); /* the group's arena is reused by the next chunk */
        if (rc->m->trace) trace_add(rc->m, b, now_s(), -1, r, (s - s0) / d->chunk, n);
    }
}

/* One thread's part of a pipeline: stage s of replica group rg (local index ith of nth). The
 * group walks every micro-batch of its replicas' shards in order: micro-batch q of a chunk is
 * a slice of it, lives in arena slot q mod M, and passes between stages through the hand-off
 * (transport.h): stage s starts q once stage s-1 has finished it, and stage 0 reuses a slot once
 * the last stage has finished the micro-batch before it there. GPipe: fill, stream, drain. */
static void run_stage(const run_ctx *rc, int rg, int ngroups, int s, int ith, int nth, pnetrt_handoff *h,
                      char *scratch) {
    pnetrt_model *m = rc->m;
    const pnetrt_desc *d = m->d;
    int M = m->microbatches;
    const void *in[d->ninputs + 1]; /* at most PNETRT_MAX_IO each (pnetrt_infer) */
    void *out[d->noutputs + 1];
    int64_t q = 0, streamed = 0;
    for (int r = rg; r < rc->replicas; r += ngroups) {
        int64_t s0 = rc->batch * r / rc->replicas, s1 = rc->batch * (r + 1) / rc->replicas;
        for (int64_t c0 = s0; c0 < s1; c0 += d->chunk) {
            int64_t cn = s1 - c0 < d->chunk ? s1 - c0 : d->chunk;
            for (int mb = 0; mb < M; mb++, q++) {
                int64_t a = c0 + cn * mb / M, n = c0 + cn * (mb + 1) / M - a;
                pnetrt_handoff_wait(h, PNETRT_FORWARD, s, q);
                if (n > 0) {
                    slice_io(rc, a, in, out);
                    pnetrt_call call = {n, in, out, m->prepared, m->slots[rg * M + (int)(q % M)], scratch, m->slot_cap};
                    double b = now_s();
                    d->stage_forward[s](&call, ith, nth);
                    pnetrt_barrier();
                    double e = now_s();
                    if (ith == 0 && rg == 0) m->busy[s] += e - b;
                    trace_add(m, b, e, s, r, q, n);
                    streamed++;
                }
                if (ith == 0) pnetrt_handoff_post(h, PNETRT_FORWARD, s, q);
            }
        }
    }
    if (ith == 0 && rg == 0 && s == 0) m->last_stream = streamed;
}

/* Threads for each stage of one pipeline: one each, then one at a time to the stage with the most
 * work per thread, so that the slowest stage is as fast as whole threads allow. The work is the
 * stage's FLOPs, or the user's shares (pnetrt_set_stage_threads), which then come out exactly
 * when the pipeline has as many threads as the shares add up to. */
void pnetrt_share_threads(const pnetrt_model *m, int threads, int S, int *count) {
    for (int s = 0; s < S; s++) count[s] = 1;
    for (int left = threads - S; left > 0; left--) {
        int best = 0;
        double most = -1;
        for (int s = 0; s < S; s++) {
            double w = m->stage_shares ? (double)m->stage_shares[s] : m->stage_flops[s];
            if (w / count[s] > most) most = w / count[s], best = s;
        }
        count[best]++;
    }
}

/* The replica count of a call when neither the network (@shard(batch, R)) nor the user chose one:
 * batch-parallel for large batches, intra-op (one replica on the whole team) for small ones. A
 * replica streams every weight once per chunk, so a shard's chunk must bring enough FLOPs per
 * weight byte (far more when the weights live in memory, not the caches) and enough work for a
 * thread. The count divides the team, so the replica groups are equal. Results do not depend on it. */
static int auto_replicas(const pnetrt_model *m, int64_t batch, int team) {
    const pnetrt_desc *d = m->d;
    if (team <= 1 || m->flops_per_sample <= 0) return 1;
    double weight_bytes = 4.0 * (double)d->param_floats;
    double per_byte = weight_bytes > PNETRT_CACHED_WEIGHTS ? PNETRT_SHARD_FLOPS_PER_DRAM_BYTE : PNETRT_SHARD_FLOPS_PER_BYTE;
    double min_chunk = per_byte * weight_bytes / m->flops_per_sample; /* samples per chunk, for the weights */
    double min_shard = PNETRT_FLOPS_PER_THREAD / m->flops_per_sample;  /* samples per shard, for the work */
    if (min_shard < PNETRT_MIN_SHARD) min_shard = PNETRT_MIN_SHARD;
    int best = 1;
    for (int r = 2; r <= team && r <= m->narenas; r++) {
        int64_t shard = batch / r, chunk = shard < d->chunk ? shard : d->chunk;
        if (team % r == 0 && (double)shard >= min_shard && (double)chunk >= min_chunk) best = r;
    }
    return best;
}

static int infer(pnetrt_model *m, int64_t batch, const void *const *inputs, void *const *outputs) {
    const pnetrt_desc *d = m->d;
    if (!pnetrt_ready(m)) return 1;
    if (batch < 0) return fail(m, "batch size %lld is negative", (long long)batch);
    if (batch == 0) return 0; /* nothing to read or write: NULL buffers will do */
    if (pnetrt_check_batch(m, batch, d->inputs, d->ninputs) || pnetrt_check_batch(m, batch, d->outputs, d->noutputs))
        return 1;
    if (!inputs && d->ninputs) return fail(m, "no input buffers");
    if (!outputs && d->noutputs) return fail(m, "no output buffers");
    for (int64_t i = 0; i < d->ninputs; i++)
        if (!inputs[i]) return fail(m, "input '%s' is NULL", d->inputs[i].name);
    for (int64_t i = 0; i < d->noutputs; i++)
        if (!outputs[i]) return fail(m, "output '%s' is NULL", d->outputs[i].name);
    if (check_ids(m, batch, inputs)) return 1;
    if (m->stale) {
        if (d->prepare && m->prepared != m->params) d->prepare(m->params, m->prepared);
        m->stale = false;
    }
    if (d->ninputs > PNETRT_MAX_IO || d->noutputs > PNETRT_MAX_IO)
        return fail(m, "%lld inputs and %lld outputs: a network has at most %d of each", (long long)d->ninputs,
                    (long long)d->noutputs, PNETRT_MAX_IO);
    int threads = pnetrt_call_threads(m);
    if (threads > m->scratch_threads) threads = m->scratch_threads;
    /* Small calls run on fewer threads: each thread should get enough work to pay for the
     * barriers between kernels. Results do not depend on the count. */
    int team = pnetrt_work_threads(m, m->flops_per_sample * (double)batch, threads);
    int S = (int)d->nstages;
    bool piped = m->pipeline && S > 1 && S <= PNETRT_MAX_STAGES;
    int replicas = pnetrt_replicas_picked(m) && !piped ? auto_replicas(m, batch, team) : m->replicas;
    m->last_replicas = replicas;
    m->last_team = team;
    int groups = group_count(team, replicas);
    if (groups > m->narenas) groups = m->narenas;
    run_ctx rc = {m, batch, inputs, outputs, replicas, groups};
    int pg = piped ? pipe_groups(team, replicas, S) : 0;
    if (pg * m->microbatches > m->nslots) pg = m->nslots / m->microbatches;
    if (pg > m->nhand) pg = m->nhand;
    if (pg >= 1) {
        /* Pipeline: pg replica groups, each with a thread group per stage. */
        int per = team / pg, count[PNETRT_MAX_STAGES];
        pnetrt_share_threads(m, per, S, count); /* once, before the team reads it */
        pnetrt_spin_barrier bars[PNETRT_MAX_GROUPS];
        pnetrt_handoff *hand = m->hand;
        for (int i = 0; i < pg; i++) pnetrt_handoff_init(&hand[i], S, m->microbatches, false);
        for (int i = 0; i < PNETRT_MAX_STAGES; i++) m->busy[i] = 0;
        double wall0 = now_s();
#pragma omp parallel num_threads(pg * per)
        {
            int t = omp_get_thread_num();
            int nth = omp_get_num_threads();
            if (nth != pg * per) {
                /* The OpenMP runtime gave fewer threads: one runs every stage in turn. */
                if (t == 0) {
                    pnetrt_barrier_bind(NULL);
                    for (int r = 0; r < replicas; r++) run_replica(&rc, r, m->arenas[0], m->scratch, 0, 1);
                }
            } else {
                int rg = t / per, k = t % per;
                int s = 0, first = 0;
                while (k >= first + count[s]) first += count[s++];
                if (k == first) bars[rg * S + s] = PNETRT_BARRIER(count[s]);
#pragma omp barrier
                pnetrt_barrier_bind(&bars[rg * S + s]);
                char *scratch = m->scratch + (size_t)(rg * per + first) * (size_t)d->scratch_bytes;
                run_stage(&rc, rg, pg, s, k - first, count[s], &hand[rg], scratch);
                pnetrt_barrier_bind(NULL);
            }
        }
        m->last_wall = now_s() - wall0;
        return 0;
    }
    m->last_wall = 0;
    if (team <= 1) {
        pnetrt_barrier_bind(NULL);
        for (int r = 0; r < replicas; r++) run_replica(&rc, r, m->arenas[0], m->scratch, 0, 1);
        return 0;
    }
    pnetrt_spin_barrier bars[PNETRT_MAX_GROUPS];
#pragma omp parallel num_threads(team)
    {
        /* Thread t joins group g; the groups split the team as evenly as it allows. */
        int nth = omp_get_num_threads(), t = omp_get_thread_num();
        int ng = groups < nth ? groups : nth;
        int base = nth / ng, extra = nth % ng;
        int g = t < extra * (base + 1) ? t / (base + 1) : extra + (t - extra * (base + 1)) / base;
        int first = g < extra ? g * (base + 1) : extra * (base + 1) + (g - extra) * base;
        int size = base + (g < extra);
        if (t == first) bars[g] = PNETRT_BARRIER(size);
#pragma omp barrier
        pnetrt_barrier_bind(&bars[g]);
        char *scratch = m->scratch + (size_t)first * (size_t)d->scratch_bytes;
        for (int r = g; r < replicas; r += ng) run_replica(&rc, r, m->arenas[g], scratch, t - first, size);
        pnetrt_barrier_bind(NULL);
    }
    return 0;
}

/* On ranks (comm.h), each computes its contiguous share of the batch, first[r] to first[r + 1], from
 * the whole batch's inputs that every rank holds, and the ranks all-gather the outputs, so that
 * every rank returns the whole batch's outputs: those of one process, bit for bit. */
static int ranked_infer(pnetrt_model *m, int64_t batch, const void *const *inputs, void *const *outputs) {
    const pnetrt_desc *d = m->d;
    pnetrt_comm *comm = m->comm;
    int K = pnetrt_comm_size(comm), me = pnetrt_comm_rank(comm);
    if (K < 2 || batch < 1 || !inputs || !outputs || !m->ready) return infer(m, batch, inputs, outputs);
    int64_t first[K + 1];
    for (int k = 0; k <= K; k++) first[k] = batch * k / K;
    int64_t lo = first[me], n = first[me + 1] - lo;
    const void *in[d->ninputs > 0 ? d->ninputs : 1];
    void *out[d->noutputs > 0 ? d->noutputs : 1];
    for (int64_t i = 0; i < d->ninputs; i++) {
        const pnetrt_tensor_desc *t = &d->inputs[i];
        bool batched = t->rank > 0 && t->shape[0] < 0;
        in[i] = inputs[i] && batched ? (const char *)inputs[i] + lo * pnetrt_sample_elems(t) * 4 : inputs[i];
    }
    for (int64_t o = 0; o < d->noutputs; o++) {
        const pnetrt_tensor_desc *t = &d->outputs[o];
        bool batched = t->rank > 0 && t->shape[0] < 0;
        out[o] = outputs[o] && batched ? (char *)outputs[o] + lo * pnetrt_sample_elems(t) * 4 : outputs[o];
    }
    int rc = infer(m, n, in, out);
    if (!pnetrt_comm_all_ok(comm, rc == 0)) return rc ? rc : fail(m, "another rank failed in this inference call");
    /* An output without a batch axis comes from the last rank, which always has samples. */
    int64_t last[K + 1];
    for (int k = 0; k <= K; k++) last[k] = k == K;
    for (int64_t o = 0; o < d->noutputs; o++) {
        const pnetrt_tensor_desc *t = &d->outputs[o];
        bool batched = t->rank > 0 && t->shape[0] < 0;
        if (pnetrt_comm_allgather_bytes(comm, outputs[o], pnetrt_sample_elems(t) * 4, batched ? first : last, m->err,
                                        sizeof m->err))
            return 1;
    }
    return 0;
}

int pnetrt_infer(pnetrt_model *m, int64_t batch, const void *const *inputs, void *const *outputs) {
    if (!m) return 1;
    pnetrt_lock(m);
    return pnetrt_unlock(m, ranked_infer(m, batch, inputs, outputs));
}
