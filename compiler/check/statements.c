/* Statements: input and constant declarations, assignments and outputs; directives and train { } are dispatched to
 * their own files. */
#include "check_internal.h"
#include "../parse/parse.h"
#include "io.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void add_output(ck *c, pn_stmt *st, int node) {
    if (++c->network_outputs == PNETRT_MAX_IO + 1)
        ck_error(c, st->name_loc, "a network has at most %d outputs", PNETRT_MAX_IO);
    pn_graph_add_output(c->g, st->name, node, st->name_loc);
}

static bool declared_type(ck *c, pn_type_ast *t, pn_node *nn);

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
    pn_node n = {.op = PN_OP_INPUT, .loc = st->loc, .flags = PN_NODE_NAMED};
    bool ok = declared_type(c, st->type, &n);
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

/* The element type and shape of a declaration (`f32[batch, 4]`) into n; false after reporting. */
static bool declared_type(ck *c, pn_type_ast *t, pn_node *nn) {
    pn_node n = *nn;
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
    *nn = n;
    return ok;
}

/* Appends the numbers of a (nested) list to out[*k..]; false after reporting a value that is not
 * a number. Counts past max without storing, so the caller can report the count. */
static bool list_numbers(ck *c, const value *v, float *out, int64_t max, int64_t *k) {
    if (v->k == V_LIST) {
        for (int i = 0; i < v->n; i++)
            if (!list_numbers(c, &v->items[i], out, max, k)) return false;
        return true;
    }
    if (!ck_is_number(v)) {
        ck_error(c, v->loc, "a constant's values must be numbers, not %s", ck_vkind_name(v->k));
        return false;
    }
    if (*k < max) out[*k] = (float)ck_num(v);
    ++*k;
    return true;
}

enum { PN_MAX_CONST_ELEMS = 1 << 24 }; /* 64 MiB of f32 in the object */

/* const NAME : f32[dims] = "FILE.npy";  |  const NAME : f32[dims] = [numbers];
 * A tensor whose values are fixed when compiling: a const node, stored in the object. */
static void exec_const(ck *c, scope *s, pn_stmt *st, stctx *x) {
    value v = {.k = V_ERROR, .loc = st->name_loc};
    pn_node n = {.op = PN_OP_CONST, .loc = st->loc, .flags = PN_NODE_NAMED};
    bool ok = true;
    binding *old = ck_lookup(s, st->name);
    if (old) {
        ck_error(c, st->name_loc, "redefinition of '%s'", st->name);
        pn_note(c->d, old->loc, "previous definition is here");
        return;
    }
    if (!x->network || c->in_train) {
        ck_error(c, st->loc, "constants can only be declared in a network, outside train { }");
        ok = false;
    }
    ok = ok && declared_type(c, st->type, &n);
    char sbuf[128];
    if (ok && (n.dtype != PN_F32 || pn_shape_batched(&n.shape))) {
        ck_error(c, st->type->loc, "a constant must be f32 without a 'batch' dimension, not %s",
                 pn_shape_str(n.dtype, &n.shape, sbuf, sizeof sbuf));
        ok = false;
    }
    int64_t cnt = ok ? pn_shape_sample_elems(&n.shape) : 0;
    if (cnt > PN_MAX_CONST_ELEMS) { /* each value becomes an LLVM constant, and the object holds them all */
        ck_error(c, st->type->loc, "constant '%s' has %lld elements, more than %d", st->name, (long long)cnt, PN_MAX_CONST_ELEMS);
        ok = false;
    }
    float *data = ok ? pn_arena_alloc(&c->g->arena, sizeof(float) * (size_t)cnt) : NULL;
    if (ok && st->path) {
        char err[1024], tried[2048];
        const char *from = s->mod && strcmp(s->mod->path, "-") != 0 ? s->mod->path : ".";
        char *found = pn_program_find_file(c->prog, st->path, from, tried, sizeof tried);
        const char *path = found ? pn_arena_strdup(&c->prog->arena, found) : st->path;
        free(found);
        pn_vec_push(&c->prog->arena, &c->prog->deps, (void *)path);
        pnetrt_array a;
        if (!found && st->path[0] != '/') {
            ck_error(c, st->path_loc, "cannot find the file '%s' of constant '%s' in the -I directories, PNET_PATH or the directory of '%s'",
                     st->path, st->name, from);
            if (tried[0]) pn_note(c->d, PN_NOLOC, "searched %s", tried);
            ok = false;
        } else if (pnetrt_npy_read(path, &a, err, sizeof err)) {
            ck_error(c, st->path_loc, "cannot read constant '%s': %s%s", st->name, err,
                     strstr(err, "'<f8'") ? "; save it as float32: np.save(path, a.astype(np.float32))" : "");
            ok = false;
        } else {
            pn_shape fs = {.rank = a.rank};
            memcpy(fs.d, a.shape, sizeof(int64_t) * (size_t)a.rank);
            char fbuf[128];
            if (fs.rank != n.shape.rank || memcmp(fs.d, n.shape.d, sizeof(int64_t) * (size_t)fs.rank) != 0) {
                ck_error(c, st->path_loc, "'%s' holds %s, but constant '%s' is declared %s", st->path,
                         pn_shape_str(a.dtype == PNETRT_I32 ? PN_I32 : PN_F32, &fs, fbuf, sizeof fbuf), st->name,
                         pn_shape_str(PN_F32, &n.shape, sbuf, sizeof sbuf));
                ok = false;
            }
            for (int64_t i = 0; ok && i < cnt; i++)
                data[i] = a.dtype == PNETRT_I32 ? (float)((const int32_t *)a.data)[i] : ((const float *)a.data)[i];
            pnetrt_array_free(&a);
        }
    } else if (ok) {
        naming nm = {.base = ck_qualify(c, s, st->name)};
        value lv = ck_eval(c, s, st->value, &nm, false);
        pn_strmap_free(&nm.counts);
        int64_t k = 0;
        if (lv.k == V_ERROR) {
            ok = false;
        } else if (lv.k != V_LIST) {
            ck_error(c, st->value->loc, "a constant's values are a \"FILE.npy\" or a list of numbers, not %s",
                     ck_vkind_name(lv.k));
            ok = false;
        } else if (!(ok = list_numbers(c, &lv, data, cnt, &k))) {
        } else if (k != cnt) {
            ck_error(c, st->value->loc, "constant '%s' is declared %s, %lld values, but the list has %lld", st->name,
                     pn_shape_str(PN_F32, &n.shape, sbuf, sizeof sbuf), (long long)cnt, (long long)k);
            ok = false;
        }
    }
    for (int64_t i = 0; ok && i < cnt; i++) {
        if (!isfinite(data[i])) {
            ck_error(c, st->path ? st->path_loc : st->value->loc, "constant '%s' holds %s at index %lld", st->name,
                     isnan(data[i]) ? "nan" : "inf", (long long)i);
            ok = false;
        }
    }
    if (ok) {
        n.name = ck_qualify(c, s, st->name);
        n.data = data;
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
    case PN_ST_CONST: exec_const(c, s, st, x); break;
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
