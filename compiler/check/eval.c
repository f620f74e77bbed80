/* Expressions: constants, names, lists, arithmetic, calls; a block call is expanded in place. Every tensor
 * they compute becomes a shape-checked node of the graph. */
#include "check_internal.h"

#include <math.h>
#include <string.h>

/* ---- nodes ------------------------------------------------------------------------------- */

/* The first dense, going back from node through ops that keep the shape of their input, that was
 * given more than one axis per sample, or -1. Its result keeps all those axes, so a forgotten
 * flatten shows up only where the result is used; the error there gets a note at this dense. */
static int dense_of_many_axes(const pn_graph *g, int node) {
    int found = -1;
    for (int steps = 0; node >= 0 && steps < 256; steps++) {
        const pn_node *n = &g->nodes[node];
        if (n->op == PN_OP_DENSE) {
            const pn_shape *xs = &g->nodes[n->in[0]].shape;
            if (xs->rank - pn_shape_batched(xs) < 2) break;
            found = node;
        } else if (!(pn_ops[n->op].flags & PN_OPF_ELTWISE) && n->op != PN_OP_BATCHNORM && n->op != PN_OP_LAYERNORM &&
                   n->op != PN_OP_SOFTMAX && n->op != PN_OP_LOG_SOFTMAX) {
            break;
        }
        int next = -1; /* the operand of the node's own rank (the other may be a broadcast constant) */
        for (int k = 0; k < n->ninputs && next < 0; k++)
            if (g->nodes[n->in[k]].shape.rank == n->shape.rank) next = n->in[k];
        node = next;
    }
    return found;
}

static void note_dense_axes(ck *c, const int32_t *inputs, int nin) {
    for (int i = 0; i < nin; i++) {
        int d = dense_of_many_axes(c->g, inputs[i]);
        if (d < 0) continue;
        const pn_node *n = &c->g->nodes[d];
        char in[128], out[128];
        pn_shape_str(PN_F32, &c->g->nodes[n->in[0]].shape, in, sizeof in);
        pn_shape_str(PN_F32, &n->shape, out, sizeof out);
        pn_note(c->d, n->loc, "this 'dense' of %s maps only the last axis and keeps the others, giving %s; if one feature "
                "axis was meant, flatten its input first", in, out);
        return;
    }
}

/* Shape-checks and appends a node. argloc[i] locates the call's i-th argument for messages. */
value ck_add_node(ck *c, pn_node *n, const int32_t *inputs, int nin, const int64_t *list, int nlist,
                  const pn_loc *argloc, int nargloc) {
    value err = {.k = V_ERROR, .loc = n->loc};
    if (c->too_big) return err;
    if (c->g->nnodes >= PN_MAX_NODES) {
        pn_fatal(c->d, n->loc, "network expands to more than %d nodes", PN_MAX_NODES);
        ck_expansion_notes(c);
        c->too_big = true;
        return err;
    }
    const pn_node *in[64] = {0};
    PN_ASSERT(nin <= 64);
    int stage = 0;
    for (int i = 0; i < nin; i++) {
        in[i] = &c->g->nodes[inputs[i]];
        if (in[i]->stage > stage) stage = in[i]->stage;
        if (!c->in_train && (in[i]->flags & PN_NODE_TRAIN)) {
            ck_error(c, i < nargloc ? argloc[i] : n->loc, "'%s' exists only in training and cannot be used outside train { }",
                 in[i]->name);
            return err;
        }
    }
    pn_shape_err se;
    if (!pn_shape_infer(n, in, nin, list, nlist, &se) || !pn_shape_check_size(&n->shape, &se)) {
        ck_error(c, se.arg >= 0 && se.arg < nargloc ? argloc[se.arg] : n->loc, "%s", se.msg);
        note_dense_axes(c, inputs, nin);
        return err;
    }
    if (c->stage >= 0) {
        for (int i = 0; i < nin; i++) {
            if (in[i]->stage > c->stage) {
                ck_error(c, i < nargloc ? argloc[i] : n->loc, "stage %d reads '%s' from the later stage %d", c->stage,
                     in[i]->name, in[i]->stage);
                pn_note(c->d, in[i]->loc, "'%s' is defined here", in[i]->name);
                return err;
            }
        }
        stage = c->stage;
    }
    n->stage = stage;
    if (c->in_train) n->flags |= PN_NODE_TRAIN;
    intptr_t dup = (intptr_t)pn_strmap_get(&c->node_names, n->name);
    if (dup) {
        ck_error(c, n->loc, "the node name '%s' is used twice", n->name);
        pn_note(c->d, c->g->nodes[dup - 1].loc, "first used here");
        return err;
    }
    int id = pn_graph_add(c->g, n, inputs, nin);
    pn_strmap_put(&c->node_names, c->g->nodes[id].name, (void *)(intptr_t)(id + 1));
    return (value){.k = V_TENSOR, .node = id, .loc = n->loc};
}

static value make_const(ck *c, naming *nm, double v, pn_loc loc) {
    pn_node n = {.name = ck_node_name(c, nm, "const", false), .op = PN_OP_CONST, .loc = loc};
    n.fa[PN_FA_VALUE] = v;
    return ck_add_node(c, &n, NULL, 0, NULL, 0, NULL, 0);
}

static value call_block(ck *c, scope *s, pn_block_def *b, pn_expr *call, naming *nm, bool top);

/* A tensor constant (`const x : f32[...] = ...;`), whose values are known when compiling. */
static bool is_const_tensor(ck *c, const value *v) {
    return v->k == V_TENSOR && c->g->nodes[v->node].op == PN_OP_CONST && c->g->nodes[v->node].data;
}

/* An operand of a folded constant: its shape and values (a number is a scalar). */
typedef struct const_operand {
    pn_shape shape;
    const float *data;
    float num;
} const_operand;

static const_operand const_of(ck *c, const value *v) {
    if (v->k != V_TENSOR) return (const_operand){.num = (float)ck_num(v)};
    const pn_node *n = &c->g->nodes[v->node];
    return (const_operand){.shape = n->shape, .data = n->data};
}

/* Element `idx` (of the result's axes) of an operand broadcast to a result of rank r. */
static float const_at(const const_operand *o, const int64_t *idx, int r) {
    if (!o->data) return o->num;
    int64_t off = 0;
    for (int d = 0; d < o->shape.rank; d++) {
        int64_t size = o->shape.d[d];
        off = off * size + (size == 1 ? 0 : idx[r - o->shape.rank + d]);
    }
    return o->data[off];
}

/* a OP b where both are tensor constants or numbers (one at least a tensor): computed now, in f32
 * as the kernels would, into a new constant; so `1 / std` or `-mean` costs nothing when run and
 * trains (training needs every computed value to have a batch axis). */
static value fold_consts(ck *c, naming *nm, bool top, pn_op op, const value *a, const value *b, pn_loc loc, char sym) {
    value err = {.k = V_ERROR, .loc = loc};
    const_operand x = const_of(c, a), y = const_of(c, b);
    pn_node n = {.name = ck_node_name(c, nm, pn_ops[op].name, top), .op = PN_OP_CONST, .dtype = PN_F32, .loc = loc};
    char sa[128], sb[128];
    if (!pn_broadcast(&x.shape, &y.shape, &n.shape)) {
        ck_error(c, loc, "operands of '%c' do not broadcast: %s and %s", sym, pn_shape_str(PN_F32, &x.shape, sa, sizeof sa),
                 pn_shape_str(PN_F32, &y.shape, sb, sizeof sb));
        return err;
    }
    int64_t cnt = pn_shape_sample_elems(&n.shape);
    float *data = pn_arena_alloc(&c->g->arena, sizeof(float) * (size_t)cnt);
    for (int64_t e = 0; e < cnt; e++) {
        int64_t idx[PN_MAX_RANK], rest = e;
        for (int d = n.shape.rank - 1; d >= 0; d--) {
            idx[d] = rest % n.shape.d[d];
            rest /= n.shape.d[d];
        }
        float u = const_at(&x, idx, n.shape.rank), v = const_at(&y, idx, n.shape.rank);
        data[e] = op == PN_OP_ADD ? u + v : op == PN_OP_SUB ? u - v : op == PN_OP_MUL ? u * v : u / v;
        if (!isfinite(data[e])) {
            ck_error(c, loc, "%s in constant expression, at element %lld", op == PN_OP_DIV && v == 0 ? "division by zero" : "overflow",
                     (long long)e);
            return err;
        }
    }
    n.data = data;
    return ck_add_node(c, &n, NULL, 0, NULL, 0, NULL, 0);
}

static value binary(ck *c, scope *s, pn_expr *e, naming *nm, bool top) {
    (void)s;
    value a = ck_eval(c, s, e->lhs, nm, false);
    value b = ck_eval(c, s, e->rhs, nm, false);
    value err = {.k = V_ERROR, .loc = e->loc};
    if (a.k == V_ERROR || b.k == V_ERROR) return err;
    if (ck_is_number(&a) && ck_is_number(&b)) {
        value r = {.loc = e->loc};
        if (e->op == '/' && ck_num(&b) == 0) {
            ck_error(c, e->rhs->loc, "division by zero in constant expression");
            return err;
        }
        if (a.k == V_INT && b.k == V_INT && e->op != '/') {
            r.k = V_INT;
            bool ovf = e->op == '+' ? __builtin_add_overflow(a.i, b.i, &r.i)
                     : e->op == '-' ? __builtin_sub_overflow(a.i, b.i, &r.i)
                                    : __builtin_mul_overflow(a.i, b.i, &r.i);
            if (ovf) {
                ck_error(c, e->loc, "integer overflow in constant expression");
                return err;
            }
        } else {
            r.k = V_FLOAT;
            r.f = e->op == '+' ? ck_num(&a) + ck_num(&b) : e->op == '-' ? ck_num(&a) - ck_num(&b)
                : e->op == '*' ? ck_num(&a) * ck_num(&b) : ck_num(&a) / ck_num(&b);
            if (!isfinite(r.f)) {
                ck_error(c, e->loc, "constant expression overflows");
                return err;
            }
        }
        return r;
    }
    value *bad = (a.k != V_TENSOR && !ck_is_number(&a)) ? &a : (b.k != V_TENSOR && !ck_is_number(&b)) ? &b : NULL;
    if (bad) {
        ck_error(c, bad->loc, "operator '%c' needs tensors or numbers, not %s", e->op, ck_vkind_name(bad->k));
        return err;
    }
    if (e->op == '/' && b.k != V_TENSOR) {
        /* Division by a number: x / n is x * (1 / n); by a tensor, a div node. */
        if (ck_num(&b) == 0) {
            ck_error(c, e->rhs->loc, "division by zero");
            return err;
        }
        b.f = 1.0 / ck_num(&b);
        b.k = V_FLOAT;
    }
    pn_op op = e->op == '+' ? PN_OP_ADD : e->op == '-' ? PN_OP_SUB : e->op == '/' && b.k == V_TENSOR ? PN_OP_DIV : PN_OP_MUL;
    if ((is_const_tensor(c, &a) || a.k != V_TENSOR) && (is_const_tensor(c, &b) || b.k != V_TENSOR))
        return fold_consts(c, nm, top, op, &a, &b, e->loc, op == PN_OP_MUL ? '*' : e->op);
    /* At least one tensor: numbers become scalar constants. */
    if (a.k != V_TENSOR) a = make_const(c, nm, ck_num(&a), a.loc);
    if (b.k != V_TENSOR) b = make_const(c, nm, ck_num(&b), b.loc);
    if (a.k == V_ERROR || b.k == V_ERROR) return err;
    pn_node n = {.name = ck_node_name(c, nm, pn_ops[op].name, top), .op = op, .loc = e->loc};
    return ck_add_node(c, &n, (int32_t[]){a.node, b.node}, 2, NULL, 0, (pn_loc[]){a.loc, b.loc}, 2);
}

static value negate(ck *c, scope *s, pn_expr *e, naming *nm, bool top) {
    value a = ck_eval(c, s, e->lhs, nm, false);
    value r = a;
    r.loc = e->loc;
    switch (a.k) {
    case V_INT:
        if (a.i == INT64_MIN) {
            ck_error(c, e->loc, "integer overflow in constant expression");
            r.k = V_ERROR;
            return r;
        }
        r.i = -a.i;
        return r;
    case V_FLOAT: r.f = -a.f; return r;
    case V_TENSOR: {
        if (is_const_tensor(c, &a)) return fold_consts(c, nm, top, PN_OP_SUB, &(value){.k = V_INT}, &a, e->loc, '-');
        value z = make_const(c, nm, 0.0, e->loc);
        if (z.k == V_ERROR) return z;
        pn_node n = {.name = ck_node_name(c, nm, "sub", top), .op = PN_OP_SUB, .loc = e->loc};
        return ck_add_node(c, &n, (int32_t[]){z.node, a.node}, 2, NULL, 0, (pn_loc[]){e->loc, a.loc}, 2);
    }
    case V_ERROR: return a;
    default:
        ck_error(c, e->loc, "unary '-' needs a tensor or a number, not %s", ck_vkind_name(a.k));
        r.k = V_ERROR;
        return r;
    }
}

/* sqrt(n): a constant function of a number, for scales such as 1 / sqrt(dim). */
static value const_sqrt(ck *c, scope *s, pn_expr *e, naming *nm) {
    value err = {.k = V_ERROR, .loc = e->loc};
    if (e->args.len != 1 || ((pn_arg *)e->args.items[0])->key) {
        ck_error(c, e->loc, "sqrt takes one number");
        return err;
    }
    value v = ck_eval(c, s, ((pn_arg *)e->args.items[0])->value, nm, false);
    if (v.k == V_ERROR) return v;
    if (!ck_is_number(&v)) {
        ck_error(c, v.loc, "sqrt needs a non-negative number, not %s", ck_vkind_name(v.k));
        return err;
    }
    if (ck_num(&v) < 0) {
        char nb[40];
        if (v.k == V_INT) snprintf(nb, sizeof nb, "%lld", (long long)v.i);
        else ck_fmt_num(nb, sizeof nb, v.f);
        ck_error(c, v.loc, "sqrt needs a non-negative number, but this is %s", nb);
        return err;
    }
    return (value){.k = V_FLOAT, .f = sqrt(ck_num(&v)), .loc = e->loc};
}

static value eval_call(ck *c, scope *s, pn_expr *e, naming *nm, bool top) {
    value err = {.k = V_ERROR, .loc = e->loc};
    ck_mark_used(s, e, 0); /* a rejected call still reads its arguments */
    if (e->ns) {
        pn_module *m = pn_strmap_get(&s->mod->ns_map, e->ns);
        if (!m) {
            ck_error(c, e->ns_loc, "unknown module '%s'; add 'import \"%s\";'", e->ns, e->ns);
            return err;
        }
        pn_block_def *b = pn_strmap_get(&m->block_map, e->name);
        if (!b) {
            ck_error(c, e->name_loc, "module '%s' has no block '%s'%s", e->ns, e->name, ck_suggest_block(c, m, e->name));
            return err;
        }
        return call_block(c, s, b, e, nm, top);
    }
    pn_block_def *b = pn_strmap_get(&s->mod->block_map, e->name);
    if (b) return call_block(c, s, b, e, nm, top);
    if (strcmp(e->name, "sqrt") == 0) return const_sqrt(c, s, e, nm);
    pn_op op = pn_op_lookup(e->name);
    if (op != PN_OP_COUNT) return ck_call_op(c, s, op, e, nm, top);
    if (strcmp(e->name, "sgd") == 0 || strcmp(e->name, "adam") == 0)
        ck_error(c, e->name_loc, "'%s' is an optimizer: use it as 'optimizer = %s(...)' inside train { }", e->name, e->name);
    else
        ck_error(c, e->name_loc, "unknown op or block '%s'%s", e->name, ck_suggest_callee(c, s->mod, e->name));
    return err;
}

value ck_eval(ck *c, scope *s, pn_expr *e, naming *nm, bool top) {
    value v = {.k = V_ERROR, .loc = e->loc};
    if (c->too_big) return v;
    if (++c->expr_depth > PN_MAX_EXPR_DEPTH) {
        if (!c->depth_reported) ck_error(c, e->loc, "expression is nested too deeply (more than %d levels)", PN_MAX_EXPR_DEPTH);
        c->depth_reported = true;
        c->expr_depth--;
        return v;
    }
    switch (e->kind) {
    case PN_EX_INT: v.k = V_INT; v.i = e->ival; break;
    case PN_EX_FLOAT: v.k = V_FLOAT; v.f = e->fval; break;
    case PN_EX_BOOL: v.k = V_BOOL; v.b = e->bval; break;
    case PN_EX_NAME: {
        binding *b = ck_lookup(s, e->name);
        if (b) {
            b->used = true;
            v = b->v;
            v.loc = e->loc;
        } else if (strcmp(e->name, "batch") == 0) {
            v.k = V_BATCH;
        } else {
            ck_error(c, e->loc, "use of undeclared name '%s'%s", e->name, ck_suggest_name(c, s, e->name));
        }
        break;
    }
    case PN_EX_LIST: {
        if (e->args.len > PN_MAX_LIST) {
            ck_error(c, e->loc, "list has more than %d entries", PN_MAX_LIST);
            break;
        }
        v.k = V_LIST;
        v.n = e->args.len;
        v.items = pn_arena_alloc(&c->tmp, sizeof(value) * (size_t)(v.n ? v.n : 1));
        for (int i = 0; i < v.n; i++) {
            v.items[i] = ck_eval(c, s, e->args.items[i], nm, false);
            if (v.items[i].k == V_ERROR) v.k = V_ERROR;
        }
        break;
    }
    case PN_EX_BINARY: v = binary(c, s, e, nm, top); break;
    case PN_EX_NEG: v = negate(c, s, e, nm, top); break;
    case PN_EX_CALL: v = eval_call(c, s, e, nm, top); break;
    }
    c->expr_depth--;
    return v;
}

static value call_block(ck *c, scope *s, pn_block_def *b, pn_expr *call, naming *nm, bool top) {
    value err = {.k = V_ERROR, .loc = call->loc};
    /* Arguments are evaluated in the caller's scope, in source order. */
    int np = b->params.len;
    value *vals = pn_arena_alloc(&c->tmp, sizeof(value) * (size_t)(np ? np : 1));
    bool *given = pn_arena_alloc(&c->tmp, (size_t)(np ? np : 1));
    bool ok = true;
    int pos = 0;
    for (int a = 0; a < call->args.len; a++) {
        pn_arg *arg = call->args.items[a];
        value v = ck_eval(c, s, arg->value, nm, false);
        if (v.k == V_ERROR) ok = false;
        int slot = -1;
        if (arg->key) {
            for (int i = 0; i < np; i++)
                if (strcmp(((pn_param *)b->params.items[i])->name, arg->key) == 0) slot = i;
            if (slot < 0) {
                const char **names = pn_arena_alloc(&c->tmp, sizeof *names * (size_t)(np ? np : 1));
                for (int i = 0; i < np; i++) names[i] = ((pn_param *)b->params.items[i])->name;
                ck_error(c, arg->key_loc, "block '%s' has no parameter named '%s'%s", b->name, arg->key,
                         ck_suggest_arg(c, arg->key, names, np));
                pn_note(c->d, b->name_loc, "block '%s' is defined here", b->name);
                ok = false;
                continue;
            }
            if (given[slot]) {
                ck_error(c, arg->key_loc, "argument '%s' of block '%s' is given twice", arg->key, b->name);
                ok = false;
                continue;
            }
        } else {
            while (pos < np && given[pos]) pos++;
            if (pos >= np) {
                ck_error(c, arg->value->loc, "too many arguments in call to block '%s' (it takes %d)", b->name, np);
                pn_note(c->d, b->name_loc, "block '%s' is defined here", b->name);
                ok = false;
                continue;
            }
            slot = pos++;
        }
        given[slot] = true;
        vals[slot] = v;
    }
    /* A block whose definition had errors was reported there; its defaults are not evaluated. */
    for (int i = 0; i < np && ok && b->state != 2; i++) {
        pn_param *p = b->params.items[i];
        if (given[i]) continue;
        if (!p->def) {
            ck_error(c, call->loc, "missing argument '%s' in call to block '%s'", p->name, b->name);
            pn_note(c->d, b->name_loc, "block '%s' is defined here", b->name);
            ok = false;
            continue;
        }
        scope empty = {.mod = b->mod, .is_block = true};
        naming dn = {.base = "default"};
        vals[i] = ck_eval(c, &empty, p->def, &dn, false);
        pn_strmap_free(&dn.counts);
        pn_strmap_free(&empty.names);
        if (vals[i].k == V_ERROR) ok = false;
    }
    if (!ok || b->state == 2) return err;
    for (frame *f = c->frames; f; f = f->up) {
        if (f->block == b) {
            ck_error(c, call->loc, "recursive call of block '%s'", b->name);
            return err;
        }
    }
    if (c->block_depth >= PN_MAX_BLOCK_DEPTH) {
        ck_error(c, call->loc, "block calls are nested too deeply (more than %d)", PN_MAX_BLOCK_DEPTH);
        return err;
    }
    const char *prefix = ck_node_name(c, nm, b->name, top);
    scope inner = {.mod = b->mod, .prefix = prefix, .is_block = true, .ret_naming = top ? nm : NULL};
    for (int i = 0; i < np; i++) {
        pn_param *p = b->params.items[i];
        ck_define(c, &inner, p->name, p->loc, vals[i], false);
    }
    frame f = {b, call->loc, c->frames};
    c->frames = &f;
    c->block_depth++;
    stctx x = {.network = false};
    value ret = {.k = V_ERROR, .loc = call->loc};
    int saved_depth = c->expr_depth;
    c->expr_depth = 0;
    ck_exec_stmts(c, &inner, &b->body, &x, &ret);
    c->expr_depth = saved_depth;
    c->block_depth--;
    c->frames = f.up;
    pn_strmap_free(&inner.names);
    ret.loc = call->loc;
    return ret;
}
