/* Statements: input declarations, assignments and outputs; directives and train { } are dispatched to
 * their own files. */
#include "check_internal.h"

#include <string.h>

static void add_output(ck *c, pn_stmt *st, int node) {
    if (++c->network_outputs == PNETRT_MAX_IO + 1)
        ck_error(c, st->name_loc, "a network has at most %d outputs", PNETRT_MAX_IO);
    pn_graph_add_output(c->g, st->name, node, st->name_loc);
}

void ck_exec_input(ck *c, scope *s, pn_stmt *st, stctx *x) {
    value poison = {.k = V_ERROR, .loc = st->name_loc};
    if (!x->network && !c->in_train) {
        ck_error(c, st->loc, "inputs can only be declared in a network");
        if (!ck_lookup(s, st->name)) ck_define(c, s, st->name, st->name_loc, poison, false);
        return;
    }
    if (!c->in_train && !st->has_input_kw) {
        ck_error(c, st->name_loc, "a declaration in a network needs the 'input' keyword");
        if (!ck_lookup(s, st->name)) ck_define(c, s, st->name, st->name_loc, poison, false);
        return;
    }
    if (!c->in_train && ++c->network_inputs == PNETRT_MAX_IO + 1)
        ck_error(c, st->name_loc, "a network has at most %d inputs", PNETRT_MAX_IO);
    pn_type_ast *t = st->type;
    pn_node n = {.op = PN_OP_INPUT, .loc = st->loc, .flags = PN_NODE_NAMED};
    bool ok = true;
    if (strcmp(t->dtype, "f32") == 0) n.dtype = PN_F32;
    else if (strcmp(t->dtype, "i32") == 0) n.dtype = PN_I32;
    else {
        ck_error(c, t->dtype_loc, "unknown element type '%s'; expected f32 or i32", t->dtype);
        ok = false;
    }
    if (t->dims.len == 0) {
        ck_error(c, t->loc, "a tensor type needs at least one dimension");
        ok = false;
    } else if (t->dims.len > PN_MAX_RANK) {
        ck_error(c, t->loc, "a tensor type has at most %d dimensions", PN_MAX_RANK);
        ok = false;
    }
    for (int i = 0; ok && i < t->dims.len; i++) {
        pn_expr *e = t->dims.items[i];
        if (e->kind == PN_EX_NAME && strcmp(e->name, "batch") == 0) {
            if (i != 0) {
                ck_error(c, e->loc, "'batch' can only be the first dimension");
                ok = false;
            }
            n.shape.d[i] = PN_BATCH;
        } else if (e->kind == PN_EX_INT) {
            if (e->ival < 1) {
                ck_error(c, e->loc, "dimensions must be positive");
                ok = false;
            }
            n.shape.d[i] = e->ival;
        } else {
            ck_error(c, e->loc, "a dimension must be an integer or 'batch'");
            ok = false;
        }
    }
    n.shape.rank = t->dims.len;
    pn_shape_err se;
    if (ok && !pn_shape_check_size(&n.shape, &se)) {
        ck_error(c, t->loc, "%s", se.msg);
        ok = false;
    }
    value v = {.k = V_ERROR, .loc = st->name_loc};
    if (ok) {
        n.name = ck_qualify(c, s, st->name);
        int saved = c->stage;
        c->stage = -1;
        v = ck_add_node(c, &n, NULL, 0, NULL, 0, NULL, 0);
        c->stage = saved;
    }
    ck_define(c, s, st->name, st->name_loc, v, true);
}

static void exec_assign(ck *c, scope *s, pn_stmt *st, stctx *x) {
    if (st->is_output && !x->network) {
        ck_error(c, st->loc, "outputs can only be declared in a network");
        return;
    }
    if (st->is_output) c->output_stmts++;
    binding *old = ck_lookup(s, st->name);
    if (old) {
        ck_error(c, st->name_loc, "redefinition of '%s'", st->name);
        pn_note(c->d, old->loc, "previous definition is here");
        ck_mark_used(s, st->value, 0);
        return;
    }
    naming nm = {.base = ck_qualify(c, s, st->name)};
    int before = c->g->nnodes;
    value v = ck_eval(c, s, st->value, &nm, true);
    pn_strmap_free(&nm.counts);
    if (x->shard && v.k != V_ERROR) {
        pn_node *n = v.k == V_TENSOR && v.node >= before ? &c->g->nodes[v.node] : NULL;
        if (st->value->kind == PN_EX_CALL && pn_op_lookup(st->value->name) == PN_OP_COUNT) {
            ck_error(c, x->shard_loc, "@shard(features) applies only to a dense or conv2d statement, but '%s' is a block call",
                 st->name);
        } else if (!n || n->name != nm.base || !(pn_ops[n->op].flags & PN_OPF_SHARDABLE)) {
            ck_error(c, x->shard_loc, "@shard(features) applies only to a dense or conv2d statement, but '%s' is %s%s", st->name,
                 n && n->name == nm.base ? "a " : "not computed by an op here",
                 n && n->name == nm.base ? pn_ops[n->op].name : "");
        } else {
            int64_t feats = n->op == PN_OP_DENSE ? n->ia[PN_DENSE_UNITS] : n->ia[PN_CONV_OUT];
            if (x->shard > feats)
                ck_error(c, x->shard_loc, "cannot split %lld output features of '%s' across %d workers", (long long)feats,
                     st->name, x->shard);
            else n->shard = x->shard;
        }
    }
    if (v.k == V_TENSOR && v.node >= before && c->g->nodes[v.node].name == nm.base) c->g->nodes[v.node].flags |= PN_NODE_NAMED;
    if (st->is_output && v.k == V_TENSOR && (c->g->nodes[v.node].flags & PN_NODE_TRAIN)) {
        ck_error(c, st->value->loc, "'%s' exists only in training and cannot be an output", c->g->nodes[v.node].name);
        v.k = V_ERROR;
    }
    if (st->is_output) {
        if (v.k == V_TENSOR) add_output(c, st, v.node);
        else if (v.k != V_ERROR) ck_error(c, st->value->loc, "output '%s' must be a tensor, not %s", st->name, ck_vkind_name(v.k));
    }
    ck_define(c, s, st->name, st->name_loc, v, x->network && !st->is_output);
    /* ck_define refuses some names (a reserved one such as `batch`), and then binds nothing. */
    binding *b = st->is_output ? ck_lookup(s, st->name) : NULL;
    if (b) b->used = true;
}

static void exec_output(ck *c, scope *s, pn_stmt *st, stctx *x) {
    if (!x->network) {
        ck_error(c, st->loc, "outputs can only be declared in a network");
        return;
    }
    c->output_stmts++;
    binding *b = ck_lookup(s, st->name);
    if (!b) {
        ck_error(c, st->name_loc, "use of undeclared name '%s'%s", st->name, ck_suggest_name(c, s, st->name));
        return;
    }
    b->used = true;
    if (b->v.k == V_TENSOR && (c->g->nodes[b->v.node].flags & PN_NODE_TRAIN)) {
        ck_error(c, st->name_loc, "'%s' exists only in training and cannot be an output", st->name);
        return;
    }
    if (b->v.k == V_TENSOR) {
        for (int i = 0; i < c->g->noutputs; i++) {
            if (strcmp(c->g->outputs[i].name, st->name) == 0) {
                ck_error(c, st->name_loc, "'%s' is already an output", st->name);
                pn_note(c->d, c->g->outputs[i].loc, "first declared an output here");
                return;
            }
        }
        add_output(c, st, b->v.node);
    } else if (b->v.k != V_ERROR) {
        ck_error(c, st->name_loc, "output '%s' must be a tensor, not %s", st->name, ck_vkind_name(b->v.k));
    }
}

static void exec_stmt(ck *c, scope *s, pn_stmt *st, stctx *x, value *ret) {
    if (c->too_big || c->d->fatal) return;
    stctx plain = *x;
    plain.shard = 0;
    if (x->shard && st->kind != PN_ST_ASSIGN && st->kind != PN_ST_DIRECTIVE) {
        ck_error(c, x->shard_loc, "@shard(features, K) must come right before a dense or conv2d statement");
        return;
    }
    switch (st->kind) {
    case PN_ST_INPUT: ck_exec_input(c, s, st, &plain); break;
    case PN_ST_ASSIGN: exec_assign(c, s, st, x); break;
    case PN_ST_OUTPUT: exec_output(c, s, st, &plain); break;
    case PN_ST_DIRECTIVE: ck_exec_directive(c, s, st, x, ret); break;
    case PN_ST_TRAIN:
        if (x->depth > 0) {
            ck_error(c, st->loc, "train { } cannot be inside a directive");
            break;
        }
        ck_exec_train(c, s, st, &plain);
        break;
    case PN_ST_RETURN:
        if (x->network) {
            ck_error(c, st->loc, "'return' outside of a block");
            break;
        }
        {
            naming own = {.base = s->prefix};
            naming *nm = s->ret_naming ? s->ret_naming : &own;
            *ret = ck_eval(c, s, st->value, nm, true);
            pn_strmap_free(&own.counts);
            if (ret->k == V_TENSOR && ret->node < c->g->nnodes && c->g->nodes[ret->node].name == s->prefix)
                c->g->nodes[ret->node].flags |= PN_NODE_NAMED;
        }
        break;
    }
}

void ck_exec_stmts(ck *c, scope *s, pn_vec *body, stctx *x, value *ret) {
    for (int i = 0; i < body->len && !c->too_big && !c->d->fatal; i++) exec_stmt(c, s, body->items[i], x, ret);
}
