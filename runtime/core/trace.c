/* The Chrome trace of a model's inference calls: set_trace starts recording (or PNET_TRACE at
 * create), the schedules add one slice per stage, micro-batch and replica, and write_trace (or
 * destroy) writes the trace-event JSON. */
#include "trace.h"
#include "comm.h"
#include "model_impl.h"
#include "fileio.h"

#include <omp.h>
#include <time.h>
#include <stdatomic.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double pnetrt_now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* "PATH: cannot write the trace: why", from fileio's "PATH: why". */
static int trace_fail(pnetrt_model *m, const char *path, const char *err) {
    return pnetrt_failf(m, "%s: cannot write the trace: %s", path, pnetrt_io_reason(err, path));
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
    if (!m->trace || !m->trace_path) return pnetrt_failf(m, "cannot allocate the trace buffer");
    /* On ranks (a collective call then) the clocks start together: each rank's events count from
     * the moment all of them left this barrier. */
    pnetrt_comm_barrier(m->comm);
    m->t0 = pnetrt_now_s();
    return 0;
}

/* A slice's name: its stage or part of a training step. */
static void slice_name(const pnetrt_model *m, const trace_event *e, char *name, size_t n) {
    static const char *const parts[] = {"", "forward", "backward", "forward+backward", "segment", "eval", "prep",
                                        "reduce", "sync", "update"};
    if (e->stage == PNETRT_TRACE_MESSAGES) snprintf(name, n, "messages");
    else if (e->kind == PNETRT_TRACE_INFER && e->stage >= 0) snprintf(name, n, "stage %d", e->stage);
    else if (e->kind == PNETRT_TRACE_INFER) snprintf(name, n, "%s", m->d->name);
    else if ((e->kind == PNETRT_TRACE_FORWARD || e->kind == PNETRT_TRACE_BACKWARD) && e->stage >= 0)
        snprintf(name, n, "stage %d %s", e->stage, parts[e->kind]);
    else if (e->kind > 0 && e->kind < (int)(sizeof parts / sizeof parts[0])) snprintf(name, n, "%s", parts[e->kind]);
    else snprintf(name, n, "slice");
}

/* Chrome trace-event JSON (Perfetto, chrome://tracing): one track per thread, one slice per
 * (stage, micro-batch, replica). On ranks (a collective call then), one file from rank 0 with a
 * process per rank (pid = rank, "NET rank R") and, as slices named "messages", the time each
 * rank spent in the calls' communication. */
int pnetrt_write_trace(pnetrt_model *m, const char *path) {
    if (!m || !m->trace) return 1;
    int rank = pnetrt_comm_rank(m->comm), ranks = pnetrt_comm_size(m->comm);
    /* Built in memory, then written as every user-named file is (fileio.h): links followed, atomically. */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return pnetrt_failf(m, "%s: cannot write the trace: %s", path, strerror(errno));
    int64_t n = atomic_load(&m->ntrace);
    if (n > m->trace_cap) n = m->trace_cap;
    int pid = ranks > 1 ? rank : 1;
    if (ranks > 1)
        fprintf(f, ",\n{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": %d, \"args\": {\"name\": \"%s rank %d\"}}", pid,
                m->d->name, rank);
    else
        fprintf(f, ",\n{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": 1, \"args\": {\"name\": \"%s\"}}", m->d->name);
    /* Each thread's track is named after what it ran first: its replica (group), and its stage in a
     * pipeline. Thread ids are OpenMP thread numbers; the slices' args say the rest. */
    int maxtid = -1;
    for (int64_t i = 0; i < n; i++)
        if (m->trace[i].thread > maxtid && m->trace[i].thread < 4096) maxtid = m->trace[i].thread;
    for (int tid = 0; tid <= maxtid; tid++) {
        for (int64_t i = 0; i < n; i++) {
            const trace_event *e = &m->trace[i];
            if (e->thread != tid || e->stage == PNETRT_TRACE_MESSAGES) continue;
            char name[96];
            if (e->stage >= 0) snprintf(name, sizeof name, "thread %d: replica %d, stage %d", tid, e->replica, e->stage);
            else snprintf(name, sizeof name, "thread %d: replica %d", tid, e->replica);
            fprintf(f, ",\n{\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": %d, \"tid\": %d, \"args\": {\"name\": \"%s\"}}", pid,
                    tid, name);
            break;
        }
    }
    for (int64_t i = 0; i < n; i++) {
        const trace_event *e = &m->trace[i];
        char name[64];
        slice_name(m, e, name, sizeof name);
        fprintf(f, ",\n{\"name\": \"%s\", \"cat\": \"pnet\", \"ph\": \"X\", \"pid\": %d, \"tid\": %d, \"ts\": %.3f, "
                   "\"dur\": %.3f, \"args\": {\"stage\": %d, \"microbatch\": %lld, \"replica\": %d, \"samples\": %lld}}",
                name, pid, e->thread, e->begin * 1e6, (e->end - e->begin) * 1e6, e->stage,
                (long long)e->microbatch, e->replica, (long long)e->samples);
    }
    bool bad = ferror(f) != 0;
    bad |= fclose(f) != 0;
    /* Every rank's events, in rank order, to rank 0; each part begins with ",\n". */
    char *all = NULL;
    size_t total = 0;
    bad |= pnetrt_comm_gather_text(m->comm, text ? text : "", text ? len : 0, &all, &total) != 0;
    free(text);
    if (rank != 0) return bad ? pnetrt_failf(m, "%s: cannot send the trace to rank 0", path) : 0;
    char *out = NULL;
    size_t outlen = 0;
    f = bad ? NULL : open_memstream(&out, &outlen);
    if (f) {
        fprintf(f, "{\"displayTimeUnit\": \"ms\", \"traceEvents\": [\n");
        fwrite(all + (total >= 2 ? 2 : total), 1, total >= 2 ? total - 2 : 0, f); /* without the first ",\n" */
        fprintf(f, "\n]}\n");
        bad |= ferror(f) != 0;
        bad |= fclose(f) != 0;
    }
    free(all);
    char err[512];
    int rc = bad || !f ? pnetrt_failf(m, "%s: cannot write the trace: out of memory", path)
             : pnetrt_io_write_atomic(path, 1, (const void *const *)&out, &outlen, err, sizeof err)
                 ? trace_fail(m, path, err)
                 : 0;
    free(out);
    return rc;
}

bool pnetrt_tracing(const pnetrt_model *m) { return m && m->trace; }

void pnetrt_trace_slice(pnetrt_model *m, pnetrt_trace_kind kind, double b, double e, int stage, int replica, int64_t mb,
                        int64_t n) {
    if (!m->trace) return;
    int64_t i = atomic_fetch_add_explicit(&m->ntrace, 1, memory_order_relaxed);
    if (i < m->trace_cap)
        m->trace[i] = (trace_event){b - m->t0, e - m->t0, omp_get_thread_num(), stage, replica, (int)kind, mb, n};
}

void pnetrt_trace_add(pnetrt_model *m, double b, double e, int stage, int replica, int64_t mb, int64_t n) {
    pnetrt_trace_slice(m, PNETRT_TRACE_INFER, b, e, stage, replica, mb, n);
}

