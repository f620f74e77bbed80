/* The train { } block: training inputs, the loss, the optimizer and the settings batch, epochs and seed. */
#include "check_internal.h"

#include <math.h>
#include <string.h>

static const sig *optimizer_sig(const char *name) {
    static sig sgd, adam;
    static bool done;
    if (!done) {
        ck_parse_sig("lr:float momentum:float=0 weight_decay:float=0 nesterov:bool=false", &sgd);
        ck_parse_sig("lr:float beta1:float=0.9 beta2:float=0.999 eps:float=0.00000001 weight_decay:float=0", &adam);
        done = true;
    }
    return strcmp(name, "sgd") == 0 ? &sgd : strcmp(name, "adam") == 0 ? &adam : NULL;
}

/* optimizer = sgd(lr, momentum = 0, weight_decay = 0, nesterov = false) | adam(lr, ...) */
static void exec_optimizer(ck *c, scope *s, pn_expr *e) {
    pn_train *t = &c->g->train;
    const sig *sg = e->kind == PN_EX_CALL && !e->ns ? optimizer_sig(e->name) : NULL;
    if (!sg) {
        ck_error(c, e->loc, "optimizer must be sgd(...) or adam(...)");
        return;
    }
    value vals[8], tensors[64];
    bool given[8];
    int nt, ni = 0, nf = 0, nl = 0;
    naming nm = {.base = "optimizer"};
    bool ok = ck_bind(c, s, e, sg, e->name, &nm, vals, given, tensors, &nt);
    pn_strmap_free(&nm.counts);
    if (!ok) return;
    double fa[8];
    int64_t ia[8], list[8];
    for (int i = 0; i < sg->n; i++)
        if (!ck_convert_arg(c, e->name, &sg->p[i], &vals[i], ia, &ni, fa, &nf, list, &nl)) return;
    if (!(fa[0] > 0) || !isfinite(fa[0])) {
        ck_error(c, vals[0].loc, "learning rate must be positive");
        return;
    }
    t->lr = fa[0];
    if (strcmp(e->name, "sgd") == 0) {
        t->opt = PN_OPT_SGD;
        t->momentum = fa[1];
        t->weight_decay = fa[2];
        t->nesterov = ia[0];
        if (!(t->momentum >= 0 && t->momentum < 1)) ck_error(c, vals[1].loc, "momentum must be in [0, 1)");
        if (t->nesterov && t->momentum == 0) ck_error(c, vals[3].loc, "nesterov needs a positive momentum");
    } else {
        t->opt = PN_OPT_ADAM;
        t->beta1 = fa[1];
        t->beta2 = fa[2];
        t->eps = fa[3];
        t->weight_decay = fa[4];
        if (!(t->beta1 >= 0 && t->beta1 < 1)) ck_error(c, vals[1].loc, "beta1 must be in [0, 1)");
        if (!(t->beta2 >= 0 && t->beta2 < 1)) ck_error(c, vals[2].loc, "beta2 must be in [0, 1)");
        if (!(t->eps > 0)) ck_error(c, vals[3].loc, "eps must be positive");
    }
    if (!(t->weight_decay >= 0) || !isfinite(t->weight_decay)) ck_error(c, e->loc, "weight_decay must not be negative");
}

/* train { label : i32[batch]; loss = ...; optimizer = ...; batch = N; epochs = N; seed = N; } */
void ck_exec_train(ck *c, scope *s, pn_stmt *st, stctx *x) {
    pn_train *t = &c->g->train;
    static pn_loc first_train;
    if (!x->network) {
        ck_error(c, st->loc, "train { } can only appear in a network");
        return;
    }
    if (t->present) {
        ck_error(c, st->loc, "a network has only one train { } block");
        pn_note(c->d, first_train, "the first one is here");
        return;
    }
    first_train = st->loc;
    t->present = true;
    t->loss = -1;
    t->batch = 32;
    t->epochs = 1;
    t->seed = 0;
    c->in_train = true;
    static const char *settings[] = {"loss", "optimizer", "batch", "epochs", "seed"};
    pn_loc seen[5];
    bool have[5] = {0};
    for (int i = 0; i < st->body.len; i++) {
        pn_stmt *b = st->body.items[i];
        if (b->kind == PN_ST_INPUT) {
            ck_exec_input(c, s, b, x);
            continue;
        }
        if (b->kind == PN_ST_DIRECTIVE) {
            ck_error(c, b->name_loc, "directives are not allowed inside train { }");
            continue;
        }
        if (b->kind != PN_ST_ASSIGN || b->is_output) {
            ck_error(c, b->loc, "train { } holds only training inputs and the settings loss, optimizer, batch, epochs and seed");
            continue;
        }
        int k = -1;
        for (int j = 0; j < 5; j++)
            if (strcmp(b->name, settings[j]) == 0) k = j;
        if (k < 0) {
            bool rate = strcmp(b->name, "lr") == 0 || strcmp(b->name, "learning_rate") == 0;
            ck_error(c, b->name_loc, "unknown train setting '%s'%s", b->name,
                     rate ? "; the learning rate is the optimizer's argument: optimizer = sgd(lr = ...)"
                          : ck_suggest_arg(c, b->name, settings, 5));
            continue;
        }
        if (have[k]) {
            ck_error(c, b->name_loc, "'%s' is set twice", b->name);
            pn_note(c->d, seen[k], "first set here");
            continue;
        }
        have[k] = true;
        seen[k] = b->name_loc;
        if (k == 0) {
            naming nm = {.base = ck_qualify(c, s, "loss")};
            int before = c->g->nnodes;
            value v = ck_eval(c, s, b->value, &nm, true);
            pn_strmap_free(&nm.counts);
            if (v.k == V_ERROR) continue;
            if (v.k != V_TENSOR || v.node < before || !(pn_ops[c->g->nodes[v.node].op].flags & PN_OPF_LOSS)) {
                ck_error(c, b->value->loc, "loss must be cross_entropy(LOGITS, LABELS) or mse(PRED, TARGET)");
                continue;
            }
            t->loss = v.node;
            ck_define(c, s, "loss", b->name_loc, v, false);
        } else if (k == 1) {
            exec_optimizer(c, s, b->value);
        } else {
            naming nm = {.base = b->name};
            value v = ck_eval(c, s, b->value, &nm, false);
            pn_strmap_free(&nm.counts);
            if (v.k == V_ERROR) continue;
            int64_t lo = k == 4 ? 0 : 1;
            if (v.k != V_INT || v.i < lo || v.i > (k == 4 ? INT64_MAX : 1000000000)) {
                ck_error(c, b->value->loc, "%s must be %s integer", b->name, k == 4 ? "a non-negative" : "a positive");
                continue;
            }
            if (k == 2) t->batch = v.i;
            else if (k == 3) t->epochs = v.i;
            else t->seed = v.i;
        }
    }
    c->in_train = false;
    if (!have[0] && !c->d->fatal) ck_error(c, st->loc, "train { } needs a loss: loss = cross_entropy(LOGITS, LABELS) or mse(PRED, TARGET)");
    if (!have[1] && !c->d->fatal) ck_error(c, st->loc, "train { } needs an optimizer: optimizer = sgd(...) or adam(...)");
}
