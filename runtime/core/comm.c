/* The ranks of a distributed run (comm.h): Open MPI when libpnetrt was built with it
 * (PNET_HAVE_MPI), one rank otherwise. Communication is called by one thread of a team at a time
 * (MPI_THREAD_SERIALIZED) while the others wait at a barrier. */
#include "comm.h"
#include "wait.h"

#include <limits.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef PNET_HAVE_MPI
#include <mpi.h>

/* The gradient exchange's tags: piece j of a rank's partial sums goes as EXCHANGE_TAG + j (j < 128,
 * and MPI guarantees tags up to 32767). */
enum { EXCHANGE_TAG = 20000 };
#endif

static _Atomic double comm_seconds; /* written by the communicating thread only */

__attribute__((unused)) /* the one-rank build has no communication to time */
static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

double pnetrt_comm_seconds(void) { return atomic_load(&comm_seconds); }

bool pnetrt_comm_launched(void) {
    /* Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE; PMIx launchers (srun, prterun) set PMIX_RANK. */
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK");
}

#ifdef PNET_HAVE_MPI

struct pnetrt_comm {
    MPI_Comm comm;
    int rank, size;
    bool world; /* the process default: never freed */
};

static pnetrt_comm world;
static bool have_world;

bool pnetrt_comm_built(void) { return true; }

static void finalize(void) {
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) MPI_Finalize();
}

static void mpi_error(int code, char *err, size_t n, const char *what) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "error %d", code);
    snprintf(err, n, "%s failed: %s", what, msg);
}

int pnetrt_comm_init_process(char *err, size_t n) {
    if (have_world) return 0;
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        int provided = 0;
        int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
        if (rc != MPI_SUCCESS) {
            snprintf(err, n, "MPI_Init_thread failed (error %d)", rc);
            return 1;
        }
        atexit(finalize);
        if (provided < MPI_THREAD_SERIALIZED) {
            snprintf(err, n, "this MPI library provides thread level %d; pnet needs MPI_THREAD_SERIALIZED", provided);
            return 1;
        }
    }
    /* Errors are returned, not fatal, so that each is reported with the rank that saw it. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    world.comm = MPI_COMM_WORLD;
    MPI_Comm_rank(world.comm, &world.rank);
    MPI_Comm_size(world.comm, &world.size);
    world.world = true;
    have_world = true;
    /* Ranks on one node share its cores. */
    const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    if (!getenv("OMP_NUM_THREADS") && local) {
        long ranks = strtol(local, NULL, 10);
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        if (ranks > 0 && cores > 0) omp_set_num_threads((int)(cores / ranks > 0 ? cores / ranks : 1));
    }
    return 0;
}

pnetrt_comm *pnetrt_comm_default(void) { return have_world && world.size > 1 ? &world : NULL; }

pnetrt_comm *pnetrt_comm_wrap(const void *mpi_comm) {
    pnetrt_comm *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    if (MPI_Comm_dup(*(const MPI_Comm *)mpi_comm, &c->comm) != MPI_SUCCESS) {
        free(c);
        return NULL;
    }
    MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(c->comm, &c->rank);
    MPI_Comm_size(c->comm, &c->size);
    return c;
}

void pnetrt_comm_free(pnetrt_comm *c) {
    if (!c || c->world) return;
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) MPI_Comm_free(&c->comm);
    free(c);
}

int pnetrt_comm_rank(const pnetrt_comm *c) { return c ? c->rank : 0; }
int pnetrt_comm_size(const pnetrt_comm *c) { return c ? c->size : 1; }

int pnetrt_comm_allgather_bytes(pnetrt_comm *c, void *base, int64_t unit, const int64_t *first, char *err, size_t n) {
    if (!c || c->size < 2) return 0;
    if (unit <= 0 || unit > INT_MAX) {
        snprintf(err, n, "a gathered item of %lld bytes is too large for one message", (long long)unit);
        return 1;
    }
    int counts[c->size], displs[c->size];
    for (int r = 0; r < c->size; r++) {
        if (first[r + 1] - first[r] > INT_MAX || first[r] > INT_MAX) {
            snprintf(err, n, "too many items (%lld) to gather", (long long)first[c->size]);
            return 1;
        }
        counts[r] = (int)(first[r + 1] - first[r]);
        displs[r] = (int)first[r];
    }
    MPI_Datatype item;
    if (MPI_Type_contiguous((int)unit, MPI_BYTE, &item) != MPI_SUCCESS || MPI_Type_commit(&item) != MPI_SUCCESS) {
        snprintf(err, n, "cannot make an MPI datatype of %lld bytes", (long long)unit);
        return 1;
    }
    double t0 = now_s();
    int rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, base, counts, displs, item, c->comm);
    atomic_store(&comm_seconds, atomic_load(&comm_seconds) + now_s() - t0);
    MPI_Type_free(&item);
    if (rc != MPI_SUCCESS) {
        mpi_error(rc, err, n, "gathering the ranks' gradients");
        return 1;
    }
    return 0;
}

int pnetrt_comm_allgather_chunks(pnetrt_comm *c, float *base, int64_t stride, const int64_t *first, char *err,
                                 size_t n) {
    if (!c || c->size < 2 || stride == 0) return 0;
    if (stride > INT_MAX / 4) {
        /* Items of a quarter of a gigabyte or more: gather float by float in units that fit. */
        int64_t f[c->size + 1];
        for (int r = 0; r <= c->size; r++) f[r] = first[r] * stride;
        return pnetrt_comm_allgather_bytes(c, base, 4, f, err, n);
    }
    return pnetrt_comm_allgather_bytes(c, base, stride * 4, first, err, n);
}

int pnetrt_comm_exchange_slices(pnetrt_comm *c, float *const *bufs, const int *nb, const int64_t *e, float *recv,
                                char *err, size_t n) {
    if (!c || c->size < 2) return 0;
    int K = c->size, me = c->rank, rc = MPI_SUCCESS;
    int64_t mine = e[me + 1] - e[me], at = 0, msgs = 0;
    for (int r = 0; r < K; r++) {
        if (r == me) continue;
        if (e[r + 1] - e[r] > INT_MAX || mine > INT_MAX) {
            snprintf(err, n, "a slice of %lld gradient elements is too large for one message",
                     (long long)(mine > INT_MAX ? mine : e[r + 1] - e[r]));
            return 1;
        }
        msgs += nb[r] + nb[me];
    }
    /* Each piece is one contiguous message (tags EXCHANGE_TAG + j apart from the stages' and the
     * checkpoints'), so that ranks on one node copy it once, straight from the sender's buffer; this
     * rank's own pieces stay where they are. */
    MPI_Request req[msgs > 0 ? msgs : 1];
    int q = 0;
    for (int r = 0; r < K && rc == MPI_SUCCESS; r++) {
        if (r == me) continue;
        for (int j = 0; j < nb[r] && rc == MPI_SUCCESS; j++, at += mine)
            rc = MPI_Irecv(recv + at, (int)mine, MPI_FLOAT, r, EXCHANGE_TAG + j, c->comm, &req[q++]);
        for (int j = 0; j < nb[me] && rc == MPI_SUCCESS; j++)
            rc = MPI_Isend(bufs[j] + e[r], (int)(e[r + 1] - e[r]), MPI_FLOAT, r, EXCHANGE_TAG + j, c->comm, &req[q++]);
    }
    if (rc == MPI_SUCCESS) {
        double t0 = now_s();
        rc = q > 0 ? MPI_Waitall(q, req, MPI_STATUSES_IGNORE) : MPI_SUCCESS;
        atomic_store(&comm_seconds, atomic_load(&comm_seconds) + now_s() - t0);
    }
    if (rc != MPI_SUCCESS) mpi_error(rc, err, n, "exchanging the ranks' gradients");
    return rc != MPI_SUCCESS;
}

bool pnetrt_comm_all_ok(pnetrt_comm *c, bool ok) {
    if (!c || c->size < 2) return ok;
    int mine = ok ? 0 : 1, any = 1;
    double t0 = now_s();
    int rc = MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, c->comm);
    atomic_store(&comm_seconds, atomic_load(&comm_seconds) + now_s() - t0);
    return rc == MPI_SUCCESS && any == 0;
}

int pnetrt_comm_compare_u64(pnetrt_comm *c, uint64_t v, bool *mine) {
    *mine = false;
    if (!c || c->size < 2) return 0;
    uint64_t root = v;
    if (MPI_Bcast(&root, 1, MPI_UINT64_T, 0, c->comm) != MPI_SUCCESS) return c->size;
    int differ = root != v, total = 0;
    *mine = differ;
    if (MPI_Allreduce(&differ, &total, 1, MPI_INT, MPI_SUM, c->comm) != MPI_SUCCESS) return c->size;
    return total;
}

static int gather_self(const char *mine, size_t n, char **all, size_t *total) {
    *all = malloc(n + 1);
    if (!*all) return 1;
    memcpy(*all, mine, n);
    *total = n;
    return 0;
}

int pnetrt_comm_gather_text(pnetrt_comm *c, const char *mine, size_t n, char **all, size_t *total) {
    *all = NULL;
    *total = 0;
    if (!c || c->size < 2) return gather_self(mine, n, all, total);
    if (n > INT_MAX) return 1;
    int len = (int)n, K = c->size;
    int lens[K], displs[K];
    if (MPI_Gather(&len, 1, MPI_INT, lens, 1, MPI_INT, 0, c->comm) != MPI_SUCCESS) return 1;
    int64_t sum = 0;
    if (c->rank == 0)
        for (int r = 0; r < K; r++) {
            displs[r] = (int)sum;
            sum += lens[r];
        }
    bool fits = sum <= INT_MAX;
    char *buf = c->rank == 0 && fits ? malloc((size_t)sum + 1) : NULL;
    int ok = c->rank != 0 || buf;
    MPI_Bcast(&ok, 1, MPI_INT, 0, c->comm);
    if (!ok) return 1;
    if (MPI_Gatherv(mine, len, MPI_CHAR, buf, lens, displs, MPI_CHAR, 0, c->comm) != MPI_SUCCESS) {
        free(buf);
        return 1;
    }
    *all = buf;
    *total = (size_t)sum;
    return 0;
}

void pnetrt_comm_barrier(pnetrt_comm *c) {
    if (c && c->size > 1) MPI_Barrier(c->comm);
}

int pnetrt_comm_gather_f64(pnetrt_comm *c, double v, double *out) {
    if (!c || c->size < 2) {
        if (out) out[0] = v;
        return 0;
    }
    return MPI_Gather(&v, 1, MPI_DOUBLE, out, 1, MPI_DOUBLE, 0, c->comm) != MPI_SUCCESS;
}

_Noreturn void pnetrt_comm_abort(pnetrt_comm *c, int code) {
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(c ? c->comm : MPI_COMM_WORLD, code);
    _exit(code);
}

pnetrt_comm *pnetrt_comm_split(pnetrt_comm *c, int color, int key) {
    if (!c) return NULL;
    pnetrt_comm *out = calloc(1, sizeof *out);
    if (!out) return NULL;
    if (MPI_Comm_split(c->comm, color, key, &out->comm) != MPI_SUCCESS) {
        free(out);
        return NULL;
    }
    MPI_Comm_set_errhandler(out->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(out->comm, &out->rank);
    MPI_Comm_size(out->comm, &out->size);
    return out;
}

struct pnetrt_msgs {
    int n, cap;
    MPI_Request req[];
};

pnetrt_msgs *pnetrt_msgs_new(int cap) {
    pnetrt_msgs *q = calloc(1, sizeof *q + (size_t)(cap > 0 ? cap : 1) * sizeof(MPI_Request));
    if (q) q->cap = cap > 0 ? cap : 1;
    return q;
}

void pnetrt_msgs_free(pnetrt_msgs *q) { free(q); }

static int post(pnetrt_comm *c, void *buf, int64_t bytes, int peer, int tag, pnetrt_msgs *q, bool send, char *err,
                size_t n) {
    if (!c || c->size < 2) {
        snprintf(err, n, "no other rank to %s", send ? "send to" : "receive from");
        return 1;
    }
    if (bytes < 0 || bytes > INT_MAX) {
        snprintf(err, n, "a message of %lld bytes is too large (at most %d): use more micro-batches", (long long)bytes,
                 INT_MAX);
        return 1;
    }
    if (q->n == q->cap) {
        snprintf(err, n, "too many pending messages (%d)", q->cap);
        return 1;
    }
    int rc = send ? MPI_Isend(buf, (int)bytes, MPI_BYTE, peer, tag, c->comm, &q->req[q->n])
                  : MPI_Irecv(buf, (int)bytes, MPI_BYTE, peer, tag, c->comm, &q->req[q->n]);
    if (rc != MPI_SUCCESS) {
        mpi_error(rc, err, n, send ? "sending a stage's values" : "receiving a stage's values");
        return 1;
    }
    q->n++;
    return 0;
}

int pnetrt_comm_isend(pnetrt_comm *c, const void *buf, int64_t bytes, int to, int tag, pnetrt_msgs *q, char *err,
                      size_t n) {
    return post(c, (void *)buf, bytes, to, tag, q, true, err, n);
}

int pnetrt_comm_irecv(pnetrt_comm *c, void *buf, int64_t bytes, int from, int tag, pnetrt_msgs *q, char *err,
                      size_t n) {
    return post(c, buf, bytes, from, tag, q, false, err, n);
}

int pnetrt_msgs_wait(pnetrt_msgs *q, char *err, size_t n) {
    if (!q || !q->n) return 0;
    double t0 = now_s();
    /* Poll, then sleep between polls while the machine is oversubscribed: MPI_Waitall spins, and
     * on a machine with more ranks than cores (or a busy one) a spinning rank takes the core the
     * rank it waits for needs. The sleep doubles from 2 us up to 1 ms, so a long wait costs few
     * polls and a short one little delay. On a machine with a core for every runnable thread
     * (wait.h) it polls on, for up to 50 ms: a stage's wait for the next micro-batch lasts about
     * one micro-batch's compute (milliseconds), and the sleep it overshot by up to a millisecond
     * (the pipeline's bubble on 2 ranks grew from 21% to 27%). */
    int rc, done = 0;
    long sleep_ns = 2000;
    bool polling = true; /* asked every 64 polls, and after each sleep */
    for (int polls = 0;; polls++) {
        rc = MPI_Testall(q->n, q->req, &done, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS || done) break;
        if (polls < 64) continue;
        if (!polling || (polls & 63) == 0) polling = !pnetrt_machine_oversubscribed() && now_s() - t0 < PNETRT_QUIET_SPIN_S;
        if (polling) continue;
        struct timespec ts = {0, sleep_ns};
        nanosleep(&ts, NULL);
        if (sleep_ns < 1000000) sleep_ns *= 2;
    }
    atomic_store(&comm_seconds, atomic_load(&comm_seconds) + now_s() - t0);
    q->n = 0;
    if (rc != MPI_SUCCESS) {
        mpi_error(rc, err, n, "a stage's messages");
        return 1;
    }
    return 0;
}

#else /* one rank */

struct pnetrt_comm {
    int unused;
};

bool pnetrt_comm_built(void) { return false; }
int pnetrt_comm_init_process(char *err, size_t n) {
    snprintf(err, n, "this libpnetrt was built without MPI; rebuild it with libopenmpi-dev installed to run under mpirun");
    return 1;
}
pnetrt_comm *pnetrt_comm_default(void) { return NULL; }
pnetrt_comm *pnetrt_comm_wrap(const void *mpi_comm) { return (void)mpi_comm, NULL; }
void pnetrt_comm_free(pnetrt_comm *c) { (void)c; }
int pnetrt_comm_rank(const pnetrt_comm *c) { return (void)c, 0; }
int pnetrt_comm_size(const pnetrt_comm *c) { return (void)c, 1; }
int pnetrt_comm_allgather_chunks(pnetrt_comm *c, float *base, int64_t stride, const int64_t *first, char *err,
                                 size_t n) {
    (void)c, (void)base, (void)stride, (void)first, (void)err, (void)n;
    return 0;
}
int pnetrt_comm_allgather_bytes(pnetrt_comm *c, void *base, int64_t unit, const int64_t *first, char *err, size_t n) {
    (void)c, (void)base, (void)unit, (void)first, (void)err, (void)n;
    return 0;
}
int pnetrt_comm_exchange_slices(pnetrt_comm *c, float *const *bufs, const int *nb, const int64_t *e, float *recv,
                                char *err, size_t n) {
    (void)c, (void)bufs, (void)nb, (void)e, (void)recv, (void)err, (void)n;
    return 0;
}
bool pnetrt_comm_all_ok(pnetrt_comm *c, bool ok) { return (void)c, ok; }
int pnetrt_comm_compare_u64(pnetrt_comm *c, uint64_t v, bool *mine) { return (void)c, (void)v, *mine = false, 0; }
int pnetrt_comm_gather_text(pnetrt_comm *c, const char *mine, size_t n, char **all, size_t *total) {
    (void)c;
    *all = malloc(n + 1);
    if (!*all) return 1;
    memcpy(*all, mine, n);
    *total = n;
    return 0;
}
void pnetrt_comm_barrier(pnetrt_comm *c) { (void)c; }
int pnetrt_comm_gather_f64(pnetrt_comm *c, double v, double *out) {
    (void)c;
    if (out) out[0] = v;
    return 0;
}
pnetrt_comm *pnetrt_comm_split(pnetrt_comm *c, int color, int key) { return (void)c, (void)color, (void)key, NULL; }
struct pnetrt_msgs {
    int unused;
};
pnetrt_msgs *pnetrt_msgs_new(int cap) { return (void)cap, calloc(1, sizeof(pnetrt_msgs)); }
void pnetrt_msgs_free(pnetrt_msgs *q) { free(q); }
int pnetrt_comm_isend(pnetrt_comm *c, const void *buf, int64_t bytes, int to, int tag, pnetrt_msgs *q, char *err,
                      size_t n) {
    (void)c, (void)buf, (void)bytes, (void)to, (void)tag, (void)q;
    snprintf(err, n, "no other rank to send to");
    return 1;
}
int pnetrt_comm_irecv(pnetrt_comm *c, void *buf, int64_t bytes, int from, int tag, pnetrt_msgs *q, char *err,
                      size_t n) {
    (void)c, (void)buf, (void)bytes, (void)from, (void)tag, (void)q;
    snprintf(err, n, "no other rank to receive from");
    return 1;
}
int pnetrt_msgs_wait(pnetrt_msgs *q, char *err, size_t n) { return (void)q, (void)err, (void)n, 0; }
_Noreturn void pnetrt_comm_abort(pnetrt_comm *c, int code) {
    (void)c;
    fflush(stdout);
    fflush(stderr);
    _exit(code);
}

#endif
