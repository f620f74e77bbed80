/* The command line of generated executables: `./net infer | bench | info`. Every failure is one
 * line naming the file or option and the problem, with exit status 1. */
#include "comm.h"
#include "data.h"
#include "pnetrt_ranks.h"
#include "profile_cli.h"
#include "fileio.h"
#include "io.h"
#include "model.h"
#include "options.h"
#include "rt.h"
#include "train_cli.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static void usage(const pnetrt_desc *d, FILE *f) {
    fprintf(f,
            "usage: %s COMMAND [options]    (each option's value follows it or an '=': --epochs 3, --epochs=3)\n\n"
            "Network '%s', compiled by pnetc for %s.\n\n"
            "commands:\n"
            "  infer --input NAME=FILE.npy ... [--output NAME=FILE.npy ...] [--no-scale] [options]\n"
            "        run the network; without --output, print the outputs as text\n"
            "  bench [--batch N] [--seconds S] [--profile FILE.json] [options]\n"
            "        measure throughput and latency on random inputs; with --profile, time every layer\n"
            "        alone instead and write the seconds per sample for pnetc --profile\n"
            "  info [--ranks K [--batch N]]\n"
            "        print the layers, the memory plan, and the stages and shards; with --ranks, how K ranks\n"
            "        of mpirun share the network: each rank's memory and what it sends (docs/distributed.md)\n"
            "  train --data FILE [--labels FILE] [--val FILE [--val-labels FILE]] [--epochs N] [--batch N]\n"
            "        [--lr X] [--seed S] [--save CKPT.safetensors] [--weights INIT.safetensors] [--resume CKPT]\n"
            "        [--threads N] [--replicas R] [--microbatches M] [--stage-threads N,N,...] [--no-shuffle]\n"
            "        [--label-column first|last|N] [--no-scale] [--trace FILE.json]\n"
            "        train with the network's train { } block (data: CSV, .npy pairs, IDX; gzip or plain;\n"
            "        uint8 samples are divided by 255 unless --no-scale; a CSV row's label is its last column)\n"
            "  eval  --data FILE [--labels FILE] --weights W.safetensors [--batch N] [--label-column C] [--no-scale]\n"
            "        [--trace FILE.json] [--exact]\n"
            "        print accuracy and loss in inference mode (--exact: every digit, and the correct count)\n"
            "  bench --train [--batch N] [--seconds S] [--threads N] [--replicas R] [--trace FILE.json]\n"
            "        measure training throughput on random data\n\n"
            "under mpirun (docs/distributed.md), every command also takes:\n"
            "  --rank-layout L           replicas (every rank runs the whole network) or stages (one pipeline\n"
            "                            stage per rank; the default for a network with stages, and for its\n"
            "                            training and evaluation where its stages train as a pipeline)\n\n"
            "options of infer and bench:\n"
            "  --weights W.safetensors   load these weights (PyTorch names)\n"
            "  --weights-prefix P        their names carry the prefix P: 'model.fc1.weight' for fc1.weight\n"
            "                            with --weights-prefix model. (also for train, eval and bench --train)\n"
            "  --threads N               threads (default: all cores, or OMP_NUM_THREADS)\n"
            "  --replicas R              batch-parallel replicas (default: the network's @shard(batch, R); without\n"
            "                            it, picked per call: intra-op for small batches, replicas for large ones)\n"
            "  --microbatches M          micro-batches per pipeline pass (default: the network's @pipeline)\n"
            "  --stage-threads N,N,...   threads per pipeline stage, as shares (default: by the stages' FLOPs)\n"
            "  --schedule S              serial (one thread), batch (replicas), pipeline (stages on their own\n"
            "                            threads), or hybrid (replicas of pipelines); default: the network's own\n"
            "  --trace FILE.json         write a Chrome trace (Perfetto, chrome://tracing) of the run (train and\n"
            "                            bench --train too: forward, backward, reductions and the update)\n",
            pnetrt_prog, d->name, d->target);
}

static void shape_text(const pnetrt_tensor_desc *t, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "%s[", t->dtype ? "i32" : "f32");
    for (int64_t i = 0; i < t->rank && k < n; i++) {
        if (t->shape[i] < 0) k += (size_t)snprintf(buf + k, n - k, "%sbatch", i ? "," : "");
        else k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)t->shape[i]);
    }
    if (k < n) snprintf(buf + k, n - k, "]");
}

static bool same(const char *s, const char *name, size_t len) { return s && strlen(s) == len && strncmp(s, name, len) == 0; }

/* The tensor named name[0..len): by the model file's own name (an ONNX graph's "input.1"), else by
 * its identifier (input_1); -1 when none is. The file's names come first, so that each of them finds
 * its tensor even where it is another tensor's identifier. */
static int find(const pnetrt_tensor_desc *ts, int64_t n, const char *name, size_t len) {
    for (int64_t i = 0; i < n; i++)
        if (same(ts[i].source_name, name, len)) return (int)i;
    for (int64_t i = 0; i < n; i++)
        if (same(ts[i].name, name, len)) return (int)i;
    return -1;
}

/* Common options: --threads N and --weights FILE. */
typedef struct opts {
    const char *weights, *weights_prefix;
    int threads;
    int replicas;   /* 0: the network's own (@shard(batch, R)) */
    int microbatches; /* 0: the network's own (@pipeline(microbatches = M)) */
    const char *schedule; /* NULL: the network's own */
    const char *trace;    /* Chrome trace-event JSON to write, or NULL */
    int *stage_threads; /* --stage-threads: threads per pipeline stage, nstage_threads of them (malloc'd) */
    int nstage_threads;
    char seen[256]; /* the options given so far, " --a --b " */
} opts;

/* The options every running command takes (common_option). */
static const char *const known[] = {"--threads", "--weights", "--replicas", "--trace", "--microbatches",
                                    "--stage-threads", "--schedule", "--weights-prefix"};

/* The error for an option that infer or bench does not take: the closest of its own (" --a --b ")
 * and the common ones as a suggestion (pnetrt_opt_unknown). */
static int unknown_option(const char *a, const char *own) {
    char all[1024];
    size_t n = (size_t)snprintf(all, sizeof all, "%s", own);
    for (size_t k = 0; k < sizeof known / sizeof known[0] && n < sizeof all; k++)
        n += (size_t)snprintf(all + n, sizeof all - n, "%s ", known[k]);
    return pnetrt_opt_unknown(a, all);
}

/* Options every running command takes: --threads, --weights, --replicas, --schedule. Returns 1
 * when argv[*i] was one (advancing *i), 0 when not, -1 after reporting a bad value. */
static int common_option(opts *o, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    if (*i + 1 >= argc) return 0;
    int which = -1;
    for (int k = 0; k < (int)(sizeof known / sizeof known[0]); k++)
        if (strcmp(a, known[k]) == 0) which = k;
    if (which < 0) return 0;
    if (pnetrt_opt_once(o->seen, sizeof o->seen, a)) return -1;
    const char *s = argv[++*i];
    if (!*s) return pnetrt_die("%s needs a value, not an empty one", a), -1; /* --weights= */
    long long v;
    switch (which) {
    case 0:
        if (pnetrt_opt_int(a, s, 1, 4096, &v)) return -1;
        o->threads = (int)v;
        break;
    case 1: o->weights = s; break;
    case 2:
        if (pnetrt_opt_int(a, s, 1, 4096, &v)) return -1;
        o->replicas = (int)v;
        break;
    case 3: o->trace = s; break;
    case 4:
        if (pnetrt_opt_int(a, s, 1, 65536, &v)) return -1;
        o->microbatches = (int)v;
        break;
    case 5: {
        /* One entry per comma, however many: the network's stage count is checked when the model opens. */
        size_t n = 1;
        for (const char *p = s; *p; p++) n += *p == ',';
        if (n > INT_MAX / 2) return pnetrt_die("--stage-threads gives too many counts (%zu)", n), -1;
        if (!(o->stage_threads = malloc(n * sizeof *o->stage_threads))) return pnetrt_die("out of memory"), -1;
        o->nstage_threads = pnetrt_parse_stage_list(s, o->stage_threads, (int)n);
        if (o->nstage_threads < 0) return -1;
        break;
    }
    case 7: o->weights_prefix = s; break;
    default:
        if (strcmp(s, "serial") && strcmp(s, "batch") && strcmp(s, "pipeline") && strcmp(s, "hybrid"))
            return pnetrt_die("--schedule needs serial, batch, pipeline or hybrid, not '%s'", s), -1;
        o->schedule = s;
    }
    return 1;
}

static int open_model(const pnetrt_desc *d, const opts *o, pnetrt_model **m) {
    if (o->weights_prefix && !o->weights) return pnetrt_die("--weights-prefix %s needs --weights FILE", o->weights_prefix);
    if (pnetrt_create_prefixed(m, d, o->weights, o->weights_prefix)) {
        int r = pnetrt_die("%s", pnetrt_last_error(*m));
        pnetrt_destroy(*m);
        *m = NULL;
        return r;
    }
    const char *unused = pnetrt_load_warning(*m);
    if (*unused && pnetrt_rank <= 0) fprintf(stderr, "%s: warning: %s\n", pnetrt_prog, unused);
    int rc = 0;
    const char *sch = o->schedule;
    bool serial = sch && !strcmp(sch, "serial");
    if (serial && o->threads > 1) fprintf(stderr, "%s: note: --threads has no effect with --schedule serial\n", pnetrt_prog);
    if (serial && o->replicas > 1) fprintf(stderr, "%s: note: --replicas has no effect with --schedule serial\n", pnetrt_prog);
    if (sch && !strcmp(sch, "batch") && o->microbatches && d->nstages > 1)
        fprintf(stderr, "%s: note: --microbatches has no effect with --schedule batch, which runs no pipeline\n", pnetrt_prog);
    if (!serial && o->threads > 0) rc = pnetrt_set_threads(*m, o->threads);
    if (!rc && sch) rc = pnetrt_set_schedule(*m, sch);
    if (!rc && !serial && o->replicas > 0) rc = pnetrt_set_replicas(*m, o->replicas);
    if (!rc && o->microbatches > 0) rc = pnetrt_set_microbatches(*m, o->microbatches);
    if (!rc && o->nstage_threads) rc = pnetrt_set_stage_threads(*m, o->stage_threads, o->nstage_threads);
    if (!rc && o->trace) rc = pnetrt_set_trace(*m, o->trace);
    if (rc) {
        pnetrt_die("%s", pnetrt_last_error(*m));
        pnetrt_destroy(*m);
        *m = NULL;
        return 1;
    }
    return 0;
}

/* Writes the --trace file, reporting a failure, and destroys the model. Returns rc, or 1 when the
 * trace could not be written. */
static int close_model(pnetrt_model *m, const opts *o, int rc) {
    if (m && o->trace) { /* on ranks, every rank sends its events and rank 0 writes the one file */
        if (pnetrt_write_trace(m, o->trace)) rc = pnetrt_die("%s", pnetrt_last_error(m));
        pnetrt_set_trace(m, NULL);
    }
    pnetrt_destroy(m);
    return rc;
}

/* The tables of `infer`, one entry per input or output of the network. */
typedef struct infer_io {
    const char **in_path, **out_path; /* --input and --output files, or NULL */
    pnetrt_array *in, *out;
    const void **ip;
    void **op;
} infer_io;

static int infer_run(const pnetrt_desc *d, opts *o, int argc, char **argv, const infer_io *io) {
    const char **in_path = io->in_path, **out_path = io->out_path;
    pnetrt_array *in = io->in, *out = io->out;
    const void **ip = io->ip;
    void **op = io->op;
    bool no_scale = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if ((strcmp(a, "--input") == 0 || strcmp(a, "--output") == 0) && has) {
            const char *v = argv[++i];
            bool is_in = a[2] == 'i';
            const char *eq = strchr(v, '=');
            const pnetrt_tensor_desc *ts = is_in ? d->inputs : d->outputs;
            int64_t nts = is_in ? d->ninputs : d->noutputs;
            int k;
            if (!eq) {
                if (nts != 1) return pnetrt_die("%s '%s' needs the form NAME=FILE.npy", a, v);
                k = 0;
                eq = v - 1;
            } else {
                k = find(ts, nts, v, (size_t)(eq - v));
                if (k < 0) return pnetrt_die("the network has no %s named '%.*s'", is_in ? "input" : "output", (int)(eq - v), v);
            }
            if (!eq[1]) return pnetrt_die("%s %s needs a file name after '='", a, ts[k].name);
            const char **slot = &(is_in ? in_path : out_path)[k];
            if (*slot)
                return pnetrt_die("%s %s given twice ('%s' and '%s'); give each %s once", a, ts[k].name, *slot, eq + 1,
                                  is_in ? "input" : "output");
            *slot = eq + 1;
        } else if (strcmp(a, "--no-scale") == 0) {
            if (pnetrt_opt_once(o->seen, sizeof o->seen, a)) return 1;
            no_scale = true;
        } else {
            int k = common_option(o, argc, argv, &i);
            if (k < 0) return 1;
            if (k == 0) return unknown_option(a, " --input --output ");
        }
    }
    for (int64_t i = 0; i < d->ninputs; i++)
        if (!in_path[i]) return pnetrt_die("missing --input %s=FILE.npy", d->inputs[i].name);
    /* No file written may be one that is read, nor another one written. */
    char oopt[160], iopt[160], err0[512];
    for (int64_t i = 0; i < d->noutputs + 1; i++) {
        const char *w = i < d->noutputs ? out_path[i] : o->trace;
        if (!w) continue;
        if (i < d->noutputs) snprintf(oopt, sizeof oopt, "--output %s", d->outputs[i].name);
        else snprintf(oopt, sizeof oopt, "--trace");
        const char *what = i < d->noutputs ? "the output" : "the trace";
        for (int64_t k = 0; k < d->ninputs; k++) {
            snprintf(iopt, sizeof iopt, "--input %s", d->inputs[k].name);
            if (pnetrt_check_overwrite(oopt, w, what, iopt, in_path[k])) return 1;
        }
        if (pnetrt_check_overwrite(oopt, w, what, "--weights", o->weights)) return 1;
        for (int64_t k = 0; k < i; k++) {
            snprintf(iopt, sizeof iopt, "--output %s", d->outputs[k].name);
            if (pnetrt_check_overwrite(oopt, w, what, iopt, out_path[k])) return 1;
        }
        /* A device, a directory or an unwritable directory fails now, not after the run. */
        if (i < d->noutputs && pnetrt_io_check_output(w, err0, sizeof err0)) return pnetrt_die("%s", err0);
    }
    int rc = 1;
    int64_t batch = -1;
    char err[512], buf[128];
    pnetrt_model *m = NULL;
    for (int64_t i = 0; i < d->ninputs; i++) {
        const pnetrt_tensor_desc *t = &d->inputs[i];
        /* Any dtype and shape the training loader takes, converted and scaled by the same rules (data.h). */
        char what[192];
        shape_text(t, buf, sizeof buf);
        snprintf(what, sizeof what, "input '%s' %s", t->name, buf);
        bool batched = t->rank > 0 && t->shape[0] < 0;
        pnetrt_data_opts dopts = {.no_scale = no_scale, .input = what};
        pnetrt_data_source src;
        if (pnetrt_data_read_npy(in_path[i], (int)t->dtype, pnetrt_sample_elems(t), batched, &dopts, &in[i], &src, err,
                                 sizeof err)) {
            pnetrt_die("%s", err);
            goto done;
        }
        pnetrt_note_scaling(in_path[i], &src, no_scale, t->dtype == PNETRT_I32);
        /* Ids an embedding reads must lie in its vocabulary: named by file and sample here, before running. */
        int64_t per = t->shape[0] < 0 ? pnetrt_sample_elems(t) : (int64_t)(in[i].nbytes / 4);
        for (int64_t k = 0; t->limit && k < (int64_t)(in[i].nbytes / 4); k++) {
            int32_t v = ((const int32_t *)in[i].data)[k];
            if (v < 0 || v >= t->limit) {
                pnetrt_die("%s: sample %lld: input '%s' holds %d, outside the vocabulary [0, %lld)", in_path[i],
                           (long long)(per ? k / per : 0), t->name, v, (long long)t->limit);
                goto done;
            }
        }
        if (batched) {
            if (batch >= 0 && in[i].shape[0] != batch) {
                pnetrt_die("%s: batch of %lld, but another input has %lld", in_path[i], (long long)in[i].shape[0], (long long)batch);
                goto done;
            }
            batch = in[i].shape[0];
        }
    }
    if (batch < 0) batch = 1;
    if (open_model(d, o, &m)) goto done;
    for (int64_t i = 0; i < d->ninputs; i++) ip[i] = in[i].data;
    for (int64_t i = 0; i < d->noutputs; i++) {
        const pnetrt_tensor_desc *t = &d->outputs[i];
        out[i].dtype = (pnetrt_dtype)t->dtype;
        out[i].rank = (int)t->rank;
        int64_t elems = 1;
        for (int64_t k = 0; k < t->rank; k++) {
            out[i].shape[k] = t->shape[k] < 0 ? batch : t->shape[k];
            elems *= out[i].shape[k];
        }
        out[i].nbytes = (size_t)elems * 4;
        out[i].data = calloc(1, out[i].nbytes ? out[i].nbytes : 4);
        if (!out[i].data) {
            pnetrt_die("cannot allocate output '%s'", t->name);
            goto done;
        }
        op[i] = out[i].data;
    }
    if (pnetrt_infer(m, batch, ip, op)) {
        pnetrt_die("%s", pnetrt_last_error(m));
        goto done;
    }
    for (int64_t i = 0; i < d->noutputs; i++) {
        const pnetrt_tensor_desc *t = &d->outputs[i];
        if (out_path[i]) {
            /* On ranks, every rank holds the outputs; rank 0 writes them. */
            if (pnetrt_rank <= 0 && pnetrt_npy_write(out_path[i], &out[i], err, sizeof err)) {
                pnetrt_die("%s", err);
                goto done;
            }
            continue;
        }
        shape_text(t, buf, sizeof buf);
        printf("%s: %s, batch %lld\n", t->name, buf, (long long)batch);
        int64_t elems = (int64_t)(out[i].nbytes / 4);
        int64_t row = out[i].rank > 0 ? out[i].shape[out[i].rank - 1] : 1;
        if (row <= 0) row = 1;
        for (int64_t k = 0; k < elems; k++) {
            if (t->dtype) printf("%s%d", k % row ? " " : "", ((int32_t *)out[i].data)[k]);
            else printf("%s%.7g", k % row ? " " : "", (double)((float *)out[i].data)[k]);
            if (k % row == row - 1) putchar('\n');
        }
    }
    rc = 0;
done:
    rc = close_model(m, o, rc);
    if (fflush(stdout) != 0) rc = pnetrt_die("cannot write the output: %s", strerror(errno));
    return rc;
}

static int cmd_infer(const pnetrt_desc *d, int argc, char **argv) {
    opts o = {0};
    size_t ni = (size_t)d->ninputs + 1, no = (size_t)d->noutputs + 1; /* + 1: never a zero-byte table */
    infer_io io = {calloc(ni, sizeof *io.in_path), calloc(no, sizeof *io.out_path), calloc(ni, sizeof *io.in),
                   calloc(no, sizeof *io.out), calloc(ni, sizeof *io.ip), calloc(no, sizeof *io.op)};
    int rc = io.in_path && io.out_path && io.in && io.out && io.ip && io.op
                 ? infer_run(d, &o, argc, argv, &io)
                 : pnetrt_die("out of memory for %lld inputs and %lld outputs", (long long)d->ninputs,
                              (long long)d->noutputs);
    for (int64_t i = 0; io.in && i < d->ninputs; i++) pnetrt_array_free(&io.in[i]);
    for (int64_t i = 0; io.out && i < d->noutputs; i++) pnetrt_array_free(&io.out[i]);
    free(io.in_path);
    free(io.out_path);
    free(io.in);
    free(io.out);
    free(io.ip);
    free(io.op);
    free(o.stage_threads);
    return rc;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int bench_run(const pnetrt_desc *d, opts *o, int argc, char **argv, void **bufs, const void **ip, void **op) {
    long long batch = 64;
    double seconds = 3.0;
    const char *profile = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (strcmp(a, "--batch") == 0 && has) {
            if (pnetrt_opt_once(o->seen, sizeof o->seen, a) || pnetrt_opt_int(a, argv[++i], 1, 1 << 24, &batch)) return 1;
        } else if (strcmp(a, "--seconds") == 0 && has) {
            if (pnetrt_opt_once(o->seen, sizeof o->seen, a) || pnetrt_opt_num(a, argv[++i], 3600, &seconds)) return 1;
        } else if (strcmp(a, "--profile") == 0 && has) {
            if (pnetrt_opt_once(o->seen, sizeof o->seen, a)) return 1;
            profile = argv[++i];
        } else {
            int k = common_option(o, argc, argv, &i);
            if (k < 0) return 1;
            if (k == 0) return unknown_option(a, " --batch --seconds --train ");
        }
    }
    pnetrt_model *m = NULL;
    if (open_model(d, o, &m)) return 1;
    int rc = 1;
    uint64_t r = 12345;
    for (int64_t i = 0; i < d->ninputs + d->noutputs; i++) {
        const pnetrt_tensor_desc *t = i < d->ninputs ? &d->inputs[i] : &d->outputs[i - d->ninputs];
        int64_t n = pnetrt_sample_elems(t) * (t->shape[0] < 0 ? batch : 1);
        bufs[i] = malloc((size_t)n * 4 + 4);
        if (!bufs[i]) {
            pnetrt_die("cannot allocate %lld elements for '%s'", (long long)n, t->name);
            goto done;
        }
        for (int64_t k = 0; k < n; k++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            if (t->dtype) ((int32_t *)bufs[i])[k] = t->limit ? (int32_t)((r >> 33) % (uint64_t)t->limit) : (int32_t)(r >> 60);
            else ((float *)bufs[i])[k] = (float)((double)(r >> 40) / 16777216.0 * 2.0 - 1.0);
        }
        if (i < d->ninputs) ip[i] = bufs[i];
        else op[i - d->ninputs] = bufs[i];
    }
    /* Warm up, then time whole calls until the time is up. */
    double t0 = pnetrt_now();
    for (int w = 0; pnetrt_bench_more((w < 3 || pnetrt_now() - t0 < 0.2) && pnetrt_now() - t0 <= seconds); w++) {
        if (pnetrt_infer(m, batch, ip, op)) {
            pnetrt_die("%s", pnetrt_last_error(m));
            goto done;
        }
    }
    if (profile) {
        rc = pnetrt_bench_profile(m, batch, ip, (void **)op, profile);
        goto done;
    }
    enum { MAXRUNS = 100000 };
    static double lat[MAXRUNS], bubble[MAXRUNS];
    double busy[PNETRT_MAX_STAGES] = {0};
    int runs = 0;
    double start = pnetrt_now(), comm0 = pnetrt_comm_seconds();
    while (pnetrt_bench_more(runs < MAXRUNS && (runs < 3 || pnetrt_now() - start < seconds))) {
        double a = pnetrt_now();
        pnetrt_infer(m, batch, ip, op);
        bubble[runs] = pnetrt_measured_bubble(m);
        for (int s = 0; s < (int)d->nstages && s < PNETRT_MAX_STAGES; s++) busy[s] += pnetrt_stage_busy(m, s);
        lat[runs++] = pnetrt_now() - a;
    }
    double total = pnetrt_now() - start, comm = pnetrt_comm_seconds() - comm0;
    qsort(lat, (size_t)runs, sizeof lat[0], cmp_double);
    bool picked = pnetrt_replicas_picked(m);
    char used[96] = "";
    if (pnetrt_last_threads(m) != pnetrt_threads(m))
        snprintf(used, sizeof used, " (%d used: %s; PNET_ADAPTIVE_THREADS=0 uses all)", pnetrt_last_threads(m),
                 pnetrt_last_plan(m) == PNETRT_PLAN_CLAIMED ? "one per core"
                 : pnetrt_last_plan(m) == PNETRT_PLAN_ONE ? "one runs faster on this busy machine"
                                                           : "too little work for more");
    printf("network: %s, batch %lld, threads %d%s, replicas %d%s, %s, %d runs\n", d->name, batch, pnetrt_threads(m), used,
           pnetrt_last_replicas(m),
           pnetrt_last_plan(m) == PNETRT_PLAN_CLAIMED && picked ? " (picked by the runtime: one thread each, claiming chunks)"
           : picked ? " (picked by the runtime)" : "",
           !pnetrt_pipelined(m) ? "not pipelined"
           : pnetrt_last_plan(m) == PNETRT_PLAN_ONE ? "pipelined (the last call ran its stages in turn on one thread)"
                                                    : "pipelined",
           runs);
    printf("throughput: %.1f samples/s\n", (double)batch * runs / total);
    printf("latency: median %.3f ms, p90 %.3f ms, min %.3f ms per batch\n", lat[runs / 2] * 1e3,
           lat[(int)(runs * 0.9)] * 1e3, lat[0] * 1e3);
    qsort(bubble, (size_t)runs, sizeof bubble[0], cmp_double);
    double measured = bubble[runs / 2]; /* the median call's: one call is at the mercy of the host */
    int stage = pnetrt_model_rank_stage(m), K = pnetrt_comm_size(pnetrt_model_comm(m));
    if (stage >= 0) {
        /* Stages on ranks: each rank measured its own stage's idle share; the bubble is their mean. */
        double all[K];
        pnetrt_comm_gather_f64(pnetrt_model_comm(m), measured, all);
        measured = 0;
        for (int k = 0; k < K; k++) measured += all[k] / K;
        printf("ranks: %d, one pipeline stage per rank: %d replica pipeline%s x %d stages\n", K, K / (int)d->nstages,
               K / (int)d->nstages == 1 ? "" : "s", (int)d->nstages);
    }
    int64_t Q = 0;
    double predicted = pnetrt_predicted_bubble(m, &Q);
    if (measured >= 0 && predicted >= 0)
        printf("bubble: measured %.1f%% (median of %d calls), predicted %.1f%% = (S-1)/(Q+S-1) with S = %d stages, "
               "Q = %lld micro-batches streamed (%d per chunk)\n", 100 * measured, runs, 100 * predicted, (int)d->nstages,
               (long long)Q, pnetrt_microbatches(m));
    if (measured >= 0 && predicted >= 0 && stage < 0) {
        /* Each stage's busy time (its trace slices), per sample of replica group 0's share. */
        double sum = 0, worst = 0, per = (double)runs * (double)batch / pnetrt_last_replicas(m);
        printf("stages: busy");
        for (int s = 0; s < (int)d->nstages && s < PNETRT_MAX_STAGES; s++) {
            printf("%s %.3g", s ? "," : "", busy[s] / per * 1e6);
            sum += busy[s];
            worst = busy[s] > worst ? busy[s] : worst;
        }
        printf(" us per sample; the slowest %.0f%% of the stages' time\n", sum > 0 ? 100 * worst / sum : 0);
    }
    pnetrt_bench_comm_report(comm, total);
    pnetrt_bench_memory_report(d->param_floats);
    rc = 0;
done:
    return close_model(m, o, rc);
}

static int cmd_bench(const pnetrt_desc *d, int argc, char **argv) {
    opts o = {0};
    size_t n = (size_t)(d->ninputs + d->noutputs) + 1; /* + 1: never a zero-byte table */
    void **bufs = calloc(n, sizeof *bufs), **op = calloc(n, sizeof *op);
    const void **ip = calloc(n, sizeof *ip);
    int rc = bufs && ip && op ? bench_run(d, &o, argc, argv, bufs, ip, op)
                              : pnetrt_die("out of memory for %lld inputs and %lld outputs", (long long)d->ninputs,
                                           (long long)d->noutputs);
    for (size_t i = 0; bufs && i < n; i++) free(bufs[i]);
    free(bufs);
    free(ip);
    free(op);
    free(o.stage_threads);
    return rc;
}

static void human(double bytes, char *buf, size_t n) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int k = 0;
    while (bytes >= 1024 && k < 4) {
        bytes /= 1024;
        k++;
    }
    snprintf(buf, n, k ? "%.1f %s" : "%.0f %s", bytes, u[k]);
}

/* info --ranks K: how K ranks share the network, as pnetc --report --ranks K prints it
 * (pnetrt_ranks.h). */
static void rank_report(const pnetrt_desc *d, int K, int64_t B) {
    const pnetrt_train_desc *t = d->train;
    pnetrt_rank_facts x = {
        .param_floats = d->param_floats,
        .opt_floats = t ? t->opt_floats : 0,
        .infer_sample_bytes = d->arena_sample_bytes,
        .train_sample_bytes = t ? t->sample_bytes : 0,
        .chunk = t ? t->chunk : d->chunk,
        .train = t != NULL,
        .fold = t && pnetrt_train_folds(d),
        .stages = d->nstages > 1,
        .nstages = (int)d->nstages,
        .microbatches = (int)d->microbatches,
        .infer_fixed_bytes = d->arena_fixed_bytes,
        .replicas_only = pnetrt_layout_default == PNETRT_LAYOUT_REPLICAS,
    };
    int S = d->nstages > 1 && d->param_stage && d->stage_recv_first ? (int)d->nstages : 0;
    int64_t sp[S + 1], rs[S + 1], rf[S + 1];
    for (int s = 0; s < S; s++) sp[s] = rs[s] = rf[s] = 0;
    for (int64_t p = 0; p < d->nparams && S; p++)
        if (d->param_stage[p] >= 0 && d->param_stage[p] < S) sp[d->param_stage[p]] += (pnetrt_sample_elems(&d->params[p]) + 15) / 16 * 16;
    for (int s = 0; s < S; s++)
        for (int64_t j = d->stage_recv_first[s]; j < d->stage_recv_first[s + 1]; j++) {
            int64_t kind = d->stage_recv[3 * j], bytes = d->stage_recv[3 * j + 2];
            if (kind == PNETRT_XFER_ARENA || kind == PNETRT_XFER_OUTPUT) rs[s] += bytes;
            else rf[s] += bytes;
        }
    if (S) x.stage_param_floats = sp, x.stage_recv_sample = rs, x.stage_recv_fixed = rf;
    /* Training one stage per rank: what each stage receives in the training arena. */
    int64_t tf[S + 1], tw[S + 1];
    const pnetrt_train_desc *td = d->train;
    bool pipes = S && td && td->nstages > 1 && td->stage_fwd_first;
    for (int s = 0; s < S && pipes; s++) {
        tf[s] = tw[s] = 0;
        for (int64_t j = td->stage_fwd_first[s]; j < td->stage_fwd_first[s + 1]; j++) tf[s] += td->stage_fwd[2 * j + 1];
        for (int64_t j = td->stage_bwd_first[s]; j < td->stage_bwd_first[s + 1]; j++) tw[s] += td->stage_bwd[2 * j + 1];
    }
    if (pipes) x.train_fwd_sample = tf, x.train_bwd_sample = tw;
    x.one_f_one_b = d->schedule == 1;
    printf("\n");
    pnetrt_rank_report(stdout, &x, K, B);
}

/* An input or output of info: its identifier and shape, and the model file's own name beside them. */
static void print_io(const pnetrt_tensor_desc *t, const char *shape) {
    if (t->source_name) printf("  %s %s (\"%s\" in the model)\n", t->name, shape, t->source_name);
    else printf("  %s %s\n", t->name, shape);
}

static int cmd_info(const pnetrt_desc *d, int K, int64_t B) {
    char a[64], b[64], buf[128];
    printf("network %s (target %s)\n\n", d->name, d->target);
    printf("inputs:\n");
    for (int64_t i = 0; i < d->ninputs; i++) {
        shape_text(&d->inputs[i], buf, sizeof buf);
        print_io(&d->inputs[i], buf);
    }
    printf("outputs:\n");
    for (int64_t i = 0; i < d->noutputs; i++) {
        shape_text(&d->outputs[i], buf, sizeof buf);
        print_io(&d->outputs[i], buf);
    }
    printf("\nlayers:\n  %-28s %-14s %-22s %12s %14s %6s %6s\n", "name", "op", "shape", "params", "flops/sample", "stage", "shard");
    int64_t params = 0, flops = 0;
    for (int64_t i = 0; i < d->nlayers; i++) {
        const pnetrt_layer_desc *l = &d->layers[i];
        printf("  %-28s %-14s %-22s %12lld %14lld %6lld %6lld\n", l->name, l->op, l->type, (long long)l->params,
               (long long)l->flops, (long long)l->stage, (long long)l->shard);
        params += l->params;
        flops += l->flops;
    }
    human((double)params * 4, a, sizeof a);
    printf("  total: %lld parameters (%s), %lld FLOPs per sample\n", (long long)params, a, (long long)flops);
    printf("\nmemory plan:\n");
    human((double)d->arena_sample_bytes, a, sizeof a);
    human((double)(d->arena_sample_bytes * d->chunk + d->arena_fixed_bytes), b, sizeof b);
    printf("  arena: %s per sample x %lld samples per pass + %lld fixed bytes = %s\n", a, (long long)d->chunk,
           (long long)d->arena_fixed_bytes, b);
    human((double)d->param_floats * 4, a, sizeof a);
    printf("  parameters: %s%s\n", a, d->embedded ? " (embedded)" : "");
    for (int64_t i = 0; i < d->nlayers; i++) {
        const pnetrt_layer_desc *l = &d->layers[i];
        if (l->offset >= 0) printf("  %-28s bytes/sample [%lld, %lld)\n", l->name, (long long)l->offset, (long long)(l->offset + l->bytes));
    }
    if (d->train) {
        const pnetrt_train_desc *t = d->train;
        int64_t B = t->batch > 0 ? t->batch : 32, nch = (B + t->chunk - 1) / t->chunk;
        printf("\ntraining (%s, lr %g, batch %lld, %lld epoch%s; %s loss):\n", t->optimizer == PNETRT_OPT_ADAM ? "adam" : "sgd",
               t->lr, (long long)B, (long long)t->epochs, t->epochs == 1 ? "" : "s",
               t->loss == PNETRT_LOSS_CROSS_ENTROPY ? "cross_entropy" : "mse");
        human((double)t->sample_bytes, a, sizeof a);
        printf("  kept for backward, and gradients: %s per sample\n", a);
        if (pnetrt_train_folds(d)) {
            /* The tree folded as chunks complete (gradtree.h): one group's (or pipeline
             * replica's, whose stages share it) deepest stack. */
            pnetrt_blk stack[128];
            int most = 1;
            if (pnetrt_tree_depth(nch) <= 128) pnetrt_tree_stack(0, nch, stack, &most);
            human((double)most * (double)d->param_floats * 4, a, sizeof a);
            printf("  gradients: %lld %lld-sample chunk%s at batch %lld, folded into at most %d partial sum%s per "
                   "thread group or pipeline = %s\n", (long long)nch, (long long)t->chunk, nch == 1 ? "" : "s",
                   (long long)B, most, most == 1 ? "" : "s", a);
        } else {
            human((double)nch * (double)d->param_floats * 4, a, sizeof a);
            printf("  gradient slots: one per %lld-sample chunk, %lld at batch %lld = %s\n", (long long)t->chunk,
                   (long long)nch, (long long)B, a);
        }
        human((double)t->opt_floats * 4, a, sizeof a);
        printf("  optimizer state: %s\n", a);
        human((double)(t->global_floats + nch * t->stat_floats) * 4, a, sizeof a);
        printf("  batch statistics and transposed weights: %s\n", a);
        printf("  segments: %lld%s\n", (long long)t->nsegments, t->nsegments > 1 ? " (split at batchnorm's batch statistics)" : "");
    }
    /* The schedule report pnetc generated with the same code as --report, so the two agree. */
    if (d->report && d->report[0]) printf("\n%s", d->report);
    if (K > 0) rank_report(d, K, B > 0 ? B : d->train && d->train->batch > 0 ? d->train->batch : 256);
    return fflush(stdout) == 0 ? 0 : 1;
}

static int run_command(const pnetrt_desc *d, int argc, char **argv);

/* FNV-1a, for the run's identity below. */
static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}
static uint64_t fnv_str(uint64_t h, const char *s) { return fnv(h, s ? s : "", s ? strlen(s) + 1 : 1); }

/* The executable's bytes (/proc/self/exe), eight at a time: two builds of networks that differ
 * only in an attribute the descriptor does not hold (a dropout rate, a learning rate) differ here.
 * Unchanged where the file cannot be read. */
static uint64_t exe_hash(uint64_t h) {
    FILE *f = fopen("/proc/self/exe", "rb");
    if (!f) return h;
    static uint64_t buf[1 << 15];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        memset((char *)buf + n, 0, (8 - n % 8) % 8);
        for (size_t i = 0; i < (n + 7) / 8; i++) h = (h ^ buf[i]) * 1099511628211ull;
    }
    fclose(f);
    return h;
}

/* What every rank of a run must share: the network as compiled (its name, target, sizes, schedule
 * report, each parameter's name and shape, and the executable's bytes) and the command with its
 * options, except --threads (ranks on different machines may have different cores), in either form
 * (--threads N, --threads=N). */
static uint64_t run_identity(const pnetrt_desc *d, int argc, char **argv) {
    uint64_t h = exe_hash(14695981039346656037ull);
    int64_t sizes[] = {d->abi, d->ninputs, d->noutputs, d->nparams, d->nlayers, d->param_floats, d->prepared_floats,
                       d->arena_sample_bytes, d->chunk, d->nstages, d->embedded != NULL, d->train != NULL};
    h = fnv(h, sizes, sizeof sizes);
    h = fnv_str(fnv_str(fnv_str(h, d->name), d->target), d->report);
    for (int64_t p = 0; p < d->nparams; p++)
        h = fnv(fnv_str(h, d->params[p].name), d->params[p].shape, sizeof d->params[p].shape);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            i++;
            continue;
        }
        if (!strncmp(argv[i], "--threads=", 10)) continue;
        h = fnv_str(h, argv[i]);
    }
    return h;
}

/* --rank-layout replicas|stages (or --rank-layout=...), for every command: how the ranks of
 * mpirun share a network with pipeline stages. Taken out of argv; sets the default of the models
 * this process creates. Inference, and training and evaluation (train --val too) of a network
 * whose stages pipeline, default to one stage per rank; a network whose stages train in turn
 * (batchnorm) trains and evaluates with the ranks as replicas. Returns 0, or 1 after reporting. */
static int rank_layout_option(const pnetrt_desc *d, int *argc, char **argv) {
    const char *cmd = *argc > 1 ? argv[1] : "";
    bool training = !strcmp(cmd, "train"), evaluating = !strcmp(cmd, "eval");
    for (int i = 2; i < *argc; i++) training |= !strcmp(cmd, "bench") && !strcmp(argv[i], "--train");
    bool pipes = d->train && d->train->nstages > 1; /* its stages train as a pipeline (no batchnorm) */
    const char *v = NULL;
    int n = 0;
    for (int i = 0; i < *argc; i++) {
        const char *a = argv[i], *value = NULL;
        int take = 0;
        if (i >= 2 && !strcmp(a, "--rank-layout")) {
            if (i + 1 >= *argc) return pnetrt_die("--rank-layout needs replicas or stages");
            value = argv[i + 1], take = 2;
        } else if (i >= 2 && !strncmp(a, "--rank-layout=", 14)) {
            value = a + 14, take = 1;
        }
        if (!take) {
            argv[n++] = argv[i];
            continue;
        }
        if (v) return pnetrt_die("--rank-layout given twice; give each option once");
        v = value;
        i += take - 1;
    }
    argv[n] = NULL;
    *argc = n;
    if (v && strcmp(v, "replicas") && strcmp(v, "stages")) return pnetrt_die("--rank-layout needs replicas or stages, not '%s'", v);
    bool stages = v ? !strcmp(v, "stages") : !((training || evaluating) && !pipes);
    pnetrt_layout_default = !stages ? PNETRT_LAYOUT_REPLICAS : v ? PNETRT_LAYOUT_STAGES : PNETRT_LAYOUT_AUTO;
    if (!v || !stages) return 0;
    if ((training || evaluating) && !pipes && d->nstages > 1)
        return pnetrt_die("--rank-layout stages: network '%s' %s its stages in turn (batchnorm needs the whole batch), so "
                          "one stage per rank cannot %s it; use --rank-layout replicas",
                          d->name, training ? "trains" : "evaluates", training ? "train" : "evaluate");
    return 0;
}

int pnetrt_main(const pnetrt_desc *d, int argc, char **argv) {
    if (argc > 0 && argv[0]) {
        const char *s = strrchr(argv[0], '/');
        pnetrt_prog = s ? s + 1 : argv[0];
        pnetrt_prog_named = true;
    }
    pnetrt_io_remove_temp_on_signals(); /* no temporary file of --output or --save is left behind */
    if (argc < 2) {
        usage(d, stderr);
        return 1;
    }
    /* Started by mpirun: every rank runs this command, on its share of the work (comm.h). Rank 0
     * alone prints results and writes files; a rank that fails ends the job (below). */
    bool ranks = pnetrt_comm_launched();
    if (ranks && !pnetrt_comm_built()) {
        /* One rank of one is a plain run; more cannot run distributed without MPI. */
        const char *k = getenv("OMPI_COMM_WORLD_SIZE");
        ranks = !k || strcmp(k, "1") != 0;
    }
    if (ranks) {
        char err[256];
        if (pnetrt_comm_init_process(err, sizeof err)) return pnetrt_die("%s", err);
        pnetrt_comm *w = pnetrt_comm_default();
        ranks = pnetrt_comm_size(w) > 1;
        if (ranks) {
            pnetrt_rank = pnetrt_comm_rank(w);
            if (pnetrt_rank != 0 && !freopen("/dev/null", "w", stdout)) return pnetrt_die("cannot silence stdout");
            /* Ranks that run different executables or options would wait on each other forever,
             * or compute different things: every rank checks rank 0's identity first. */
            bool mine;
            if (pnetrt_comm_compare_u64(w, run_identity(d, argc, argv), &mine)) {
                if (mine)
                    pnetrt_die("this rank's network or options differ from rank 0's (another executable or other "
                               "arguments); every rank must run the same command");
                fflush(stderr);
                pnetrt_comm_all_ok(w, !mine); /* the messages are out before any rank ends the job */
                pnetrt_comm_abort(w, 1);
            }
        }
    }
    /* Every option takes "--opt value" or "--opt=value": the commands parse the first form. */
    int n;
    char **split = pnetrt_opt_split(argc, argv, &n);
    int rc = split ? rank_layout_option(d, &n, split) : pnetrt_die("out of memory for %d arguments", argc);
    if (!rc) rc = run_command(d, n, split);
    pnetrt_opt_split_free(split);
    /* A rank that fails ends every rank: the others may be waiting for its messages. */
    if (ranks && rc != 0) pnetrt_comm_abort(pnetrt_comm_default(), rc);
    return rc;
}

static int run_command(const pnetrt_desc *d, int argc, char **argv) {
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(d, stdout);
        return 0;
    }
    /* `./net COMMAND --help` too: the usage, on stdout, whatever else is given. */
    static const char commands[] = " infer train eval bench info ";
    char key[64];
    snprintf(key, sizeof key, " %s ", cmd);
    bool is_cmd = strstr(commands, key) != NULL;
    pnetrt_cmd = cmd;
    for (int i = 2; is_cmd && i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(d, stdout);
            return fflush(stdout) == 0 ? 0 : 1;
        }
    if (strcmp(cmd, "infer") == 0) return cmd_infer(d, argc - 2, argv + 2);
    if (strcmp(cmd, "train") == 0) return pnetrt_cmd_train(d, argc - 2, argv + 2);
    if (strcmp(cmd, "eval") == 0) return pnetrt_cmd_eval(d, argc - 2, argv + 2);
    if (strcmp(cmd, "bench") == 0) {
        for (int i = 2; i < argc; i++)
            if (strcmp(argv[i], "--train") == 0) return pnetrt_cmd_bench_train(d, argc - 2, argv + 2);
        return cmd_bench(d, argc - 2, argv + 2);
    }
    if (strcmp(cmd, "info") == 0) {
        /* info [--ranks K [--batch B]]: K ranks' mapping, memory and messages (default: the train
         * block's batch, or 256). */
        long long K = 0, B = 0;
        char seen[64] = "";
        for (int i = 2; i < argc; i++) {
            if (i + 1 < argc && (!strcmp(argv[i], "--ranks") || !strcmp(argv[i], "--batch"))) {
                if (pnetrt_opt_once(seen, sizeof seen, argv[i])) return 1;
                bool ranks = !strcmp(argv[i], "--ranks");
                if (pnetrt_opt_int(argv[i], argv[i + 1], 1, ranks ? 4096 : (1LL << 40), ranks ? &K : &B)) return 1;
                i++;
                continue;
            }
            return pnetrt_opt_unknown(argv[i], " --ranks --batch ");
        }
        if (B && !K) return pnetrt_die("info: --batch goes with --ranks");
        return cmd_info(d, (int)K, B);
    }
    char near[16];
    if (pnetrt_opt_closest(cmd, commands, near, sizeof near))
        return pnetrt_die("unknown command '%s'; did you mean '%s'?", cmd, near);
    return pnetrt_die("unknown command '%s'; expected infer, train, eval, bench or info (see '%s --help')", cmd, pnetrt_prog);
}
