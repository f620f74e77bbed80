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

/* A checkpoint's (optimizer) or weights' tensors in file order: the parameters, then each state
 * vector's trained ones; each tensor's bytes (on a stage rank, valid for its own stage's) and the
 * pipeline stage that holds it. */
typedef struct save_list {
    int n, cap;
    const char **names;
    int *ranks, *stage;
    int64_t (*shapes)[8];
    const float **data;
    char **owned;
} save_list;

static void list_free(save_list *l) {
    for (int i = 0; l->owned && i < l->cap; i++) free(l->owned[i]);
    free(l->owned);
    free(l->names);
    free(l->ranks);
    free(l->stage);
    free(l->shapes);
    free(l->data);
}

/* The tensors of params and, with a trainer, its optimizer state. Returns 0, or 1 with the error
 * set. */
static int list_tensors(pnetrt_model *m, pnetrt_trainer *t, const float *params, save_list *l) {
    const pnetrt_desc *d = pnetrt_model_desc(m);
    const char *const *st_names = NULL;
    int nstate = t ? state_names(d, &st_names) : 0;
    int64_t np = d->nparams;
    *l = (save_list){.cap = (int)(np * (1 + nstate))};
    l->names = calloc((size_t)l->cap + 1, sizeof *l->names);
    l->ranks = calloc((size_t)l->cap + 1, sizeof *l->ranks);
    l->stage = calloc((size_t)l->cap + 1, sizeof *l->stage);
    l->shapes = calloc((size_t)l->cap + 1, sizeof *l->shapes);
    l->data = calloc((size_t)l->cap + 1, sizeof *l->data);
    l->owned = calloc((size_t)l->cap + 1, sizeof *l->owned);
    if (!l->names || !l->ranks || !l->stage || !l->shapes || !l->data || !l->owned) return pnetrt_train_failf(m, "out of memory");
    for (int64_t p = 0; p < np; p++) {
        const pnetrt_tensor_desc *td = &d->params[p];
        l->names[l->n] = td->name;
        l->ranks[l->n] = (int)td->rank;
        l->stage[l->n] = d->param_stage ? (int)d->param_stage[p] : 0;
        memcpy(l->shapes[l->n], td->shape, sizeof l->shapes[l->n]);
        l->data[l->n++] = params + td->offset;
    }
    for (int k = 0; k < nstate; k++)
        for (int64_t p = 0; p < np; p++) {
            const pnetrt_tensor_desc *td = &d->params[p];
            if (!td->trainable) continue;
            size_t len = strlen(td->name) + strlen(st_names[k]) + 16;
            char *name = l->owned[l->n] = malloc(len);
            if (!name) return pnetrt_train_failf(m, "out of memory");
            snprintf(name, len, "optimizer.%s.%s", td->name, st_names[k]);
            l->names[l->n] = name;
            l->ranks[l->n] = (int)td->rank;
            l->stage[l->n] = d->param_stage ? (int)d->param_stage[p] : 0;
            memcpy(l->shapes[l->n], td->shape, sizeof l->shapes[l->n]);
            l->data[l->n++] = pnetrt_train_opt(t, k) + td->offset;
        }
    return 0;
}

/* The file's metadata, in the buffers of a save_meta. */
typedef struct save_meta {
    char ep[32], bt[32], stp[32], sd[32], lr[40], bs[32], sh[8];
    const char *keys[10], *vals[10];
    int n;
} save_meta;

static void meta_fill(const pnetrt_desc *d, const pnetrt_trainer *t, int64_t epoch, int64_t batch_in_epoch, save_meta *x) {
    snprintf(x->ep, sizeof x->ep, "%lld", (long long)epoch);
    snprintf(x->bt, sizeof x->bt, "%lld", (long long)batch_in_epoch);
    snprintf(x->stp, sizeof x->stp, "%lld", (long long)(t ? t->step : 0));
    snprintf(x->sd, sizeof x->sd, "%llu", (unsigned long long)(t ? t->seed : 0));
    snprintf(x->lr, sizeof x->lr, "%.17g", t ? t->lr : 0.0);
    snprintf(x->bs, sizeof x->bs, "%lld", (long long)(t ? t->batch_size : 0));
    snprintf(x->sh, sizeof x->sh, "%d", t ? t->shuffle : -1);
    const char *keys[] = {"format", "network", "epoch", "batch", "step", "seed", "lr", "batch_size", "shuffle", "optimizer"};
    const char *vals[] = {t ? "pnet-checkpoint" : "pnet-weights", d->name, x->ep, x->bt, x->stp, x->sd, x->lr, x->bs, x->sh,
                          d->train ? optimizer_name(d) : ""};
    memcpy(x->keys, keys, sizeof keys);
    memcpy(x->vals, vals, sizeof vals);
    x->n = t ? 10 : 2;
}

/* Writes the checkpoint (optimizer) or weights. */
static int save(pnetrt_model *m, const char *path, bool optimizer, int64_t epoch, int64_t batch_in_epoch) {
    if (!pnetrt_ready(m)) return 1;
    const pnetrt_desc *d = pnetrt_model_desc(m);
    pnetrt_trainer *t = optimizer ? pnetrt_trainer_get(m) : NULL;
    if (optimizer && !t) return 1;
    float *params = pnetrt_params_mut(m);
    if (!params) return pnetrt_model_partial(m) ? 1 : pnetrt_train_failf(m, "out of memory");
    save_list l;
    int rc = list_tensors(m, t, params, &l);
    save_meta x;
    meta_fill(d, t, epoch, batch_in_epoch, &x);
    char err[512];
    if (!rc && pnetrt_st_write(path, l.n, l.names, l.ranks, (const int64_t(*)[8])l.shapes, l.data, x.n, x.keys, x.vals, err,
                               sizeof err)) {
        pnetrt_fail(m, err);
        rc = 1;
    }
    list_free(&l);
    return rc;
}

/* The bytes of a staged save that travel at a time: a tensor's piece. */
#define SAVE_PIECE ((size_t)8 << 20)
#define SAVE_TAG 3000

/* Rank 0's side of a staged save: its own stage's tensors from its buffers, the others' received
 * piece by piece from the rank of pipeline 0 that holds them (rank s for stage s). next_i and
 * next_off follow the pieces asked for, so that after a failed write the rest can still be
 * received. */
typedef struct save_recv {
    pnetrt_comm *comm;
    const save_list *l;
    pnetrt_msgs *q;
    char *buf;
    int next_i;
    size_t next_off;
} save_recv;

static const void *piece_of(void *ctx, int i, size_t off, size_t len, char *why, size_t whylen) {
    save_recv *r = ctx;
    r->next_i = i;
    r->next_off = off + len;
    if (r->l->stage[i] == 0) return (const char *)r->l->data[i] + off;
    if (pnetrt_comm_irecv(r->comm, r->buf, (int64_t)len, r->l->stage[i], SAVE_TAG, r->q, why, whylen) ||
        pnetrt_msgs_wait(r->q, why, whylen))
        return NULL;
    return r->buf;
}

/* The bytes of tensor i, or 0. */
static size_t tensor_bytes(const save_list *l, int i) {
    size_t b = 4;
    for (int k = 0; k < l->ranks[i]; k++) b *= (size_t)l->shapes[i][k];
    return b;
}

/* The bytes of the piece at off of a tensor of b bytes. */
static size_t piece_len(size_t b, size_t off) { return b - off < SAVE_PIECE ? b - off : SAVE_PIECE; }

/* One pipeline stage per rank: rank 0 writes the file that one process would, tensor by tensor,
 * and the rank of pipeline 0 that holds each other stage sends it that stage's parameters and
 * optimizer state in pieces, so no rank ever holds another stage's tensors (the other pipelines
 * hold the same). Returns 0 on this rank's success, or 1 with the error set. */
static int save_staged(pnetrt_model *m, const char *path, bool optimizer, int64_t epoch, int64_t batch_in_epoch) {
    const pnetrt_desc *d = pnetrt_model_desc(m);
    pnetrt_comm *comm = pnetrt_model_comm(m);
    int me = pnetrt_comm_rank(comm), S = (int)d->nstages;
    pnetrt_trainer *t = optimizer ? pnetrt_trainer_get(m) : NULL;
    float *params = pnetrt_params_mut(m);
    save_list l = {0};
    bool ok = pnetrt_ready(m) && params && (!optimizer || t) && !list_tensors(m, t, params, &l);
    if (!pnetrt_comm_all_ok(comm, ok)) {
        list_free(&l);
        return ok ? pnetrt_train_failf(m, "another rank could not send its stage") : 1;
    }
    int rc = 0;
    char err[512] = "";
    if (me > 0 && me < S) {
        /* Every piece of this stage's tensors, in file order, posted at once from the buffers. */
        int msgs = 0;
        for (int i = 0; i < l.n; i++)
            if (l.stage[i] == me) msgs += (int)((tensor_bytes(&l, i) + SAVE_PIECE - 1) / SAVE_PIECE);
        pnetrt_msgs *q = pnetrt_msgs_new(msgs + 1);
        if (!q) rc = pnetrt_train_failf(m, "out of memory");
        for (int i = 0; i < l.n && !rc; i++)
            for (size_t off = 0, b = tensor_bytes(&l, i); l.stage[i] == me && off < b && !rc; off += SAVE_PIECE)
                rc = pnetrt_comm_isend(comm, (const char *)l.data[i] + off, (int64_t)piece_len(b, off), 0, SAVE_TAG, q, err,
                                       sizeof err);
        if (q && pnetrt_msgs_wait(q, rc ? (char[64]){0} : err, rc ? 64 : sizeof err)) rc = 1;
        pnetrt_msgs_free(q);
        if (rc) pnetrt_train_failf(m, "sending stage %d's tensors to rank 0: %s", me, err);
    } else if (me == 0) {
        save_meta x;
        meta_fill(d, t, epoch, batch_in_epoch, &x);
        save_recv r = {comm, &l, pnetrt_msgs_new(1), malloc(SAVE_PIECE), 0, 0};
        if (!r.q || !r.buf) rc = pnetrt_train_failf(m, "out of memory");
        else if (pnetrt_st_write_pieces(path, l.n, l.names, l.ranks, (const int64_t(*)[8])l.shapes, SAVE_PIECE, piece_of, &r, x.n,
                                        x.keys, x.vals, err, sizeof err)) {
            pnetrt_fail(m, err);
            rc = 1;
            /* The other stages' ranks send every piece: take the ones not asked for, so none waits. */
            bool broken = false;
            for (int i = r.next_i; i < l.n && !broken; i++, r.next_off = 0)
                for (size_t b = tensor_bytes(&l, i); l.stage[i] > 0 && r.next_off < b && !broken; r.next_off += SAVE_PIECE) {
                    char why[64];
                    int64_t len = (int64_t)piece_len(b, r.next_off);
                    broken = pnetrt_comm_irecv(comm, r.buf, len, l.stage[i], SAVE_TAG, r.q, why, sizeof why) ||
                             pnetrt_msgs_wait(r.q, why, sizeof why);
                }
        }
        free(r.buf);
        pnetrt_msgs_free(r.q);
    }
    list_free(&l);
    return rc;
}

/* On ranks, rank 0 writes the file (every rank holds the same weights and optimizer state; with
 * one stage per rank, from the stages' ranks piece by piece) and the others learn whether it could. */
static int save_ranked(pnetrt_model *m, const char *path, bool optimizer, int64_t epoch, int64_t batch_in_epoch) {
    pnetrt_comm *comm = pnetrt_model_comm(m);
    const pnetrt_desc *d = pnetrt_model_desc(m);
    bool staged = pnetrt_model_rank_stage(m) >= 0 && d->train && d->train->nstages > 1;
    /* Ranks that updated slices of the optimizer state gather it first. */
    if (optimizer && d->train && pnetrt_train_opt_whole(m)) return 1;
    int rc = staged ? save_staged(m, path, optimizer && d->train, epoch, batch_in_epoch)
                    : pnetrt_comm_rank(comm) == 0 ? save(m, path, optimizer, epoch, batch_in_epoch) : 0;
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
