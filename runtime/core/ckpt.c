/* Checkpoints of a model in training: save and load the parameters and, for a checkpoint, the
 * optimizer's state (named as PyTorch names it) and the training position, as safetensors. The
 * metadata is read and checked by ckpt.h. On ranks, rank 0 writes the file. */
#include "ckpt.h"
#include "comm.h"
#include "io.h"
#include "model.h"
#include "train_impl.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const sgd_state[] = {"momentum_buffer"};
static const char *const adam_state[] = {"exp_avg", "exp_avg_sq"};

static int state_names(const pnetrt_desc *d, const char *const **names) {
    if (d->train->optimizer == PNETRT_OPT_ADAM) {
        *names = adam_state;
        return 2;
    }
    *names = sgd_state;
    return d->train->momentum != 0 ? 1 : 0;
}

static const char *optimizer_name(const pnetrt_desc *d) {
    return d->train->optimizer == PNETRT_OPT_ADAM ? "adam" : "sgd";
}

/* The optimizer whose state a checkpoint holds: its "optimizer" metadata, or, in checkpoints written
 * before that key, the names of its state tensors; NULL when it cannot tell. */
static const char *file_optimizer(const pnetrt_st *st) {
    const char *o = pnetrt_st_meta(st, "optimizer");
    if (o && (!strcmp(o, "sgd") || !strcmp(o, "adam"))) return o;
    for (int i = 0; i < pnetrt_st_count(st); i++) {
        const char *n = pnetrt_st_name(st, i);
        size_t len = strlen(n);
        if (strncmp(n, "optimizer.", 10)) continue;
        if (len > 8 && !strcmp(n + len - 8, ".exp_avg")) return "adam";
        if (len > 16 && !strcmp(n + len - 16, ".momentum_buffer")) return "sgd";
    }
    return NULL;
}

/* Writes the checkpoint (optimizer) or weights; the optimizer state from `opt` (every element,
 * state vector k at opt + k * param_floats) when given, else from the trainer's. */
static int save(pnetrt_model *m, const char *path, bool optimizer, int64_t epoch, int64_t batch_in_epoch, const float *opt) {
    if (!pnetrt_ready(m)) return 1;
    const pnetrt_desc *d = pnetrt_model_desc(m);
    pnetrt_trainer *t = optimizer ? pnetrt_trainer_get(m) : NULL;
    if (optimizer && !t) return 1;
    const char *const *st_names = NULL;
    int nstate = t ? state_names(d, &st_names) : 0;
    int64_t np = d->nparams;
    int cap = (int)(np * (1 + nstate));
    const char **names = calloc((size_t)cap + 1, sizeof *names);
    int *ranks = calloc((size_t)cap + 1, sizeof *ranks);
    int64_t (*shapes)[8] = calloc((size_t)cap + 1, sizeof *shapes);
    const float **data = calloc((size_t)cap + 1, sizeof *data);
    char **owned = calloc((size_t)cap + 1, sizeof *owned);
    int n = 0, rc = 1;
    float *params = pnetrt_params_mut(m);
    if (!names || !ranks || !shapes || !data || !owned || !params) {
        if (params || !pnetrt_model_partial(m)) pnetrt_train_failf(m, "out of memory");
        goto done;
    }
    for (int64_t p = 0; p < np; p++) {
        const pnetrt_tensor_desc *td = &d->params[p];
        names[n] = td->name;
        ranks[n] = (int)td->rank;
        memcpy(shapes[n], td->shape, sizeof shapes[n]);
        data[n++] = params + td->offset;
    }
    for (int k = 0; k < nstate; k++)
        for (int64_t p = 0; p < np; p++) {
            const pnetrt_tensor_desc *td = &d->params[p];
            if (!td->trainable) continue;
            size_t len = strlen(td->name) + strlen(st_names[k]) + 16;
            owned[n] = malloc(len);
            if (!owned[n]) {
                pnetrt_train_failf(m, "out of memory");
                goto done;
            }
            snprintf(owned[n], len, "optimizer.%s.%s", td->name, st_names[k]);
            names[n] = owned[n];
            ranks[n] = (int)td->rank;
            memcpy(shapes[n], td->shape, sizeof shapes[n]);
            data[n++] = (opt ? opt + (size_t)k * (size_t)d->param_floats : pnetrt_train_opt(t, k)) + td->offset;
        }
    char ep[32], bt[32], stp[32], sd[32], lr[40];
    snprintf(ep, sizeof ep, "%lld", (long long)epoch);
    snprintf(bt, sizeof bt, "%lld", (long long)batch_in_epoch);
    snprintf(stp, sizeof stp, "%lld", (long long)(t ? t->step : 0));
    snprintf(sd, sizeof sd, "%llu", (unsigned long long)(t ? t->seed : 0));
    snprintf(lr, sizeof lr, "%.17g", t ? t->lr : 0.0);
    char bs[32], sh[8];
    snprintf(bs, sizeof bs, "%lld", (long long)(t ? t->batch_size : 0));
    snprintf(sh, sizeof sh, "%d", t ? t->shuffle : -1);
    const char *keys[] = {"format", "network", "epoch", "batch", "step", "seed", "lr", "batch_size", "shuffle", "optimizer"};
    const char *vals[] = {t ? "pnet-checkpoint" : "pnet-weights", d->name, ep, bt, stp, sd, lr, bs, sh,
                          d->train ? optimizer_name(d) : ""};
    char err[512];
    if (pnetrt_st_write(path, n, names, ranks, (const int64_t(*)[8])shapes, data, t ? 10 : 2, keys, vals, err, sizeof err)) {
        pnetrt_fail(m, err);
        goto done;
    }
    rc = 0;
done:
    for (int i = 0; i < cap; i++) free(owned ? owned[i] : NULL);
    free(owned);
    free(names);
    free(ranks);
    free(shapes);
    free(data);
    return rc;
}

/* One pipeline stage per rank: rank s of pipeline 0 holds stage s's parameters and optimizer state
 * (every pipeline the same); rank 0 receives each stage's elements from it, so that it writes the
 * file one process would: the parameters into its own buffer, the optimizer state into *whole
 * (every element; rank 0's optimizer state holds its stage's alone), which the caller frees with
 * pnetrt_zunmap. Returns 0, or 1 with the error set. */
static int gather_stages(pnetrt_model *m, bool optimizer, float **whole) {
    const pnetrt_desc *d = pnetrt_model_desc(m);
    pnetrt_comm *comm = pnetrt_model_comm(m);
    int me = pnetrt_comm_rank(comm), S = (int)d->nstages;
    pnetrt_trainer *t = d->train ? pnetrt_trainer_get(m) : NULL;
    float *params = pnetrt_params_mut(m);
    bool ok = t && params && pnetrt_train_stage_map(m, t);
    if (!pnetrt_comm_all_ok(comm, ok)) return ok ? pnetrt_train_failf(m, "another rank could not send its stage") : 1;
    if (me >= S) return 0; /* the other pipelines hold the same */
    int64_t P = d->param_floats, slabs = 1 + (optimizer ? d->train->opt_floats / (P > 0 ? P : 1) : 0);
    if (me == 0 && slabs > 1) {
        if (!(*whole = pnetrt_zmap((size_t)(d->train->opt_floats + 16) * sizeof(float))))
            return pnetrt_train_failf(m, "out of memory for the optimizer state: %.0f bytes needed", 4.0 * (double)d->train->opt_floats);
        for (int j = t->stage_first[0]; j < t->stage_first[1]; j++)
            for (int64_t k = 1; k < slabs; k++) {
                pnetrt_range g = t->stage_ranges[j];
                memcpy(*whole + (k - 1) * P + g.lo, pnetrt_train_opt(t, k - 1) + g.lo, (size_t)(g.hi - g.lo) * sizeof(float));
            }
    }
    int64_t msgs = 0;
    for (int s = me == 0 ? 1 : me; s < (me == 0 ? S : me + 1); s++) msgs += (t->stage_first[s + 1] - t->stage_first[s]) * slabs;
    pnetrt_msgs *q = pnetrt_msgs_new((int)msgs + 1);
    if (!q) return pnetrt_train_failf(m, "out of memory");
    char err[256] = "";
    int rc = 0;
    for (int s = me == 0 ? 1 : me; s < (me == 0 ? S : me + 1) && !rc; s++)
        for (int j = t->stage_first[s]; j < t->stage_first[s + 1] && !rc; j++)
            for (int64_t k = 0; k < slabs && !rc; k++) {
                float *base = k == 0 ? params : me == 0 ? *whole + (k - 1) * P : pnetrt_train_opt(t, k - 1);
                pnetrt_range g = t->stage_ranges[j];
                int tag = 3000 + (int)((j - t->stage_first[s]) * slabs + k);
                rc = me == 0 ? pnetrt_comm_irecv(comm, base + g.lo, (g.hi - g.lo) * 4, s, tag, q, err, sizeof err)
                             : pnetrt_comm_isend(comm, base + g.lo, (g.hi - g.lo) * 4, 0, tag, q, err, sizeof err);
            }
    if (pnetrt_msgs_wait(q, rc ? (char[64]){0} : err, rc ? 64 : sizeof err)) rc = 1;
    pnetrt_msgs_free(q);
    return rc ? pnetrt_train_failf(m, "gathering the stages' parameters: %s", err) : 0;
}

/* On ranks, rank 0 writes the file (every rank holds the same weights and optimizer state; with
 * one stage per rank, after it gathers the stages') and the others learn whether it could. */
static int save_ranked(pnetrt_model *m, const char *path, bool optimizer, int64_t epoch, int64_t batch_in_epoch) {
    pnetrt_comm *comm = pnetrt_model_comm(m);
    const pnetrt_desc *d = pnetrt_model_desc(m);
    bool staged = pnetrt_model_rank_stage(m) >= 0 && d->train && d->train->nstages > 1;
    /* Ranks that updated slices of the optimizer state gather it first. */
    if (optimizer && d->train && pnetrt_train_opt_whole(m)) return 1;
    float *whole = NULL;
    if (staged && gather_stages(m, optimizer && d->train, &whole)) {
        pnetrt_zunmap(whole);
        return 1;
    }
    int rc = pnetrt_comm_rank(comm) == 0 ? save(m, path, optimizer, epoch, batch_in_epoch, whole) : 0;
    pnetrt_zunmap(whole);
    if (!pnetrt_comm_all_ok(comm, rc == 0) && rc == 0) rc = pnetrt_train_failf(m, "rank 0 could not write %s", path);
    return rc;
}

int pnetrt_save(pnetrt_model *m, const char *path, bool optimizer, int64_t epoch, int64_t batch_in_epoch) {
    if (!m) return 1;
    pnetrt_lock(m);
    return pnetrt_unlock(m, save_ranked(m, path, optimizer, epoch, batch_in_epoch));
}

/* Whether this rank keeps parameter p: every one, unless it runs one pipeline stage and holds only
 * that stage's (the others are checked in the file, not read). */
static bool held(const pnetrt_model *m, int64_t p) {
    const pnetrt_desc *d = pnetrt_model_desc(m);
    return !pnetrt_model_partial(m) || d->param_stage[p] == pnetrt_model_rank_stage(m);
}

/* Parameter p (or its optimizer state) from the file into dst, or, one this rank does not keep,
 * only checked. */
static int read_held(pnetrt_model *m, pnetrt_st *st, int64_t p, const char *name, float *dst, char *err, size_t n) {
    const pnetrt_tensor_desc *t = &pnetrt_model_desc(m)->params[p];
    return held(m, p) ? pnetrt_st_read_f32(st, name, (int)t->rank, t->shape, dst, err, n)
                      : pnetrt_st_read_f32_range(st, name, (int)t->rank, t->shape, 0, 0, NULL, err, n);
}

/* Copies the elements of the parameters this rank keeps from src to dst (slab k of `slabs`). */
static void copy_held(pnetrt_model *m, float *dst, const float *src, int64_t slabs) {
    const pnetrt_desc *d = pnetrt_model_desc(m);
    if (!pnetrt_model_partial(m)) {
        memcpy(dst, src, (size_t)(d->param_floats * slabs) * sizeof(float));
        return;
    }
    for (int64_t k = 0; k < slabs; k++)
        for (int64_t p = 0; p < d->nparams; p++)
            if (held(m, p)) {
                int64_t at = k * d->param_floats + d->params[p].offset;
                memcpy(dst + at, src + at, (size_t)pnetrt_sample_elems(&d->params[p]) * sizeof(float));
            }
}

static int load(pnetrt_model *m, const char *path, int64_t *epoch, int64_t *batch_in_epoch) {
    if (!pnetrt_ready(m)) return 1;
    const pnetrt_desc *d = pnetrt_model_desc(m);
    if (epoch) *epoch = 0;
    if (batch_in_epoch) *batch_in_epoch = 0;
    char err[512];
    pnetrt_st *st;
    if (pnetrt_st_open(path, &st, err, sizeof err)) return pnetrt_fail(m, err);
    float *params = pnetrt_params_mut(m);
    if (!params) {
        pnetrt_st_close(st);
        return pnetrt_model_partial(m) ? 1 : pnetrt_train_failf(m, "out of memory");
    }
    /* Read into a copy, so a bad file leaves the model as it was; a stage rank's copy holds, and
     * touches, only its stage's parameters. */
    float *tmp = pnetrt_zmap((size_t)d->param_floats * sizeof(float) + 64);
    if (!tmp) {
        pnetrt_st_close(st);
        return pnetrt_train_failf(m, "out of memory");
    }
    copy_held(m, tmp, params, 1);
    for (int64_t p = 0; p < d->nparams; p++) {
        const pnetrt_tensor_desc *t = &d->params[p];
        if (read_held(m, st, p, t->name, tmp + t->offset, err, sizeof err)) {
            pnetrt_zunmap(tmp);
            pnetrt_st_close(st);
            return pnetrt_fail(m, err);
        }
    }
    if (pnetrt_ckpt_is_checkpoint(st) && d->train) {
        pnetrt_trainer *t = pnetrt_trainer_get(m);
        if (!t) {
            pnetrt_zunmap(tmp);
            pnetrt_st_close(st);
            return 1;
        }
        pnetrt_ckpt_meta meta;
        if (pnetrt_ckpt_meta_read(st, path, &meta, err, sizeof err)) {
            pnetrt_zunmap(tmp);
            pnetrt_st_close(st);
            return pnetrt_fail(m, err);
        }
        const char *fo = file_optimizer(st);
        if (fo && strcmp(fo, optimizer_name(d))) {
            pnetrt_train_failf(
                m, "%s: the checkpoint holds the state of the %s optimizer, but network '%s' trains with %s", path, fo,
                d->name, optimizer_name(d));
            pnetrt_zunmap(tmp);
            pnetrt_st_close(st);
            return 1;
        }
        const char *const *names;
        int nstate = state_names(d, &names);
        float *opt = pnetrt_zmap(((size_t)d->train->opt_floats + 16) * sizeof(float));
        if (!opt) {
            pnetrt_zunmap(tmp);
            pnetrt_st_close(st);
            return pnetrt_train_failf(m, "out of memory");
        }
        for (int k = 0; k < nstate; k++)
            for (int64_t p = 0; p < d->nparams; p++) {
                const pnetrt_tensor_desc *td = &d->params[p];
                if (!td->trainable) continue;
                char name[512];
                snprintf(name, sizeof name, "optimizer.%s.%s", td->name, names[k]);
                if (read_held(m, st, p, name, opt + (size_t)k * (size_t)d->param_floats + td->offset, err, sizeof err)) {
                    pnetrt_zunmap(opt);
                    pnetrt_zunmap(tmp);
                    pnetrt_st_close(st);
                    return pnetrt_fail(m, err);
                }
            }
        if (meta.lr > 0) t->lr = meta.lr;
        /* Into the trainer's optimizer state: every element, or a stage rank's stage's. */
        int64_t P = d->param_floats, slabs = d->train->opt_floats / (P > 0 ? P : 1);
        if (t->opt_first == 0 && t->opt_elems == P) {
            copy_held(m, t->opt, opt, slabs);
        } else {
            for (int64_t k = 0; k < slabs; k++)
                for (int64_t p = 0; p < d->nparams; p++) {
                    int64_t at = d->params[p].offset, n = pnetrt_sample_elems(&d->params[p]);
                    if (held(m, p) && at >= t->opt_first && at + n <= t->opt_first + t->opt_elems)
                        memcpy(pnetrt_train_opt(t, k) + at, opt + k * P + at, (size_t)n * sizeof(float));
                }
        }
        t->opt_comm = NULL; /* whole on every rank again */
        pnetrt_zunmap(opt);
        t->step = meta.step;
        t->seed = (uint64_t)meta.seed;
        t->batch_size = meta.batch_size;
        t->shuffle = meta.shuffle;
        t->checkpoint = true;
        if (epoch) *epoch = meta.epoch;
        if (batch_in_epoch) *batch_in_epoch = meta.batch;
    }
    copy_held(m, params, tmp, 1);
    pnetrt_zunmap(tmp);
    pnetrt_st_close(st);
    return 0;
}

int pnetrt_load(pnetrt_model *m, const char *path, int64_t *epoch, int64_t *batch_in_epoch) {
    if (!m) {
        if (epoch) *epoch = 0;
        if (batch_in_epoch) *batch_in_epoch = 0;
        return 1;
    }
    pnetrt_lock(m);
    return pnetrt_unlock(m, load(m, path, epoch, batch_in_epoch));
}

/* The embedding API's px_save and px_load: a checkpoint when the network trains, else weights. */
int pnetrt_save_file(pnetrt_model *m, const char *path) {
    if (!m) return 1;
    pnetrt_lock(m);
    int rc = !pnetrt_ready(m)  ? 1
             : !path || !*path ? pnetrt_train_failf(m, "no path to save to")
                               : save_ranked(m, path, pnetrt_model_desc(m)->train != NULL, 0, 0);
    return pnetrt_unlock(m, rc);
}

int pnetrt_load_file(pnetrt_model *m, const char *path) {
    if (!m) return 1;
    pnetrt_lock(m);
    int rc = !pnetrt_ready(m)  ? 1
             : !path || !*path ? pnetrt_train_failf(m, "no path to load from")
                               : load(m, path, NULL, NULL);
    return pnetrt_unlock(m, rc);
}
