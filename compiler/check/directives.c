/* Directives: @partition(N), @shard(batch, R), @shard(features, K) and @pipeline(...). */
#include "check_internal.h"

#include <string.h>

static bool directive_int(ck *c, scope *s, pn_arg *a, const char *dname, const char *what, int64_t lo, int64_t hi, int64_t *out) {
    naming nm = {.base = "directive"};
    value v = ck_eval(c, s, a->value, &nm, false);
    pn_strmap_free(&nm.counts);
    if (v.k == V_ERROR) return false;
    if (v.k != V_INT) {
        ck_error(c, a->value->loc, "@%s %s must be an integer, not %s", dname, what, ck_vkind_name(v.k));
        return false;
    }
    if (v.i < lo || v.i > hi) {
        ck_error(c, a->value->loc, "@%s %s must be between %lld and %lld", dname, what, (long long)lo, (long long)hi);
        return false;
    }
    *out = v.i;
    return true;
}

static const char *arg_ident(pn_arg *a) {
    return a->value->kind == PN_EX_NAME ? a->value->name : NULL;
}

/* Runs a directive's statements without its effect, after the directive itself was rejected, so
 * the names they define exist and cause no follow-on errors. */
static void run_body(ck *c, scope *s, pn_stmt *st, stctx *x, value *ret) {
    stctx inner = *x;
    inner.depth++;
    inner.shard = 0;
    ck_exec_stmts(c, s, &st->body, &inner, ret);
}

static void exec_partition(ck *c, scope *s, pn_stmt *st, stctx *x, value *ret) {
    pn_vec *args = &st->args;
    int64_t n;
    if (st->form == PN_DIR_ALONE) {
        ck_error(c, st->loc, "@partition needs a statement or a { } group after it");
        return;
    }
    if (args->len != 1 || ((pn_arg *)args->items[0])->key) {
        ck_error(c, st->loc, "@partition takes one stage number: @partition(N)");
        run_body(c, s, st, x, ret);
        return;
    }
    if (!directive_int(c, s, args->items[0], "partition", "stage", 0, PN_MAX_STAGES - 1, &n)) {
        run_body(c, s, st, x, ret);
        return;
    }
    if (c->stage >= 0) {
        pn_error(c->d, st->name_loc, "@partition inside another @partition");
        pn_note(c->d, c->stage_loc, "the enclosing @partition is here");
        ck_expansion_notes(c);
        run_body(c, s, st, x, ret);
        return;
    }
    c->stage = (int)n;
    c->stage_loc = st->loc;
    if (!c->stage_seen[n]) {
        c->stage_seen[n] = true;
        c->stage_locs[n] = st->loc;
    }
    run_body(c, s, st, x, ret);
    c->stage = -1;
}

static void exec_shard(ck *c, scope *s, pn_stmt *st, stctx *x, value *ret) {
    pn_vec *args = &st->args;
    const char *kind = args->len >= 1 ? arg_ident(args->items[0]) : NULL;
    if (args->len != 2 || !kind || (strcmp(kind, "batch") != 0 && strcmp(kind, "features") != 0) ||
        ((pn_arg *)args->items[1])->key) {
        ck_error(c, st->loc, "@shard takes a kind and a count: @shard(batch, R) or @shard(features, K)");
        run_body(c, s, st, x, ret);
        return;
    }
    int64_t k;
    bool batch = strcmp(kind, "batch") == 0;
    if (!directive_int(c, s, args->items[1], "shard", batch ? "replica count" : "worker count", 1, 4096, &k)) {
        run_body(c, s, st, x, ret);
        return;
    }
    if (batch) {
        if (st->form != PN_DIR_ALONE || !x->network || x->depth > 0) {
            ck_error(c, st->loc,
                 "@shard(batch, R) applies to the whole network: write it alone, as '@shard(batch, %lld);', at the top level of the network body",
                 (long long)k);
            run_body(c, s, st, x, ret);
            return;
        }
        if (c->has_shard_batch) {
            ck_error(c, st->loc, "duplicate @shard(batch)");
            pn_note(c->d, c->shard_batch_loc, "first given here");
            return;
        }
        c->has_shard_batch = true;
        c->shard_batch_loc = st->loc;
        c->g->replicas = (int)k;
        c->g->has_shard_batch = true;
        return;
    }
    if (st->form != PN_DIR_STMT) {
        ck_error(c, st->loc, "@shard(features, K) must come right before a dense or conv2d statement");
        run_body(c, s, st, x, ret);
        return;
    }
    stctx inner = *x;
    inner.depth++;
    inner.shard = (int)k;
    inner.shard_loc = st->loc;
    ck_exec_stmts(c, s, &st->body, &inner, ret);
}

static void exec_pipeline(ck *c, scope *s, pn_stmt *st, stctx *x, value *ret) {
    pn_vec *args = &st->args;
    if (st->form != PN_DIR_ALONE || !x->network || x->depth > 0) {
        ck_error(c, st->loc, "@pipeline applies to the whole network: write it alone, ending with ';', at the top level of the network body");
        run_body(c, s, st, x, ret);
        return;
    }
    if (c->g->has_pipeline) {
        ck_error(c, st->loc, "duplicate @pipeline");
        pn_note(c->d, c->pipeline_loc, "first given here");
        return;
    }
    c->g->has_pipeline = true;
    c->pipeline_loc = st->loc;
    for (int i = 0; i < args->len; i++) {
        pn_arg *a = args->items[i];
        if (!a->key) {
            ck_error(c, a->value->loc, "@pipeline takes named arguments: microbatches = M, schedule = gpipe | 1f1b");
            continue;
        }
        if (strcmp(a->key, "microbatches") == 0) {
            int64_t m;
            if (directive_int(c, s, a, "pipeline", "microbatches", 1, 65536, &m)) c->g->microbatches = (int)m;
        } else if (strcmp(a->key, "schedule") == 0) {
            const char *v = arg_ident(a);
            if (v && strcmp(v, "gpipe") == 0) c->g->schedule = PN_SCHED_GPIPE;
            else if (v && strcmp(v, "1f1b") == 0) c->g->schedule = PN_SCHED_1F1B;
            else ck_error(c, a->value->loc, "unknown pipeline schedule; expected gpipe or 1f1b");
        } else {
            const char *names[] = {"microbatches", "schedule"};
            ck_error(c, a->key_loc, "@pipeline has no argument named '%s'%s", a->key, ck_suggest_arg(c, a->key, names, 2));
        }
    }
}

/* @partition(N) stmt-or-group; @shard(batch, R); @shard(features, K) stmt; @pipeline(...); */
void ck_exec_directive(ck *c, scope *s, pn_stmt *st, stctx *x, value *ret) {
    const char *dn = st->name;
    if (x->depth >= 16) {
        ck_error(c, st->name_loc, "directives are nested too deeply");
        return;
    }
    if (strcmp(dn, "partition") == 0) exec_partition(c, s, st, x, ret);
    else if (strcmp(dn, "shard") == 0) exec_shard(c, s, st, x, ret);
    else if (strcmp(dn, "pipeline") == 0) exec_pipeline(c, s, st, x, ret);
    else {
        const char *names[] = {"partition", "shard", "pipeline"};
        const char *best = pn_closest(dn, names, 3);
        if (best) ck_error(c, st->name_loc, "unknown directive '@%s'; did you mean '@%s'?", dn, best);
        else ck_error(c, st->name_loc, "unknown directive '@%s'; expected @partition, @shard or @pipeline", dn);
        run_body(c, s, st, x, ret);
    }
}
