/* The executables' training commands: `./net train`, `./net eval` and `./net bench --train`.
 * Data comes through runtime/io/data.h; every failure is one line naming the file or option and the
 * problem, with exit status 1. Ctrl-C (SIGINT), SIGTERM or SIGHUP during training writes a
 * checkpoint (with --save) and exits with status 128 + the signal (130, 143, 129). */
#include "data.h"
#include "fileio.h"
#include "io.h"
#include "model.h"
#include "options.h"
#include "comm.h"
#include "rt.h"
#include "train_cli.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>


typedef struct topts {
    const char *data, *labels, *val, *val_labels, *save, *weights, *weights_prefix, *resume;
    long long epochs, batch, seed, threads, replicas, microbatches;
    int stage_threads[PNETRT_MAX_STAGES], nstage_threads; /* --stage-threads */
    double lr, seconds;
    bool no_shuffle, have_lr, have_seed, exact;
    const char *trace; /* --trace FILE: a Chrome trace of the steps */
    pnetrt_data_opts dopts; /* --label-column, --no-scale */
} topts;

/* --label-column first|last|N: the CSV column of the label (of the first target), counted from 1. */
static int label_column(const char *v, int64_t *out) {
    long long n;
    if (!strcmp(v, "first")) return *out = 1, 0;
    if (!strcmp(v, "last")) return *out = PNETRT_LABEL_LAST, 0;
    if (!*v || strspn(v, "0123456789") != strlen(v))
        return pnetrt_die("--label-column needs first, last or a column number from 1, not '%s'", v);
    if (pnetrt_opt_int("--label-column", v, 1, INT32_MAX, &n)) return 1;
    *out = n;
    return 0;
}

/* Parses the options of train, eval and bench --train; `allowed` lists the ones the command takes.
 * Each may be given once. */
static int parse_opts(int argc, char **argv, const char *allowed, topts *o) {
    char seen[512] = "";
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        char key[64];
        snprintf(key, sizeof key, " %s ", a);
        if (strncmp(a, "--", 2) != 0 || !strstr(allowed, key)) return pnetrt_opt_unknown(a, allowed);
        if (pnetrt_opt_once(seen, sizeof seen, a)) return 1;
        if (!strcmp(a, "--no-shuffle")) {
            o->no_shuffle = true;
            continue;
        }
        if (!strcmp(a, "--train")) continue;
        if (!strcmp(a, "--exact")) {
            o->exact = true;
            continue;
        }
        if (!strcmp(a, "--no-scale")) {
            o->dopts.no_scale = true;
            continue;
        }
        if (i + 1 >= argc) return pnetrt_die("%s needs a value", a);
        const char *v = argv[++i];
        if (!*v) return pnetrt_die("%s needs a value, not an empty one", a); /* --data= */
        int bad = 0;
        if (!strcmp(a, "--stage-threads")) {
            if ((o->nstage_threads = pnetrt_parse_stage_threads(v, o->stage_threads)) < 0) return 1;
        } else if (!strcmp(a, "--data")) o->data = v;
        else if (!strcmp(a, "--labels")) o->labels = v;
        else if (!strcmp(a, "--val")) o->val = v;
        else if (!strcmp(a, "--val-labels")) o->val_labels = v;
        else if (!strcmp(a, "--save")) o->save = v;
        else if (!strcmp(a, "--weights")) o->weights = v;
        else if (!strcmp(a, "--weights-prefix")) o->weights_prefix = v;
        else if (!strcmp(a, "--resume")) o->resume = v;
        else if (!strcmp(a, "--trace")) o->trace = v;
        else if (!strcmp(a, "--epochs")) bad = pnetrt_opt_int(a, v, 1, 1000000, &o->epochs);
        else if (!strcmp(a, "--batch")) bad = pnetrt_opt_int(a, v, 1, 1 << 24, &o->batch);
        else if (!strcmp(a, "--seed")) bad = pnetrt_opt_int(a, v, 0, INT64_MAX, &o->seed), o->have_seed = true;
        else if (!strcmp(a, "--threads")) bad = pnetrt_opt_int(a, v, 1, 4096, &o->threads);
        else if (!strcmp(a, "--replicas")) bad = pnetrt_opt_int(a, v, 1, 4096, &o->replicas);
        else if (!strcmp(a, "--microbatches")) bad = pnetrt_opt_int(a, v, 1, 65536, &o->microbatches);
        else if (!strcmp(a, "--lr")) bad = pnetrt_opt_num(a, v, INFINITY, &o->lr), o->have_lr = true;
        else if (!strcmp(a, "--seconds")) bad = pnetrt_opt_num(a, v, 3600, &o->seconds);
        else if (!strcmp(a, "--label-column")) bad = label_column(v, &o->dopts.label_column);
        if (bad) return 1;
    }
    return 0;
}

/* The network's data input and training input: exactly one of each. */
static int io_shape(const pnetrt_desc *d, int64_t *features, int *kind, int64_t *target_elems) {
    if (!d->train) return pnetrt_die("network '%s' has no train { } block: it cannot be trained or evaluated", d->name);
    if (d->ninputs != 1 || d->train->ntrain_inputs != 1)
        return pnetrt_die("the train and eval commands need a network with one input and one training input; '%s' has %lld and %lld",
                   d->name, (long long)d->ninputs, (long long)d->train->ntrain_inputs);
    *features = pnetrt_sample_elems(&d->inputs[0]);
    *kind = d->train->loss == PNETRT_LOSS_CROSS_ENTROPY ? PNETRT_LABELS_CLASS : PNETRT_LABELS_TARGET;
    *target_elems = pnetrt_sample_elems(&d->train->train_inputs[0]);
    return 0;
}

/* Loads a data set and checks it against the network's input: an i32 input (embedding ids) takes
 * integers, within the vocabulary [0, limit) when it has one. A bad value is named by its CSV
 * line or its record, before any training starts. */
static int load(const pnetrt_desc *d, const topts *o, const char *data, const char *labels, pnetrt_data *out) {
    int64_t features = 0, te = 0;
    int kind = 0;
    if (io_shape(d, &features, &kind, &te)) return 1;
    const pnetrt_tensor_desc *in = &d->inputs[0];
    char err[512], what[192];
    int k = snprintf(what, sizeof what, "input '%s' %s[", in->name, in->dtype ? "i32" : "f32");
    for (int64_t i = 0; i < in->rank && k > 0 && k < (int)sizeof what; i++)
        k += snprintf(what + k, sizeof what - (size_t)k, in->shape[i] < 0 ? "%sbatch" : "%s%lld", i ? "," : "",
                      (long long)in->shape[i]);
    if (k > 0 && k < (int)sizeof what) snprintf(what + k, sizeof what - (size_t)k, "]");
    pnetrt_data_opts opts = o->dopts;
    opts.int_input = in->dtype == 1;
    opts.input = what;
    if (pnetrt_data_load_opts(data, labels, features, kind, d->train->classes, te, &opts, out, err, sizeof err))
        return pnetrt_die("%s", err);
    pnetrt_note_scaling(data, &out->source, opts.no_scale, opts.int_input);
    pnetrt_warn(out->warning);
    if (in->dtype != 1) return 0;
    for (int64_t i = 0; i < out->n * out->features; i++) {
        float v = out->x[i];
        char where[4200];
        if (v != floorf(v))
            return pnetrt_die("%s: input '%s' takes integers, not %g",
                              pnetrt_data_where(out, data, i / out->features, where, sizeof where), in->name,
                              (double)v);
        if (in->limit > 0 && (v < 0 || (double)v >= (double)in->limit))
            return pnetrt_die("%s: input '%s' holds %.0f, outside the vocabulary [0, %lld)",
                              pnetrt_data_where(out, data, i / out->features, where, sizeof where), in->name, (double)v,
                              (long long)in->limit);
        if (fabsf(v) > 2147483647.0f)
            return pnetrt_die("%s: input '%s' holds %.0f, outside the int32 range",
                              pnetrt_data_where(out, data, i / out->features, where, sizeof where), in->name,
                              (double)v);
    }
    return 0;
}

/* Batch buffers: samples idx[0..n) of the data gathered in order. */
typedef struct batch_buf {
    void *x, *y;
} batch_buf;

static void gather(const pnetrt_desc *d, const pnetrt_data *ds, const int64_t *idx, int64_t n, batch_buf *b) {
    int64_t F = ds->features, T = ds->target_elems;
    for (int64_t i = 0; i < n; i++) {
        const float *src = ds->x + idx[i] * F;
        if (d->inputs[0].dtype == 1)
            for (int64_t k = 0; k < F; k++) ((int32_t *)b->x)[i * F + k] = (int32_t)src[k];
        else memcpy((float *)b->x + i * F, src, (size_t)F * sizeof(float));
        if (ds->labels) ((int32_t *)b->y)[i] = ds->labels[idx[i]];
        else memcpy((float *)b->y + i * T, ds->targets + idx[i] * T, (size_t)T * sizeof(float));
    }
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The order of epoch e: a Fisher-Yates shuffle seeded from (seed, e), so a resumed run sees the
 * same batches. */
static void epoch_order(int64_t *idx, int64_t n, uint64_t seed, int64_t e, bool shuffle) {
    for (int64_t i = 0; i < n; i++) idx[i] = i;
    if (!shuffle) return;
    uint64_t s = seed * 0x2545F4914F6CDD1Dull + (uint64_t)e * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(splitmix(&s) % (uint64_t)(i + 1));
        int64_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}

static int evaluate(const pnetrt_desc *d, pnetrt_model *m, const pnetrt_data *ds, int64_t B, double *loss, double *acc,
                    int64_t *correct) {
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)(ds->n ? ds->n : 1));
    batch_buf b = {malloc((size_t)(B * ds->features * 4)), malloc((size_t)(B * (ds->labels ? 1 : ds->target_elems) * 4))};
    if (!idx || !b.x || !b.y) {
        free(idx), free(b.x), free(b.y);
        return pnetrt_die("out of memory for the evaluation batches (%.0f bytes)",
                          (double)B * (double)(ds->features + (ds->labels ? 1 : ds->target_elems)) * 4.0);
    }
    epoch_order(idx, ds->n, 0, 0, false);
    double lsum = 0;
    int64_t good = 0;
    int rc = 0;
    for (int64_t s = 0; s < ds->n && !rc; s += B) {
        int64_t n = ds->n - s < B ? ds->n - s : B;
        gather(d, ds, idx + s, n, &b);
        const void *in[2] = {b.x, b.y};
        double l;
        int64_t g;
        if (pnetrt_eval(m, n, in, &l, &g)) rc = pnetrt_die("%s", pnetrt_last_error(m));
        lsum += l;
        good += g;
    }
    double denom = (double)ds->n * (ds->labels ? 1.0 : (double)ds->target_elems);
    *loss = lsum / denom;
    *acc = (double)good / (double)ds->n;
    if (correct) *correct = good;
    free(idx);
    free(b.x);
    free(b.y);
    return rc;
}

/* SIGINT, SIGTERM and SIGHUP during training only note the signal: the step finishes, the
 * checkpoint is written whole, and the process exits with 128 + the signal's number. */
static volatile sig_atomic_t interrupted;
static void on_interrupt(int sig) { interrupted = sig; }

static const int stop_signals[3] = {SIGINT, SIGTERM, SIGHUP};

/* How the stop message names the signal: Ctrl-C goes unnamed. */
static const char *signal_label(int sig) {
    return sig == SIGTERM ? " (SIGTERM)" : sig == SIGHUP ? " (SIGHUP)" : "";
}

/* Installs on_interrupt, saving the old actions. SIGINT is caught even where it was ignored (a
 * shell's background job), as before; an ignored SIGHUP (nohup) stays ignored. */
static void catch_stop_signals(struct sigaction old[3]) {
    struct sigaction sa = {0};
    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 3; i++) {
        sigaction(stop_signals[i], NULL, &old[i]);
        if (stop_signals[i] != SIGHUP || old[i].sa_handler != SIG_IGN) sigaction(stop_signals[i], &sa, NULL);
    }
}

static void restore_stop_signals(const struct sigaction old[3]) {
    for (int i = 0; i < 3; i++) sigaction(stop_signals[i], &old[i], NULL);
}

/* Writes the --trace file (on ranks, rank 0 writes every rank's events), reporting a failure, and
 * destroys the model. Returns rc, or 1 when the trace could not be written. */
static int close_trainer(pnetrt_model *m, const topts *o, int rc) {
    if (m && o->trace) {
        if (pnetrt_write_trace(m, o->trace)) rc = pnetrt_die("%s", pnetrt_last_error(m));
        pnetrt_set_trace(m, NULL);
    }
    pnetrt_destroy(m);
    return rc;
}

/* "42s", "3:07" or "1:02:03". */
static const char *fmt_eta(double secs, char *buf, size_t len) {
    long long t = secs > 0 && secs < 1e9 ? (long long)(secs + 0.5) : 0;
    if (t < 60) snprintf(buf, len, "%llds", t);
    else if (t < 3600) snprintf(buf, len, "%lld:%02lld", t / 60, t % 60);
    else snprintf(buf, len, "%lld:%02lld:%02lld", t / 3600, t / 60 % 60, t % 60);
    return buf;
}

/* Progress within an epoch. On a terminal a bar, redrawn at most every 0.1 s; otherwise a plain
 * line every `every` seconds (PNET_PROGRESS, 10 by default; 0: none), so a log shows the run alive
 * in a long epoch. Both give the batch, the epoch's samples/s and running (mean) loss, and the
 * ETA of the whole run at the rate so far. */
typedef struct progress {
    bool tty;
    double every, run_t0, last;
    int64_t run_samples; /* trained since run_t0 */
    int width;           /* of the bar last drawn, to clear it */
} progress;

/* After batch k_done of nb (of B samples; n in the epoch) of epoch e: `seen` samples trained in
 * this process since t0, with loss sum lsum. */
static void progress_show(progress *p, int64_t e, int64_t epochs, int64_t k_done, int64_t nb, int64_t B, int64_t n,
                          int64_t seen, double lsum, double t0) {
    double now = pnetrt_now();
    if (p->tty ? now - p->last <= 0.1 : p->every <= 0 || now - p->last < p->every) return;
    p->last = now;
    int64_t done = k_done < (n + B - 1) / B ? k_done * B : n; /* this epoch, a resumed start included */
    double rate = now > t0 ? (double)seen / (now - t0) : 0, run_rate = now > p->run_t0 ? (double)p->run_samples / (now - p->run_t0) : 0;
    double left = (double)(n - done) + (double)(epochs - e - 1) * (double)n;
    char eta[32];
    fmt_eta(run_rate > 0 ? left / run_rate : 0, eta, sizeof eta);
    int pct = (int)(k_done * 100 / nb);
    if (p->tty) {
        int w = 20, f = (int)(k_done * w / nb);
        int len = printf("\repoch %lld/%lld [%.*s%*s] %3d%%  %.0f samples/s  loss %.4f  ETA %s", (long long)e + 1,
                         (long long)epochs, f, "====================", w - f, "", pct, rate, seen ? lsum / (double)seen : 0.0, eta);
        if (len - 1 < p->width) printf("%*s", p->width - (len - 1), "");
        if (len - 1 > p->width) p->width = len - 1;
    } else {
        printf("epoch %lld/%lld: batch %lld/%lld (%d%%), loss %.4f, %.0f samples/s, ETA %s\n", (long long)e + 1,
               (long long)epochs, (long long)k_done, (long long)nb, pct, seen ? lsum / (double)seen : 0.0, rate, eta);
    }
    fflush(stdout);
}

/* Clears the bar before an epoch's line or a message. */
static void progress_clear(progress *p) {
    if (p->tty && p->width) printf("\r%*s\r", p->width, "");
    p->width = 0;
}

/* A model for training or evaluation, with the parameters of o->weights (parameters and buffers only,
 * as `infer --weights` reads them), or else the embedded ones, or else, when init, drawn from the seed. */
static int open_trainer(const pnetrt_desc *d, const topts *o, bool init, pnetrt_model **m) {
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
    if (o->threads > 0) rc = pnetrt_set_threads(*m, (int)o->threads);
    if (!rc && o->replicas > 0) rc = pnetrt_set_replicas(*m, (int)o->replicas);
    if (!rc && o->have_lr) rc = pnetrt_set_lr(*m, o->lr);
    uint64_t seed = o->have_seed ? (uint64_t)o->seed : (uint64_t)d->train->seed;
    if (!rc) rc = pnetrt_set_train_seed(*m, seed);
    /* Without --weights, training starts from the embedded weights when pnetc embedded some, else
     * from the default initialisation drawn from the seed. */
    if (!rc && init && !o->weights && !d->embedded && seed != 0) pnetrt_init_params(d, pnetrt_params_mut(*m), seed);
    if (o->microbatches > 0 && d->nstages <= 1)
        fprintf(stderr, "%s: note: --microbatches has no effect: the network has no pipeline stages\n", pnetrt_prog);
    else if (o->microbatches > 0 && !d->train->nstages)
        fprintf(stderr, "%s: note: --microbatches has no effect: batchnorm needs the whole batch's statistics, so the "
                "stages train in turn\n", pnetrt_prog);
    else if (!rc && o->microbatches > 0)
        rc = pnetrt_set_microbatches(*m, (int)o->microbatches);
    if (!rc && o->nstage_threads) rc = pnetrt_set_stage_threads(*m, o->stage_threads, o->nstage_threads);
    if (!rc && o->trace) rc = pnetrt_set_trace(*m, o->trace);
    if (rc) {
        rc = pnetrt_die("%s", pnetrt_last_error(*m));
        pnetrt_destroy(*m);
        *m = NULL;
    }
    return rc;
}

/* Fails now, not after an epoch of work, when a checkpoint cannot be written at path: the path names
 * a directory, or its directory is missing or not writable. Creates nothing. */
static int check_save(const char *path) {
    struct stat sb;
    if (!*path) return pnetrt_die("--save needs a file name");
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return pnetrt_die("%s: --save names a directory; give a file such as %s%scheckpoint.safetensors", path, path,
                          path[strlen(path) - 1] == '/' ? "" : "/");
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir) return pnetrt_die("%s: path too long", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        slash[1] = 0;
    else
        *slash = 0;
    if (stat(dir, &sb) != 0)
        return pnetrt_die("%s: cannot write a checkpoint there: %s: %s", path, dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return pnetrt_die("%s: cannot write a checkpoint there: %s is not a directory", path, dir);
    if (access(dir, W_OK | X_OK) != 0)
        return pnetrt_die("%s: cannot write a checkpoint there: %s: %s", path, dir, strerror(errno));
    /* What the save itself would refuse (a device, a FIFO, a link to a directory; fileio.h), now. */
    char err[PATH_MAX + 256];
    if (pnetrt_io_check_output(path, err, sizeof err)) return pnetrt_die("%s", err);
    return 0;
}

int pnetrt_cmd_train(const pnetrt_desc *d, int argc, char **argv) {
    topts o = {0};
    if (parse_opts(argc, argv,
                   " --data --labels --val --val-labels --epochs --batch --lr --seed --save --weights --weights-prefix --resume "
                   "--trace --threads --replicas --microbatches --stage-threads --no-shuffle --label-column --no-scale ",
                   &o))
        return 1;
    if (!o.data) return pnetrt_die("train needs --data FILE");
    if (o.val_labels && !o.val)
        return pnetrt_die("--val-labels %s needs --val FILE, the validation data", o.val_labels);
    if (o.resume && o.weights)
        return pnetrt_die("--resume %s and --weights %s both give the starting weights; give one of them", o.resume, o.weights);
    /* The checkpoint must not overwrite the data; --save CKPT --resume CKPT is the normal flow. */
    if (pnetrt_check_overwrite("--save", o.save, "the checkpoint", "--data", o.data) ||
        pnetrt_check_overwrite("--save", o.save, "the checkpoint", "--labels", o.labels) ||
        pnetrt_check_overwrite("--save", o.save, "the checkpoint", "--val", o.val) ||
        pnetrt_check_overwrite("--save", o.save, "the checkpoint", "--val-labels", o.val_labels))
        return 1;
    if (o.save && check_save(o.save)) return 1;
    progress prog = {.every = 10};
    const char *pe = getenv("PNET_PROGRESS");
    if (pe && *pe) {
        char *end;
        prog.every = strtod(pe, &end);
        if (*end || !(prog.every >= 0) || !isfinite(prog.every))
            return pnetrt_die("PNET_PROGRESS needs the seconds between progress lines (0: none), not '%s'", pe);
    }
    int64_t features = 0, te = 0;
    int kind = 0;
    if (io_shape(d, &features, &kind, &te)) return 1;
    pnetrt_data ds = {0}, vs = {0};
    if (load(d, &o, o.data, o.labels, &ds) || (o.val && load(d, &o, o.val, o.val_labels, &vs))) {
        pnetrt_data_free(&ds);
        pnetrt_data_free(&vs);
        return 1;
    }
    pnetrt_model *m = NULL;
    if (open_trainer(d, &o, true, &m)) {
        pnetrt_data_free(&ds);
        pnetrt_data_free(&vs);
        return 1;
    }
    int64_t epochs = o.epochs ? o.epochs : d->train->epochs > 0 ? d->train->epochs : 1;
    int64_t B = o.batch ? o.batch : d->train->batch > 0 ? d->train->batch : 32;
    int64_t start_epoch = 0, start_batch = 0;
    int rc = 0;
    bool shuffle = !o.no_shuffle;
    if (o.resume) {
        /* The checkpoint's step, seed, learning rate, batch size and order, unless overridden. */
        int64_t cb;
        int cs;
        if (pnetrt_load(m, o.resume, &start_epoch, &start_batch)) rc = pnetrt_die("%s", pnetrt_last_error(m));
        else if (!pnetrt_train_order(m, &cb, &cs))
            rc = pnetrt_die("%s: not a pnet checkpoint (no optimizer state or epoch); to start from these weights use --weights",
                     o.resume);
        if (!rc && o.have_lr) rc = pnetrt_set_lr(m, o.lr);
        if (!rc && o.have_seed) rc = pnetrt_set_train_seed(m, (uint64_t)o.seed);
        if (!rc && !o.batch && cb > 0) B = cb;
        if (!rc && !o.no_shuffle && cs >= 0) shuffle = cs == 1;
        if (!rc && start_batch > 0 && ((o.batch && o.batch != cb) || (o.no_shuffle && cs == 1)))
            rc = pnetrt_die("%s: the checkpoint stopped in the middle of an epoch at batch size %lld%s; resume it with the same "
                     "batch size and order", o.resume, (long long)cb, cs == 1 ? ", shuffled" : "");
        /* A checkpoint taken mid-epoch needs as many batches in this data set. One taken after an
         * epoch's last batch resumes at the next epoch. */
        int64_t nbatches = (ds.n + B - 1) / B;
        if (!rc && start_batch > 0 && start_batch == nbatches) {
            start_epoch++;
            start_batch = 0;
        }
        if (!rc && start_batch > nbatches && start_epoch < epochs)
            rc = pnetrt_die("%s: the checkpoint stopped at batch %lld of epoch %lld, but %s gives only %lld batch%s of %lld",
                            o.resume, (long long)start_batch, (long long)start_epoch + 1, o.data, (long long)nbatches,
                            nbatches == 1 ? "" : "es", (long long)B);
        if (!rc && start_epoch >= epochs)
            fprintf(stderr, "%s: note: %s is a finished run of %lld epoch%s (--epochs %lld): nothing to train; give a larger "
                    "--epochs to train on\n", pnetrt_prog, o.resume, (long long)start_epoch, start_epoch == 1 ? "" : "s",
                    (long long)epochs);
        if (rc) {
            pnetrt_destroy(m);
            pnetrt_data_free(&ds);
            pnetrt_data_free(&vs);
            return rc;
        }
    }
    if (!rc) rc = pnetrt_set_train_order(m, B, shuffle ? 1 : 0);
    uint64_t seed = pnetrt_train_seed(m);
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)ds.n);
    batch_buf b = {malloc((size_t)(B * ds.features * 4)), malloc((size_t)(B * (ds.labels ? 1 : ds.target_elems) * 4))};
    if (!rc && (!idx || !b.x || !b.y))
        rc = pnetrt_die("out of memory for the batches (%.0f bytes)",
                        (double)B * (double)(ds.features + (ds.labels ? 1 : ds.target_elems)) * 4.0 + 8.0 * (double)ds.n);
    struct sigaction old[3];
    catch_stop_signals(old);
    prog.tty = isatty(STDOUT_FILENO);
    prog.run_t0 = prog.last = pnetrt_now();
    int64_t nb = (ds.n + B - 1) / B;
    bool told = false;
    for (int64_t e = start_epoch; e < epochs && !rc; e++) {
        epoch_order(idx, ds.n, seed, e, shuffle);
        double lsum = 0, t0 = pnetrt_now();
        if (prog.tty) prog.last = 0; /* the bar shows at the epoch's first step */
        int64_t good = 0, seen = 0, k_done = e == start_epoch ? start_batch : 0;
        for (int64_t k = k_done; k < nb && !rc; k++) {
            int64_t n = ds.n - k * B < B ? ds.n - k * B : B;
            gather(d, &ds, idx + k * B, n, &b);
            const void *in[2] = {b.x, b.y};
            float loss;
            if (pnetrt_train_step(m, n, in, &loss)) {
                rc = pnetrt_die("%s", pnetrt_last_error(m));
                break;
            }
            if (!told) { /* the schedule, once, after the first step chose it */
                told = true;
                printf("schedule: %s\n", pnetrt_train_schedule(m));
            }
            lsum += (double)loss * (double)n;
            good += pnetrt_train_last_correct(m);
            seen += n;
            k_done = k + 1;
            prog.run_samples += n;
            progress_show(&prog, e, epochs, k_done, nb, B, ds.n, seen, lsum, t0);
            if (interrupted) break;
        }
        if (rc) break;
        /* A signal stops the run after its step. Inside an epoch the checkpoint holds that batch; after an
         * epoch's last step it is the checkpoint an uninterrupted run writes after that epoch, and after
         * the run's last step the run is finished: nothing is left to resume. */
        bool stop = interrupted != 0, epoch_done = !stop || k_done == nb;
        if (stop && !epoch_done) {
            if (prog.tty && prog.width) printf("\n");
            int code = 128 + interrupted;
            if (o.save) {
                if (pnetrt_save(m, o.save, true, e, k_done)) code = pnetrt_die("%s", pnetrt_last_error(m));
                else
                    fprintf(stderr, "%s: interrupted%s: checkpoint written to %s (epoch %lld, batch %lld); continue with --resume %s\n",
                            pnetrt_prog, signal_label(interrupted), o.save, (long long)e + 1, (long long)k_done, o.save);
            } else {
                fprintf(stderr, "%s: interrupted%s (no --save given: nothing written)\n", pnetrt_prog, signal_label(interrupted));
            }
            rc = code;
            break;
        }
        double secs = pnetrt_now() - t0;
        progress_clear(&prog);
        printf("epoch %lld/%lld: loss %.4f", (long long)e + 1, (long long)epochs, seen ? lsum / (double)seen : 0.0);
        if (kind == PNETRT_LABELS_CLASS) printf(", accuracy %.4f", seen ? (double)good / (double)seen : 0.0);
        printf(", %.0f samples/s", secs > 0 ? (double)seen / secs : 0.0);
        if (o.val && !stop) {
            double vl, va;
            if (evaluate(d, m, &vs, B, &vl, &va, NULL)) {
                rc = 1;
                break;
            }
            printf(", val_loss %.4f", vl);
            if (kind == PNETRT_LABELS_CLASS) printf(", val_accuracy %.4f", va);
        }
        printf("\n");
        fflush(stdout);
        prog.last = pnetrt_now();
        if (o.save && pnetrt_save(m, o.save, true, e + 1, 0)) rc = pnetrt_die("%s", pnetrt_last_error(m));
        if (stop && !rc) {
            const char *sig = signal_label(interrupted);
            char where[4200] = " (no --save given: nothing written)";
            if (o.save) snprintf(where, sizeof where, ": checkpoint written to %s", o.save);
            if (e + 1 == epochs)
                fprintf(stderr, "%s: interrupted%s during the last step, which completed: training is finished (%lld epoch%s)%s\n",
                        pnetrt_prog, sig, (long long)epochs, epochs == 1 ? "" : "s", where);
            else if (o.save)
                fprintf(stderr, "%s: interrupted%s after epoch %lld%s; continue with --resume %s\n", pnetrt_prog, sig,
                        (long long)e + 1, where, o.save);
            else
                fprintf(stderr, "%s: interrupted%s after epoch %lld%s\n", pnetrt_prog, sig, (long long)e + 1, where);
            rc = 128 + interrupted;
        }
    }
    restore_stop_signals(old);
    rc = close_trainer(m, &o, rc);
    pnetrt_data_free(&ds);
    pnetrt_data_free(&vs);
    free(idx);
    free(b.x);
    free(b.y);
    return rc;
}

int pnetrt_cmd_eval(const pnetrt_desc *d, int argc, char **argv) {
    topts o = {0};
    if (parse_opts(argc, argv,
                   " --data --labels --weights --weights-prefix --batch --threads --replicas --trace --label-column --no-scale --exact ",
                   &o))
        return 1;
    if (!o.data) return pnetrt_die("eval needs --data FILE");
    if (!o.weights && !d->embedded) return pnetrt_die("eval needs --weights W.safetensors (the network has no embedded weights)");
    pnetrt_data ds = {0};
    if (load(d, &o, o.data, o.labels, &ds)) {
        pnetrt_data_free(&ds);
        return 1;
    }
    /* Only the parameters and buffers: a checkpoint of any optimizer, or plain weights, will do. */
    pnetrt_model *m = NULL;
    int rc = open_trainer(d, &o, false, &m);
    double loss = 0, acc = 0;
    int64_t good = 0;
    if (!rc) rc = evaluate(d, m, &ds, o.batch ? o.batch : 256, &loss, &acc, &good);
    if (!rc && o.exact) { /* every digit, to compare runs bit for bit */
        if (d->train->loss == PNETRT_LOSS_CROSS_ENTROPY)
            printf("accuracy: %.17g (%lld of %lld)\n", acc, (long long)good, (long long)ds.n);
        printf("loss: %.17g\n", loss);
    } else if (!rc) {
        if (d->train->loss == PNETRT_LOSS_CROSS_ENTROPY) printf("accuracy: %.4f\n", acc);
        printf("loss: %.4f\n", loss);
    }
    rc = close_trainer(m, &o, rc);
    pnetrt_data_free(&ds);
    return rc;
}

/* Training throughput on random data: steps for about --seconds, after one warm-up step. */
int pnetrt_cmd_bench_train(const pnetrt_desc *d, int argc, char **argv) {
    topts o = {0};
    if (parse_opts(argc, argv, " --train --batch --seconds --threads --replicas --weights --weights-prefix --trace ", &o)) return 1;
    int64_t features = 0, te = 0;
    int kind = 0;
    if (io_shape(d, &features, &kind, &te)) return 1;
    int64_t B = o.batch ? o.batch : d->train->batch > 0 ? d->train->batch : 32;
    double secs = o.seconds > 0 ? o.seconds : 2.0;
    pnetrt_model *m = NULL;
    if (open_trainer(d, &o, true, &m)) return 1;
    float *x = malloc((size_t)(B * features) * 4);
    void *y = malloc((size_t)(B * (kind == PNETRT_LABELS_CLASS ? 1 : te)) * 4);
    if (!x || !y)
        return pnetrt_die("out of memory for a batch of %lld synthetic samples (%.0f bytes)", (long long)B,
                          (double)B * (double)(features + (kind == PNETRT_LABELS_CLASS ? 1 : te)) * 4.0);
    uint64_t s = 42;
    for (int64_t i = 0; i < B * features; i++)
        x[i] = d->inputs[0].dtype == 1 ? 0.0f : (float)((double)(splitmix(&s) >> 11) / 9007199254740992.0);
    for (int64_t i = 0; i < B * (kind == PNETRT_LABELS_CLASS ? 1 : te); i++) {
        if (kind == PNETRT_LABELS_CLASS) ((int32_t *)y)[i] = (int32_t)(splitmix(&s) % (uint64_t)d->train->classes);
        else ((float *)y)[i] = (float)((double)(splitmix(&s) >> 11) / 9007199254740992.0);
    }
    const void *in[2] = {x, y};
    int rc = 0;
    float loss;
    if (pnetrt_train_step(m, B, in, &loss)) rc = pnetrt_die("%s", pnetrt_last_error(m));
    int64_t steps = 0;
    double t0 = pnetrt_now(), t = t0, c0 = pnetrt_comm_seconds(), bubble = 0, predicted = -1;
    while (!rc && pnetrt_bench_more(t - t0 < secs || steps < 3)) {
        if (pnetrt_train_step(m, B, in, &loss)) rc = pnetrt_die("%s", pnetrt_last_error(m));
        double pr = -1, bu = pnetrt_train_bubble(m, &pr);
        if (bu >= 0) bubble += bu, predicted = pr;
        steps++;
        t = pnetrt_now();
    }
    double comm = pnetrt_comm_seconds() - c0;
    if (!rc) {
        printf("training: batch %lld, %s\n", (long long)B, pnetrt_train_schedule(m));
        printf("throughput: %.1f samples/s\n", (double)(steps * B) / (t - t0));
        printf("step: %.3f ms\n", (t - t0) / (double)steps * 1e3);
        if (predicted >= 0)
            printf("bubble: measured %.1f%% (mean of %lld steps: the stages' idle share of a step), predicted %.1f%% for "
                   "GPipe and for 1F1B = (S-1)/(M+S-1) with S = %lld stages, M micro-batches per replica\n",
                   100 * bubble / (double)steps, (long long)steps, 100 * predicted, (long long)d->train->nstages);
        pnetrt_bench_comm_report(comm, t - t0);
        pnetrt_bench_memory_report(d->param_floats);
    }
    rc = close_trainer(m, &o, rc);
    free(x);
    free(y);
    return rc;
}
