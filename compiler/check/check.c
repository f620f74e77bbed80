/* The checker: evaluates a network's statements, expanding blocks in place, and builds the
 * graph IR while checking names, types, shapes, directives and the train block. */
#include "check.h"
#include "../ir/shapes.h"
#include "../support/util.h"
#include "pnetrt_abi.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

enum {
    PN_MAX_BLOCK_DEPTH = 64,   /* nested block calls */
    PN_MAX_EXPR_DEPTH = 1000,  /* nested expressions */
    PN_MAX_NODES = 1 << 20,    /* nodes in one graph */
    PN_MAX_STAGES = PNETRT_MAX_STAGES,
    PN_MAX_LIST = 64,
};

/* ---- values ---------------------------------------------------------------------------- */

typedef enum { V_ERROR, V_TENSOR, V_INT, V_FLOAT, V_BOOL, V_LIST, V_BATCH } vkind;

typedef struct value {
    vkind k;
    int node;
    int64_t i;
    double f;
    bool b;
    struct value *items;
    int n;
    pn_loc loc;
} value;

/* A number as written back to the user: 8 for an integer, 8.0 for a float. */
static const char *fmt_num(char *buf, size_t n, double f) {
    snprintf(buf, n, "%.15g", f);
    if (!strpbrk(buf, ".eEn")) strncat(buf, ".0", n - strlen(buf) - 1);
    return buf;
}

static const char *vkind_name(vkind k) {
    switch (k) {
    case V_TENSOR: return "a tensor";
    case V_INT: return "an integer";
    case V_FLOAT: return "a number";
    case V_BOOL: return "a boolean";
    case V_LIST: return "a list";
    case V_BATCH: return "'batch'";
    default: return "an invalid value";
    }
}

typedef struct binding {
    const char *name;
    value v;
    pn_loc loc;
    bool used, warn_unused;
} binding;

/* A name scope: the network's, or one block expansion's. Blocks see only their own names. */
typedef struct scope {
    pn_strmap names; /* name -> binding* */
    pn_vec order;    /* binding* in definition order */
    pn_module *mod;
    const char *prefix; /* qualifies node names inside a block expansion; NULL in the network */
    bool is_block;
    struct naming *ret_naming; /* names the return expression; shared with the caller's statement
                                  when the call is that statement's root, so names never clash */
} scope;

/* Names the nodes of one statement: the root takes `base`, the rest `base.op.k`. */
typedef struct naming {
    const char *base;
    pn_strmap counts; /* op or block name -> (void *)count */
} naming;

typedef struct frame {
    pn_block_def *block;
    pn_loc call_loc;
    struct frame *up;
} frame;

typedef struct ck {
    pn_program *prog;
    pn_diags *d;
    pn_arena tmp;
    pn_graph *g;
    frame *frames;
    int block_depth, expr_depth;
    pn_strmap node_names;   /* qualified name -> (void *)(index + 1) */
    int stage;              /* explicit stage of the statement being evaluated, or -1 */
    pn_loc stage_loc;
    pn_loc stage_locs[PN_MAX_STAGES];
    bool stage_seen[PN_MAX_STAGES];
    bool in_train;
    bool too_big;
    int output_stmts;
    int network_inputs, network_outputs; /* against PNETRT_MAX_IO */
    bool depth_reported;
    pn_loc shard_batch_loc, pipeline_loc;
    bool has_shard_batch;
} ck;

/* ---- diagnostics within block expansions ------------------------------------------------ */

static void expansion_notes(ck *c) {
    for (frame *f = c->frames; f; f = f->up)
        pn_note(c->d, f->call_loc, "in block '%s' called here", f->block->name);
}

static void cerr(ck *c, pn_loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void cerr(ck *c, pn_loc loc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *msg = pn_xvasprintf(fmt, ap);
    va_end(ap);
    pn_error(c->d, loc, "%s", msg);
    free(msg);
    expansion_notes(c);
}

/* Appends "; did you mean 'x'?" when some candidate is close to name. */
static const char *suggest(ck *c, const char *name, const char *const *cands, int n) {
    const char *best = pn_closest(name, cands, n);
    return best ? pn_arena_printf(&c->tmp, "; did you mean '%s'?", best) : "";
}

static const char *suggest_name(ck *c, scope *s, const char *name) {
    const char **cands = pn_arena_alloc(&c->tmp, sizeof(char *) * (size_t)(s->order.len + 1));
    for (int i = 0; i < s->order.len; i++) cands[i] = ((struct binding *)s->order.items[i])->name;
    return suggest(c, name, cands, s->order.len);
}

static const char *suggest_block(ck *c, pn_module *m, const char *name) {
    const char **cands = pn_arena_alloc(&c->tmp, sizeof(char *) * (size_t)(m->blocks.len + 1));
    for (int i = 0; i < m->blocks.len; i++) cands[i] = ((pn_block_def *)m->blocks.items[i])->name;
    return suggest(c, name, cands, m->blocks.len);
}

static const char *suggest_callee(ck *c, pn_module *m, const char *name) {
    const char *cands[PN_OP_COUNT];
    int n = 0;
    for (int i = 0; i < PN_OP_COUNT; i++)
        if (!(pn_ops[i].flags & PN_OPF_INTERNAL)) cands[n++] = pn_ops[i].name;
    const char *s = suggest(c, name, cands, n);
    if (*s) return s;
    return suggest_block(c, m, name);
}

/* ---- scopes ------------------------------------------------------------------------------ */

static binding *lookup(scope *s, const char *name) { return pn_strmap_get(&s->names, name); }

static bool define(ck *c, scope *s, const char *name, pn_loc loc, value v, bool warn_unused) {
    if (strcmp(name, "batch") == 0) {
        cerr(c, loc, "'batch' is reserved for the batch dimension and cannot name a value");
        return false;
    }
    binding *old = lookup(s, name);
    if (old) {
        cerr(c, loc, "redefinition of '%s'", name);
        pn_note(c->d, old->loc, "previous definition is here");
        return false;
    }
    binding *b = pn_arena_alloc(&c->tmp, sizeof *b);
    b->name = name;
    b->v = v;
    b->loc = loc;
    b->warn_unused = warn_unused;
    pn_strmap_put(&s->names, name, b);
    pn_vec_push(&c->tmp, &s->order, b);
    return true;
}

static const char *qualify(ck *c, scope *s, const char *name) {
    return s->prefix ? pn_arena_printf(&c->g->arena, "%s.%s", s->prefix, name) : pn_arena_strdup(&c->g->arena, name);
}

static const char *node_name(ck *c, naming *nm, const char *key, bool top) {
    if (top) return nm->base;
    intptr_t k = (intptr_t)pn_strmap_get(&nm->counts, key);
    pn_strmap_put(&nm->counts, key, (void *)(k + 1));
    return pn_arena_printf(&c->g->arena, "%s.%s.%ld", nm->base, key, (long)k);
}

/* ---- nodes ------------------------------------------------------------------------------- */

/* Shape-checks and appends a node. argloc[i] locates the call's i-th argument for messages. */
static value add_node(ck *c, pn_node *n, const int32_t *inputs, int nin, const int64_t *list, int nlist,
                      const pn_loc *argloc, int nargloc) {
    value err = {.k = V_ERROR, .loc = n->loc};
    if (c->too_big) return err;
    if (c->g->nnodes >= PN_MAX_NODES) {
        pn_fatal(c->d, n->loc, "network expands to more than %d nodes", PN_MAX_NODES);
        expansion_notes(c);
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
            cerr(c, i < nargloc ? argloc[i] : n->loc, "'%s' exists only in training and cannot be used outside train { }",
                 in[i]->name);
            return err;
        }
    }
    pn_shape_err se;
    if (!pn_shape_infer(n, in, nin, list, nlist, &se) || !pn_shape_check_size(&n->shape, &se)) {
        cerr(c, se.arg >= 0 && se.arg < nargloc ? argloc[se.arg] : n->loc, "%s", se.msg);
        return err;
    }
    if (c->stage >= 0) {
        for (int i = 0; i < nin; i++) {
            if (in[i]->stage > c->stage) {
                cerr(c, i < nargloc ? argloc[i] : n->loc, "stage %d reads '%s' from the later stage %d", c->stage,
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
        cerr(c, n->loc, "the node name '%s' is used twice", n->name);
        pn_note(c->d, c->g->nodes[dup - 1].loc, "first used here");
        return err;
    }
    int id = pn_graph_add(c->g, n, inputs, nin);
    pn_strmap_put(&c->node_names, c->g->nodes[id].name, (void *)(intptr_t)(id + 1));
    return (value){.k = V_TENSOR, .node = id, .loc = n->loc};
}

static value make_const(ck *c, naming *nm, double v, pn_loc loc) {
    pn_node n = {.name = node_name(c, nm, "const", false), .op = PN_OP_CONST, .loc = loc};
    n.fa[PN_FA_VALUE] = v;
    return add_node(c, &n, NULL, 0, NULL, 0, NULL, 0);
}

/* ---- signatures -------------------------------------------------------------------------- */

typedef enum { K_TENSOR, K_TENSORS, K_INT, K_FLOAT, K_BOOL, K_PAIR, K_INTS } pkind;

typedef struct sig_param {
    char name[24];
    pkind kind;
    bool has_def;
    char def[24];
} sig_param;

typedef struct sig {
    int n;
    sig_param p[8];
} sig;

static void parse_sig(const char *text, sig *out) {
    memset(out, 0, sizeof *out);
    while (text && *text) {
        while (*text == ' ') text++;
        if (!*text) break;
        PN_ASSERT(out->n < 8);
        sig_param *p = &out->p[out->n++];
        size_t k = strcspn(text, ":");
        PN_ASSERT(k < sizeof p->name);
        memcpy(p->name, text, k);
        text += k + 1;
        static const char *kinds[] = {"tensor", "tensors", "int", "float", "bool", "pair", "ints"};
        size_t kl = strcspn(text, "= ");
        p->kind = (pkind)-1;
        for (int i = 0; i < 7; i++)
            if (strlen(kinds[i]) == kl && strncmp(text, kinds[i], kl) == 0) p->kind = (pkind)i;
        PN_ASSERT((int)p->kind >= 0);
        text += kl;
        if (*text == '=') {
            text++;
            size_t dl = strcspn(text, " ");
            PN_ASSERT(dl < sizeof p->def);
            memcpy(p->def, text, dl);
            p->has_def = true;
            text += dl;
        }
    }
}

static const sig *op_sig(pn_op op) {
    static sig sigs[PN_OP_COUNT];
    static bool done[PN_OP_COUNT];
    if (!done[op]) {
        parse_sig(pn_ops[op].sig, &sigs[op]);
        done[op] = true;
    }
    return &sigs[op];
}

static value default_value(const sig_param *p, pn_loc loc) {
    value v = {.loc = loc};
    if (strcmp(p->def, "true") == 0 || strcmp(p->def, "false") == 0) {
        v.k = V_BOOL;
        v.b = p->def[0] == 't';
    } else if (p->kind == K_FLOAT) {
        v.k = V_FLOAT;
        v.f = strtod(p->def, NULL);
    } else {
        v.k = V_INT;
        v.i = strtoll(p->def, NULL, 10);
    }
    return v;
}

/* ---- expressions ------------------------------------------------------------------------- */

static value eval(ck *c, scope *s, pn_expr *e, naming *nm, bool top);

/* Marks the names an expression reads as used, without evaluating it: for expressions that were
 * rejected early, so they cause no follow-on "never used" warnings. */
static void mark_used(scope *s, pn_expr *e, int depth) {
    if (!e || depth > PN_MAX_EXPR_DEPTH) return;
    switch (e->kind) {
    case PN_EX_NAME: {
        binding *b = lookup(s, e->name);
        if (b) b->used = true;
        break;
    }
    case PN_EX_CALL:
        for (int i = 0; i < e->args.len; i++) mark_used(s, ((pn_arg *)e->args.items[i])->value, depth + 1);
        break;
    case PN_EX_LIST:
        for (int i = 0; i < e->args.len; i++) mark_used(s, e->args.items[i], depth + 1);
        break;
    case PN_EX_BINARY: mark_used(s, e->rhs, depth + 1); /* fall through */
    case PN_EX_NEG: mark_used(s, e->lhs, depth + 1); break;
    default: break;
    }
}

static value call_block(ck *c, scope *s, pn_block_def *b, pn_expr *call, naming *nm, bool top);

static bool is_number(const value *v) { return v->k == V_INT || v->k == V_FLOAT; }
static double num(const value *v) { return v->k == V_INT ? (double)v->i : v->f; }

static value binary(ck *c, scope *s, pn_expr *e, naming *nm, bool top) {
    (void)s;
    value a = eval(c, s, e->lhs, nm, false);
    value b = eval(c, s, e->rhs, nm, false);
    value err = {.k = V_ERROR, .loc = e->loc};
    if (a.k == V_ERROR || b.k == V_ERROR) return err;
    if (is_number(&a) && is_number(&b)) {
        value r = {.loc = e->loc};
        if (e->op == '/' && num(&b) == 0) {
            cerr(c, e->rhs->loc, "division by zero in constant expression");
            return err;
        }
        if (a.k == V_INT && b.k == V_INT && e->op != '/') {
            r.k = V_INT;
            bool ovf = e->op == '+' ? __builtin_add_overflow(a.i, b.i, &r.i)
                     : e->op == '-' ? __builtin_sub_overflow(a.i, b.i, &r.i)
                                    : __builtin_mul_overflow(a.i, b.i, &r.i);
            if (ovf) {
                cerr(c, e->loc, "integer overflow in constant expression");
                return err;
            }
        } else {
            r.k = V_FLOAT;
            r.f = e->op == '+' ? num(&a) + num(&b) : e->op == '-' ? num(&a) - num(&b)
                : e->op == '*' ? num(&a) * num(&b) : num(&a) / num(&b);
            if (!isfinite(r.f)) {
                cerr(c, e->loc, "constant expression overflows");
                return err;
            }
        }
        return r;
    }
    value *bad = (a.k != V_TENSOR && !is_number(&a)) ? &a : (b.k != V_TENSOR && !is_number(&b)) ? &b : NULL;
    if (bad) {
        cerr(c, bad->loc, "operator '%c' needs tensors or numbers, not %s", e->op, vkind_name(bad->k));
        return err;
    }
    if (e->op == '/') {
        /* Division only by a number: x / n is x * (1 / n). */
        if (b.k == V_TENSOR) {
            cerr(c, e->rhs->loc, "only division by a number is supported, not by a tensor");
            return err;
        }
        if (num(&b) == 0) {
            cerr(c, e->rhs->loc, "division by zero");
            return err;
        }
        b.f = 1.0 / num(&b);
        b.k = V_FLOAT;
    }
    /* At least one tensor: numbers become scalar constants. */
    if (a.k != V_TENSOR) a = make_const(c, nm, num(&a), a.loc);
    if (b.k != V_TENSOR) b = make_const(c, nm, num(&b), b.loc);
    if (a.k == V_ERROR || b.k == V_ERROR) return err;
    pn_op op = e->op == '+' ? PN_OP_ADD : e->op == '-' ? PN_OP_SUB : PN_OP_MUL; /* '/' became '*' */
    pn_node n = {.name = node_name(c, nm, pn_ops[op].name, top), .op = op, .loc = e->loc};
    return add_node(c, &n, (int32_t[]){a.node, b.node}, 2, NULL, 0, (pn_loc[]){a.loc, b.loc}, 2);
}

static value negate(ck *c, scope *s, pn_expr *e, naming *nm, bool top) {
    value a = eval(c, s, e->lhs, nm, false);
    value r = a;
    r.loc = e->loc;
    switch (a.k) {
    case V_INT:
        if (a.i == INT64_MIN) {
            cerr(c, e->loc, "integer overflow in constant expression");
            r.k = V_ERROR;
            return r;
        }
        r.i = -a.i;
        return r;
    case V_FLOAT: r.f = -a.f; return r;
    case V_TENSOR: {
        value z = make_const(c, nm, 0.0, e->loc);
        if (z.k == V_ERROR) return z;
        pn_node n = {.name = node_name(c, nm, "sub", top), .op = PN_OP_SUB, .loc = e->loc};
        return add_node(c, &n, (int32_t[]){z.node, a.node}, 2, NULL, 0, (pn_loc[]){e->loc, a.loc}, 2);
    }
    case V_ERROR: return a;
    default:
        cerr(c, e->loc, "unary '-' needs a tensor or a number, not %s", vkind_name(a.k));
        r.k = V_ERROR;
        return r;
    }
}

/* Converts an argument value to a signature kind, filling ia/fa/list. */
static bool convert_arg(ck *c, const char *callee, const sig_param *p, value *v, int64_t *ia, int *ni, double *fa, int *nf,
                        int64_t *list, int *nlist) {
    switch (p->kind) {
    case K_TENSOR:
    case K_TENSORS:
        if (v->k == V_TENSOR) return true;
        break;
    case K_INT:
        if (v->k == V_INT) {
            ia[(*ni)++] = v->i;
            return true;
        }
        break;
    case K_FLOAT:
        if (is_number(v)) {
            fa[(*nf)++] = num(v);
            return true;
        }
        break;
    case K_BOOL:
        if (v->k == V_BOOL) {
            ia[(*ni)++] = v->b;
            return true;
        }
        break;
    case K_PAIR:
        if (v->k == V_INT) {
            ia[(*ni)++] = v->i;
            ia[(*ni)++] = v->i;
            return true;
        }
        if (v->k == V_LIST && v->n == 2 && v->items[0].k == V_INT && v->items[1].k == V_INT) {
            ia[(*ni)++] = v->items[0].i;
            ia[(*ni)++] = v->items[1].i;
            return true;
        }
        if (v->k == V_LIST)
            cerr(c, v->loc, "argument '%s' of '%s' must be an integer or a list of two integers, not a list of %d %s",
                 p->name, callee, v->n, v->n == 1 ? "entry" : "entries");
        else
            cerr(c, v->loc, "argument '%s' of '%s' must be an integer or a list of two integers, not %s", p->name,
                 callee, vkind_name(v->k));
        return false;
    case K_INTS:
        if (v->k == V_LIST) {
            if (v->n > PN_MAX_RANK) {
                cerr(c, v->loc, "argument '%s' of '%s' has more than %d entries", p->name, callee, PN_MAX_RANK);
                return false;
            }
            for (int i = 0; i < v->n; i++) {
                if (v->items[i].k == V_BATCH) list[i] = PN_LIST_BATCH;
                else if (v->items[i].k == V_INT) list[i] = v->items[i].i;
                else {
                    cerr(c, v->items[i].loc, "entries of '%s' must be integers, not %s", p->name, vkind_name(v->items[i].k));
                    return false;
                }
            }
            *nlist = v->n;
            return true;
        }
        cerr(c, v->loc, "argument '%s' of '%s' must be a list of integers, not %s", p->name, callee, vkind_name(v->k));
        return false;
    }
    static const char *want[] = {"a tensor", "a tensor", "an integer", "a number", "a boolean"};
    char nb[40];
    if (v->k == V_FLOAT && p->kind == K_INT)
        cerr(c, v->loc, "argument '%s' of '%s' must be an integer, not %s", p->name, callee, fmt_num(nb, sizeof nb, v->f));
    else
        cerr(c, v->loc, "argument '%s' of '%s' must be %s, not %s", p->name, callee, want[p->kind], vkind_name(v->k));
    return false;
}

/* Binds call arguments to a signature: positional in order, then keywords by name.
 * vals[i] gets the value of parameter i; tensors[] collects a `tensors` parameter. */
static bool bind(ck *c, scope *s, pn_expr *call, const sig *sg, const char *callee, naming *nm, value *vals, bool *given,
                 value *tensors, int *ntensors) {
    bool ok = true;
    int pos = 0;
    *ntensors = 0;
    for (int i = 0; i < sg->n; i++) given[i] = false;
    for (int a = 0; a < call->args.len; a++) {
        pn_arg *arg = call->args.items[a];
        value v = eval(c, s, arg->value, nm, false);
        if (v.k == V_ERROR) {
            ok = false;
            continue;
        }
        int slot = -1;
        if (arg->key) {
            for (int i = 0; i < sg->n; i++)
                if (strcmp(sg->p[i].name, arg->key) == 0) slot = i;
            if (slot < 0) {
                const char *names[8];
                for (int i = 0; i < sg->n; i++) names[i] = sg->p[i].name;
                cerr(c, arg->key_loc, "'%s' has no argument named '%s'%s", callee, arg->key,
                     suggest(c, arg->key, names, sg->n));
                ok = false;
                continue;
            }
            if (given[slot]) {
                cerr(c, arg->key_loc, "argument '%s' of '%s' is given twice", arg->key, callee);
                ok = false;
                continue;
            }
            if (sg->p[slot].kind == K_TENSORS) {
                if (v.k == V_LIST) {
                    for (int i = 0; i < v.n && *ntensors < 64; i++) tensors[(*ntensors)++] = v.items[i];
                } else {
                    tensors[(*ntensors)++] = v;
                }
            }
        } else {
            while (pos < sg->n && given[pos]) pos++;
            if (pos < sg->n && sg->p[pos].kind == K_TENSORS) {
                if (v.k == V_LIST && *ntensors == 0) {
                    for (int i = 0; i < v.n && *ntensors < 64; i++) tensors[(*ntensors)++] = v.items[i];
                    given[pos++] = true;
                    continue;
                }
                if (v.k == V_TENSOR) {
                    if (*ntensors >= 64) {
                        cerr(c, arg->value->loc, "too many tensors in call to '%s' (at most 64)", callee);
                        ok = false;
                        continue;
                    }
                    tensors[(*ntensors)++] = v;
                    continue; /* stays on this parameter */
                }
                given[pos++] = true; /* the tensors end at the first non-tensor */
                while (pos < sg->n && given[pos]) pos++;
            }
            if (pos >= sg->n) {
                cerr(c, arg->value->loc, "too many arguments in call to '%s' (it takes %d)", callee, sg->n);
                ok = false;
                continue;
            }
            slot = pos++;
        }
        given[slot] = true;
        vals[slot] = v;
    }
    for (int i = 0; i < sg->n; i++) {
        if (sg->p[i].kind == K_TENSORS) {
            given[i] = true;
            if (*ntensors == 0 && ok) {
                cerr(c, call->loc, "'%s' needs at least one tensor", callee);
                ok = false;
            }
            for (int k = 0; k < *ntensors; k++)
                if (tensors[k].k != V_TENSOR) {
                    cerr(c, tensors[k].loc, "'%s' takes tensors, not %s", callee, vkind_name(tensors[k].k));
                    ok = false;
                }
            continue;
        }
        if (!given[i]) {
            if (sg->p[i].has_def) vals[i] = default_value(&sg->p[i], call->loc);
            else if (ok) {
                cerr(c, call->loc, "missing argument '%s' in call to '%s'", sg->p[i].name, callee);
                ok = false;
            }
        }
    }
    return ok;
}

static value call_op(ck *c, scope *s, pn_op op, pn_expr *call, naming *nm, bool top) {
    value err = {.k = V_ERROR, .loc = call->loc};
    const sig *sg = op_sig(op);
    const char *name = pn_ops[op].name;
    if ((pn_ops[op].flags & PN_OPF_LOSS) && !c->in_train) {
        cerr(c, call->name_loc, "'%s' is a loss: use it as 'loss = %s(...)' inside train { }", name, name);
        mark_used(s, call, 0);
        return err;
    }
    value vals[8], tensors[64];
    bool given[8];
    int nt;
    if (!bind(c, s, call, sg, name, nm, vals, given, tensors, &nt)) return err;
    pn_node n = {.op = op, .loc = call->loc};
    int32_t inputs[64];
    pn_loc locs[65];
    int nin = 0, ni = 0, nf = 0, nlist = 0;
    int64_t list[PN_MAX_RANK];
    for (int i = 0; i < sg->n; i++) {
        if (sg->p[i].kind == K_TENSORS) {
            for (int k = 0; k < nt; k++) {
                locs[nin] = tensors[k].loc;
                inputs[nin++] = tensors[k].node;
            }
            continue;
        }
        if (!convert_arg(c, name, &sg->p[i], &vals[i], n.ia, &ni, n.fa, &nf, list, &nlist)) return err;
        if (sg->p[i].kind == K_TENSOR) {
            locs[nin] = vals[i].loc;
            inputs[nin++] = vals[i].node;
        }
    }
    /* Shape errors name arguments by position in the signature; map them to locations. */
    pn_loc arglocs[66];
    int na = 0;
    if (op == PN_OP_CONCAT) {
        for (int k = 0; k < nin; k++) arglocs[na++] = locs[k];
        arglocs[na++] = vals[1].loc;
    } else {
        for (int i = 0; i < sg->n; i++) arglocs[na++] = vals[i].loc;
    }
    n.name = node_name(c, nm, name, top);
    return add_node(c, &n, inputs, nin, list, nlist, arglocs, na);
}

/* sqrt(n): a constant function of a number, for scales such as 1 / sqrt(dim). */
static value const_sqrt(ck *c, scope *s, pn_expr *e, naming *nm) {
    value err = {.k = V_ERROR, .loc = e->loc};
    if (e->args.len != 1 || ((pn_arg *)e->args.items[0])->key) {
        cerr(c, e->loc, "sqrt takes one number");
        return err;
    }
    value v = eval(c, s, ((pn_arg *)e->args.items[0])->value, nm, false);
    if (v.k == V_ERROR) return v;
    if (!is_number(&v)) {
        cerr(c, v.loc, "sqrt needs a non-negative number, not %s", vkind_name(v.k));
        return err;
    }
    if (num(&v) < 0) {
        char nb[40];
        if (v.k == V_INT) snprintf(nb, sizeof nb, "%lld", (long long)v.i);
        else fmt_num(nb, sizeof nb, v.f);
        cerr(c, v.loc, "sqrt needs a non-negative number, but this is %s", nb);
        return err;
    }
    return (value){.k = V_FLOAT, .f = sqrt(num(&v)), .loc = e->loc};
}

static value eval_call(ck *c, scope *s, pn_expr *e, naming *nm, bool top) {
    value err = {.k = V_ERROR, .loc = e->loc};
    mark_used(s, e, 0); /* a rejected call still reads its arguments */
    if (e->ns) {
        pn_module *m = pn_strmap_get(&s->mod->ns_map, e->ns);
        if (!m) {
            cerr(c, e->ns_loc, "unknown module '%s'; add 'import \"%s\";'", e->ns, e->ns);
            return err;
        }
        pn_block_def *b = pn_strmap_get(&m->block_map, e->name);
        if (!b) {
            cerr(c, e->name_loc, "module '%s' has no block '%s'%s", e->ns, e->name, suggest_block(c, m, e->name));
            return err;
        }
        return call_block(c, s, b, e, nm, top);
    }
    pn_block_def *b = pn_strmap_get(&s->mod->block_map, e->name);
    if (b) return call_block(c, s, b, e, nm, top);
    if (strcmp(e->name, "sqrt") == 0) return const_sqrt(c, s, e, nm);
    pn_op op = pn_op_lookup(e->name);
    if (op != PN_OP_COUNT) return call_op(c, s, op, e, nm, top);
    if (strcmp(e->name, "sgd") == 0 || strcmp(e->name, "adam") == 0)
        cerr(c, e->name_loc, "'%s' is an optimizer: use it as 'optimizer = %s(...)' inside train { }", e->name, e->name);
    else
        cerr(c, e->name_loc, "unknown op or block '%s'%s", e->name, suggest_callee(c, s->mod, e->name));
    return err;
}

static value eval(ck *c, scope *s, pn_expr *e, naming *nm, bool top) {
    value v = {.k = V_ERROR, .loc = e->loc};
    if (c->too_big) return v;
    if (++c->expr_depth > PN_MAX_EXPR_DEPTH) {
        if (!c->depth_reported) cerr(c, e->loc, "expression is nested too deeply (more than %d levels)", PN_MAX_EXPR_DEPTH);
        c->depth_reported = true;
        c->expr_depth--;
        return v;
    }
    switch (e->kind) {
    case PN_EX_INT: v.k = V_INT; v.i = e->ival; break;
    case PN_EX_FLOAT: v.k = V_FLOAT; v.f = e->fval; break;
    case PN_EX_BOOL: v.k = V_BOOL; v.b = e->bval; break;
    case PN_EX_NAME: {
        binding *b = lookup(s, e->name);
        if (b) {
            b->used = true;
            v = b->v;
            v.loc = e->loc;
        } else if (strcmp(e->name, "batch") == 0) {
            v.k = V_BATCH;
        } else {
            cerr(c, e->loc, "use of undeclared name '%s'%s", e->name, suggest_name(c, s, e->name));
        }
        break;
    }
    case PN_EX_LIST: {
        if (e->args.len > PN_MAX_LIST) {
            cerr(c, e->loc, "list has more than %d entries", PN_MAX_LIST);
            break;
        }
        v.k = V_LIST;
        v.n = e->args.len;
        v.items = pn_arena_alloc(&c->tmp, sizeof(value) * (size_t)(v.n ? v.n : 1));
        for (int i = 0; i < v.n; i++) {
            v.items[i] = eval(c, s, e->args.items[i], nm, false);
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

/* ---- statements -------------------------------------------------------------------------- */

typedef struct stctx {
    bool network;     /* network level (not in a block) */
    int shard;        /* pending @shard(features, K) for the next assignment, 0 = none */
    pn_loc shard_loc;
    int depth;        /* directive nesting */
} stctx;

static void exec_stmts(ck *c, scope *s, pn_vec *body, stctx *x, value *ret);

static bool directive_int(ck *c, scope *s, pn_arg *a, const char *dname, const char *what, int64_t lo, int64_t hi, int64_t *out) {
    naming nm = {.base = "directive"};
    value v = eval(c, s, a->value, &nm, false);
    pn_strmap_free(&nm.counts);
    if (v.k == V_ERROR) return false;
    if (v.k != V_INT) {
        cerr(c, a->value->loc, "@%s %s must be an integer, not %s", dname, what, vkind_name(v.k));
        return false;
    }
    if (v.i < lo || v.i > hi) {
        cerr(c, a->value->loc, "@%s %s must be between %lld and %lld", dname, what, (long long)lo, (long long)hi);
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
    exec_stmts(c, s, &st->body, &inner, ret);
}

static void exec_partition(ck *c, scope *s, pn_stmt *st, stctx *x, value *ret) {
    pn_vec *args = &st->args;
    int64_t n;
    if (st->form == PN_DIR_ALONE) {
        cerr(c, st->loc, "@partition needs a statement or a { } group after it");
        return;
    }
    if (args->len != 1 || ((pn_arg *)args->items[0])->key) {
        cerr(c, st->loc, "@partition takes one stage number: @partition(N)");
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
        expansion_notes(c);
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
        cerr(c, st->loc, "@shard takes a kind and a count: @shard(batch, R) or @shard(features, K)");
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
            cerr(c, st->loc,
                 "@shard(batch, R) applies to the whole network: write it alone, as '@shard(batch, %lld);', at the top level of the network body",
                 (long long)k);
            run_body(c, s, st, x, ret);
            return;
        }
        if (c->has_shard_batch) {
            cerr(c, st->loc, "duplicate @shard(batch)");
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
        cerr(c, st->loc, "@shard(features, K) must come right before a dense or conv2d statement");
        run_body(c, s, st, x, ret);
        return;
    }
    stctx inner = *x;
    inner.depth++;
    inner.shard = (int)k;
    inner.shard_loc = st->loc;
    exec_stmts(c, s, &st->body, &inner, ret);
}

static void exec_pipeline(ck *c, scope *s, pn_stmt *st, stctx *x, value *ret) {
    pn_vec *args = &st->args;
    if (st->form != PN_DIR_ALONE || !x->network || x->depth > 0) {
        cerr(c, st->loc, "@pipeline applies to the whole network: write it alone, ending with ';', at the top level of the network body");
        run_body(c, s, st, x, ret);
        return;
    }
    if (c->g->has_pipeline) {
        cerr(c, st->loc, "duplicate @pipeline");
        pn_note(c->d, c->pipeline_loc, "first given here");
        return;
    }
    c->g->has_pipeline = true;
    c->pipeline_loc = st->loc;
    for (int i = 0; i < args->len; i++) {
        pn_arg *a = args->items[i];
        if (!a->key) {
            cerr(c, a->value->loc, "@pipeline takes named arguments: microbatches = M, schedule = gpipe | 1f1b");
            continue;
        }
        if (strcmp(a->key, "microbatches") == 0) {
            int64_t m;
            if (directive_int(c, s, a, "pipeline", "microbatches", 1, 65536, &m)) c->g->microbatches = (int)m;
        } else if (strcmp(a->key, "schedule") == 0) {
            const char *v = arg_ident(a);
            if (v && strcmp(v, "gpipe") == 0) c->g->schedule = PN_SCHED_GPIPE;
            else if (v && strcmp(v, "1f1b") == 0) c->g->schedule = PN_SCHED_1F1B;
            else cerr(c, a->value->loc, "unknown pipeline schedule; expected gpipe or 1f1b");
        } else {
            const char *names[] = {"microbatches", "schedule"};
            cerr(c, a->key_loc, "@pipeline has no argument named '%s'%s", a->key, suggest(c, a->key, names, 2));
        }
    }
}

/* @partition(N) stmt-or-group; @shard(batch, R); @shard(features, K) stmt; @pipeline(...); */
static void exec_directive(ck *c, scope *s, pn_stmt *st, stctx *x, value *ret) {
    const char *dn = st->name;
    if (x->depth >= 16) {
        cerr(c, st->name_loc, "directives are nested too deeply");
        return;
    }
    if (strcmp(dn, "partition") == 0) exec_partition(c, s, st, x, ret);
    else if (strcmp(dn, "shard") == 0) exec_shard(c, s, st, x, ret);
    else if (strcmp(dn, "pipeline") == 0) exec_pipeline(c, s, st, x, ret);
    else {
        const char *names[] = {"partition", "shard", "pipeline"};
        const char *best = pn_closest(dn, names, 3);
        if (best) cerr(c, st->name_loc, "unknown directive '@%s'; did you mean '@%s'?", dn, best);
        else cerr(c, st->name_loc, "unknown directive '@%s'; expected @partition, @shard or @pipeline", dn);
        run_body(c, s, st, x, ret);
    }
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
        value v = eval(c, s, arg->value, nm, false);
        if (v.k == V_ERROR) ok = false;
        int slot = -1;
        if (arg->key) {
            for (int i = 0; i < np; i++)
                if (strcmp(((pn_param *)b->params.items[i])->name, arg->key) == 0) slot = i;
            if (slot < 0) {
                cerr(c, arg->key_loc, "block '%s' has no parameter named '%s'", b->name, arg->key);
                pn_note(c->d, b->name_loc, "block '%s' is defined here", b->name);
                ok = false;
                continue;
            }
            if (given[slot]) {
                cerr(c, arg->key_loc, "argument '%s' of block '%s' is given twice", arg->key, b->name);
                ok = false;
                continue;
            }
        } else {
            while (pos < np && given[pos]) pos++;
            if (pos >= np) {
                cerr(c, arg->value->loc, "too many arguments in call to block '%s' (it takes %d)", b->name, np);
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
            cerr(c, call->loc, "missing argument '%s' in call to block '%s'", p->name, b->name);
            pn_note(c->d, b->name_loc, "block '%s' is defined here", b->name);
            ok = false;
            continue;
        }
        scope empty = {.mod = b->mod, .is_block = true};
        naming dn = {.base = "default"};
        vals[i] = eval(c, &empty, p->def, &dn, false);
        pn_strmap_free(&dn.counts);
        pn_strmap_free(&empty.names);
        if (vals[i].k == V_ERROR) ok = false;
    }
    if (!ok || b->state == 2) return err;
    for (frame *f = c->frames; f; f = f->up) {
        if (f->block == b) {
            cerr(c, call->loc, "recursive call of block '%s'", b->name);
            return err;
        }
    }
    if (c->block_depth >= PN_MAX_BLOCK_DEPTH) {
        cerr(c, call->loc, "block calls are nested too deeply (more than %d)", PN_MAX_BLOCK_DEPTH);
        return err;
    }
    const char *prefix = node_name(c, nm, b->name, top);
    scope inner = {.mod = b->mod, .prefix = prefix, .is_block = true, .ret_naming = top ? nm : NULL};
    for (int i = 0; i < np; i++) {
        pn_param *p = b->params.items[i];
        define(c, &inner, p->name, p->loc, vals[i], false);
    }
    frame f = {b, call->loc, c->frames};
    c->frames = &f;
    c->block_depth++;
    stctx x = {.network = false};
    value ret = {.k = V_ERROR, .loc = call->loc};
    int saved_depth = c->expr_depth;
    c->expr_depth = 0;
    exec_stmts(c, &inner, &b->body, &x, &ret);
    c->expr_depth = saved_depth;
    c->block_depth--;
    c->frames = f.up;
    pn_strmap_free(&inner.names);
    ret.loc = call->loc;
    return ret;
}

static void add_output(ck *c, pn_stmt *st, int node) {
    if (++c->network_outputs == PNETRT_MAX_IO + 1)
        cerr(c, st->name_loc, "a network has at most %d outputs", PNETRT_MAX_IO);
    pn_graph_add_output(c->g, st->name, node, st->name_loc);
}

static void exec_input(ck *c, scope *s, pn_stmt *st, stctx *x) {
    value poison = {.k = V_ERROR, .loc = st->name_loc};
    if (!x->network && !c->in_train) {
        cerr(c, st->loc, "inputs can only be declared in a network");
        if (!lookup(s, st->name)) define(c, s, st->name, st->name_loc, poison, false);
        return;
    }
    if (!c->in_train && !st->has_input_kw) {
        cerr(c, st->name_loc, "a declaration in a network needs the 'input' keyword");
        if (!lookup(s, st->name)) define(c, s, st->name, st->name_loc, poison, false);
        return;
    }
    if (!c->in_train && ++c->network_inputs == PNETRT_MAX_IO + 1)
        cerr(c, st->name_loc, "a network has at most %d inputs", PNETRT_MAX_IO);
    pn_type_ast *t = st->type;
    pn_node n = {.op = PN_OP_INPUT, .loc = st->loc, .flags = PN_NODE_NAMED};
    bool ok = true;
    if (strcmp(t->dtype, "f32") == 0) n.dtype = PN_F32;
    else if (strcmp(t->dtype, "i32") == 0) n.dtype = PN_I32;
    else {
        cerr(c, t->dtype_loc, "unknown element type '%s'; expected f32 or i32", t->dtype);
        ok = false;
    }
    if (t->dims.len == 0) {
        cerr(c, t->loc, "a tensor type needs at least one dimension");
        ok = false;
    } else if (t->dims.len > PN_MAX_RANK) {
        cerr(c, t->loc, "a tensor type has at most %d dimensions", PN_MAX_RANK);
        ok = false;
    }
    for (int i = 0; ok && i < t->dims.len; i++) {
        pn_expr *e = t->dims.items[i];
        if (e->kind == PN_EX_NAME && strcmp(e->name, "batch") == 0) {
            if (i != 0) {
                cerr(c, e->loc, "'batch' can only be the first dimension");
                ok = false;
            }
            n.shape.d[i] = PN_BATCH;
        } else if (e->kind == PN_EX_INT) {
            if (e->ival < 1) {
                cerr(c, e->loc, "dimensions must be positive");
                ok = false;
            }
            n.shape.d[i] = e->ival;
        } else {
            cerr(c, e->loc, "a dimension must be an integer or 'batch'");
            ok = false;
        }
    }
    n.shape.rank = t->dims.len;
    pn_shape_err se;
    if (ok && !pn_shape_check_size(&n.shape, &se)) {
        cerr(c, t->loc, "%s", se.msg);
        ok = false;
    }
    value v = {.k = V_ERROR, .loc = st->name_loc};
    if (ok) {
        n.name = qualify(c, s, st->name);
        int saved = c->stage;
        c->stage = -1;
        v = add_node(c, &n, NULL, 0, NULL, 0, NULL, 0);
        c->stage = saved;
    }
    define(c, s, st->name, st->name_loc, v, true);
}

static void exec_assign(ck *c, scope *s, pn_stmt *st, stctx *x) {
    if (st->is_output && !x->network) {
        cerr(c, st->loc, "outputs can only be declared in a network");
        return;
    }
    if (st->is_output) c->output_stmts++;
    binding *old = lookup(s, st->name);
    if (old) {
        cerr(c, st->name_loc, "redefinition of '%s'", st->name);
        pn_note(c->d, old->loc, "previous definition is here");
        mark_used(s, st->value, 0);
        return;
    }
    naming nm = {.base = qualify(c, s, st->name)};
    int before = c->g->nnodes;
    value v = eval(c, s, st->value, &nm, true);
    pn_strmap_free(&nm.counts);
    if (x->shard && v.k != V_ERROR) {
        pn_node *n = v.k == V_TENSOR && v.node >= before ? &c->g->nodes[v.node] : NULL;
        if (st->value->kind == PN_EX_CALL && pn_op_lookup(st->value->name) == PN_OP_COUNT) {
            cerr(c, x->shard_loc, "@shard(features) applies only to a dense or conv2d statement, but '%s' is a block call",
                 st->name);
        } else if (!n || n->name != nm.base || !(pn_ops[n->op].flags & PN_OPF_SHARDABLE)) {
            cerr(c, x->shard_loc, "@shard(features) applies only to a dense or conv2d statement, but '%s' is %s%s", st->name,
                 n && n->name == nm.base ? "a " : "not computed by an op here",
                 n && n->name == nm.base ? pn_ops[n->op].name : "");
        } else {
            int64_t feats = n->op == PN_OP_DENSE ? n->ia[PN_DENSE_UNITS] : n->ia[PN_CONV_OUT];
            if (x->shard > feats)
                cerr(c, x->shard_loc, "cannot split %lld output features of '%s' across %d workers", (long long)feats,
                     st->name, x->shard);
            else n->shard = x->shard;
        }
    }
    if (v.k == V_TENSOR && v.node >= before && c->g->nodes[v.node].name == nm.base) c->g->nodes[v.node].flags |= PN_NODE_NAMED;
    if (st->is_output && v.k == V_TENSOR && (c->g->nodes[v.node].flags & PN_NODE_TRAIN)) {
        cerr(c, st->value->loc, "'%s' exists only in training and cannot be an output", c->g->nodes[v.node].name);
        v.k = V_ERROR;
    }
    if (st->is_output) {
        if (v.k == V_TENSOR) add_output(c, st, v.node);
        else if (v.k != V_ERROR) cerr(c, st->value->loc, "output '%s' must be a tensor, not %s", st->name, vkind_name(v.k));
    }
    define(c, s, st->name, st->name_loc, v, x->network && !st->is_output);
    if (st->is_output) lookup(s, st->name)->used = true;
}

static void exec_output(ck *c, scope *s, pn_stmt *st, stctx *x) {
    if (!x->network) {
        cerr(c, st->loc, "outputs can only be declared in a network");
        return;
    }
    c->output_stmts++;
    binding *b = lookup(s, st->name);
    if (!b) {
        cerr(c, st->name_loc, "use of undeclared name '%s'%s", st->name, suggest_name(c, s, st->name));
        return;
    }
    b->used = true;
    if (b->v.k == V_TENSOR && (c->g->nodes[b->v.node].flags & PN_NODE_TRAIN)) {
        cerr(c, st->name_loc, "'%s' exists only in training and cannot be an output", st->name);
        return;
    }
    if (b->v.k == V_TENSOR) {
        for (int i = 0; i < c->g->noutputs; i++) {
            if (strcmp(c->g->outputs[i].name, st->name) == 0) {
                cerr(c, st->name_loc, "'%s' is already an output", st->name);
                pn_note(c->d, c->g->outputs[i].loc, "first declared an output here");
                return;
            }
        }
        add_output(c, st, b->v.node);
    } else if (b->v.k != V_ERROR) {
        cerr(c, st->name_loc, "output '%s' must be a tensor, not %s", st->name, vkind_name(b->v.k));
    }
}

static const sig *optimizer_sig(const char *name) {
    static sig sgd, adam;
    static bool done;
    if (!done) {
        parse_sig("lr:float momentum:float=0 weight_decay:float=0 nesterov:bool=false", &sgd);
        parse_sig("lr:float beta1:float=0.9 beta2:float=0.999 eps:float=0.00000001 weight_decay:float=0", &adam);
        done = true;
    }
    return strcmp(name, "sgd") == 0 ? &sgd : strcmp(name, "adam") == 0 ? &adam : NULL;
}

/* optimizer = sgd(lr, momentum = 0, weight_decay = 0, nesterov = false) | adam(lr, ...) */
static void exec_optimizer(ck *c, scope *s, pn_expr *e) {
    pn_train *t = &c->g->train;
    const sig *sg = e->kind == PN_EX_CALL && !e->ns ? optimizer_sig(e->name) : NULL;
    if (!sg) {
        cerr(c, e->loc, "optimizer must be sgd(...) or adam(...)");
        return;
    }
    value vals[8], tensors[64];
    bool given[8];
    int nt, ni = 0, nf = 0, nl = 0;
    naming nm = {.base = "optimizer"};
    bool ok = bind(c, s, e, sg, e->name, &nm, vals, given, tensors, &nt);
    pn_strmap_free(&nm.counts);
    if (!ok) return;
    double fa[8];
    int64_t ia[8], list[8];
    for (int i = 0; i < sg->n; i++)
        if (!convert_arg(c, e->name, &sg->p[i], &vals[i], ia, &ni, fa, &nf, list, &nl)) return;
    if (!(fa[0] > 0) || !isfinite(fa[0])) {
        cerr(c, vals[0].loc, "learning rate must be positive");
        return;
    }
    t->lr = fa[0];
    if (strcmp(e->name, "sgd") == 0) {
        t->opt = PN_OPT_SGD;
        t->momentum = fa[1];
        t->weight_decay = fa[2];
        t->nesterov = ia[0];
        if (!(t->momentum >= 0 && t->momentum < 1)) cerr(c, vals[1].loc, "momentum must be in [0, 1)");
        if (t->nesterov && t->momentum == 0) cerr(c, vals[3].loc, "nesterov needs a positive momentum");
    } else {
        t->opt = PN_OPT_ADAM;
        t->beta1 = fa[1];
        t->beta2 = fa[2];
        t->eps = fa[3];
        t->weight_decay = fa[4];
        if (!(t->beta1 >= 0 && t->beta1 < 1)) cerr(c, vals[1].loc, "beta1 must be in [0, 1)");
        if (!(t->beta2 >= 0 && t->beta2 < 1)) cerr(c, vals[2].loc, "beta2 must be in [0, 1)");
        if (!(t->eps > 0)) cerr(c, vals[3].loc, "eps must be positive");
    }
    if (!(t->weight_decay >= 0) || !isfinite(t->weight_decay)) cerr(c, e->loc, "weight_decay must not be negative");
}

/* train { label : i32[batch]; loss = ...; optimizer = ...; batch = N; epochs = N; seed = N; } */
static void exec_train(ck *c, scope *s, pn_stmt *st, stctx *x) {
    pn_train *t = &c->g->train;
    static pn_loc first_train;
    if (!x->network) {
        cerr(c, st->loc, "train { } can only appear in a network");
        return;
    }
    if (t->present) {
        cerr(c, st->loc, "a network has only one train { } block");
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
            exec_input(c, s, b, x);
            continue;
        }
        if (b->kind == PN_ST_DIRECTIVE) {
            cerr(c, b->name_loc, "directives are not allowed inside train { }");
            continue;
        }
        if (b->kind != PN_ST_ASSIGN || b->is_output) {
            cerr(c, b->loc, "train { } holds only training inputs and the settings loss, optimizer, batch, epochs and seed");
            continue;
        }
        int k = -1;
        for (int j = 0; j < 5; j++)
            if (strcmp(b->name, settings[j]) == 0) k = j;
        if (k < 0) {
            cerr(c, b->name_loc, "unknown train setting '%s'%s", b->name, suggest(c, b->name, settings, 5));
            continue;
        }
        if (have[k]) {
            cerr(c, b->name_loc, "'%s' is set twice", b->name);
            pn_note(c->d, seen[k], "first set here");
            continue;
        }
        have[k] = true;
        seen[k] = b->name_loc;
        if (k == 0) {
            naming nm = {.base = qualify(c, s, "loss")};
            int before = c->g->nnodes;
            value v = eval(c, s, b->value, &nm, true);
            pn_strmap_free(&nm.counts);
            if (v.k == V_ERROR) continue;
            if (v.k != V_TENSOR || v.node < before || !(pn_ops[c->g->nodes[v.node].op].flags & PN_OPF_LOSS)) {
                cerr(c, b->value->loc, "loss must be cross_entropy(LOGITS, LABELS) or mse(PRED, TARGET)");
                continue;
            }
            t->loss = v.node;
            define(c, s, "loss", b->name_loc, v, false);
        } else if (k == 1) {
            exec_optimizer(c, s, b->value);
        } else {
            naming nm = {.base = b->name};
            value v = eval(c, s, b->value, &nm, false);
            pn_strmap_free(&nm.counts);
            if (v.k == V_ERROR) continue;
            int64_t lo = k == 4 ? 0 : 1;
            if (v.k != V_INT || v.i < lo || v.i > (k == 4 ? INT64_MAX : 1000000000)) {
                cerr(c, b->value->loc, "%s must be %s integer", b->name, k == 4 ? "a non-negative" : "a positive");
                continue;
            }
            if (k == 2) t->batch = v.i;
            else if (k == 3) t->epochs = v.i;
            else t->seed = v.i;
        }
    }
    c->in_train = false;
    if (!have[0] && !c->d->fatal) cerr(c, st->loc, "train { } needs a loss: loss = cross_entropy(LOGITS, LABELS) or mse(PRED, TARGET)");
    if (!have[1] && !c->d->fatal) cerr(c, st->loc, "train { } needs an optimizer: optimizer = sgd(...) or adam(...)");
}

static void exec_stmt(ck *c, scope *s, pn_stmt *st, stctx *x, value *ret) {
    if (c->too_big || c->d->fatal) return;
    stctx plain = *x;
    plain.shard = 0;
    if (x->shard && st->kind != PN_ST_ASSIGN && st->kind != PN_ST_DIRECTIVE) {
        cerr(c, x->shard_loc, "@shard(features, K) must come right before a dense or conv2d statement");
        return;
    }
    switch (st->kind) {
    case PN_ST_INPUT: exec_input(c, s, st, &plain); break;
    case PN_ST_ASSIGN: exec_assign(c, s, st, x); break;
    case PN_ST_OUTPUT: exec_output(c, s, st, &plain); break;
    case PN_ST_DIRECTIVE: exec_directive(c, s, st, x, ret); break;
    case PN_ST_TRAIN:
        if (x->depth > 0) {
            cerr(c, st->loc, "train { } cannot be inside a directive");
            break;
        }
        exec_train(c, s, st, &plain);
        break;
    case PN_ST_RETURN:
        if (x->network) {
            cerr(c, st->loc, "'return' outside of a block");
            break;
        }
        {
            naming own = {.base = s->prefix};
            naming *nm = s->ret_naming ? s->ret_naming : &own;
            *ret = eval(c, s, st->value, nm, true);
            pn_strmap_free(&own.counts);
            if (ret->k == V_TENSOR && ret->node < c->g->nnodes && c->g->nodes[ret->node].name == s->prefix)
                c->g->nodes[ret->node].flags |= PN_NODE_NAMED;
        }
        break;
    }
}

static void exec_stmts(ck *c, scope *s, pn_vec *body, stctx *x, value *ret) {
    for (int i = 0; i < body->len && !c->too_big && !c->d->fatal; i++) exec_stmt(c, s, body->items[i], x, ret);
}

/* ---- block pre-check: names and structure, once per definition ---------------------------- */

typedef struct rctx {
    ck *c;
    pn_block_def *b;
    pn_strmap defined;
    pn_vec order; /* defined names in order, for suggestions */
    pn_strmap *params; /* while resolving a parameter's default: the block's parameters */
    bool ok;
} rctx;

static void rerr(rctx *r, pn_loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void rerr(rctx *r, pn_loc loc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *msg = pn_xvasprintf(fmt, ap);
    va_end(ap);
    pn_error(r->c->d, loc, "%s", msg);
    free(msg);
    r->ok = false;
}

static void resolve_expr(rctx *r, pn_expr *e, int depth) {
    if (depth > PN_MAX_EXPR_DEPTH) {
        if (r->ok) rerr(r, e->loc, "expression is nested too deeply (more than %d levels)", PN_MAX_EXPR_DEPTH);
        r->ok = false;
        return;
    }
    switch (e->kind) {
    case PN_EX_NAME:
        if (!pn_strmap_get(&r->defined, e->name) && strcmp(e->name, "batch") != 0) {
            if (r->params && pn_strmap_get(r->params, e->name)) {
                rerr(r, e->loc, "a parameter's default cannot refer to parameter '%s'; defaults are constants", e->name);
            } else {
                const char *sug = suggest(r->c, e->name, (const char *const *)r->order.items, r->order.len);
                rerr(r, e->loc, "use of undeclared name '%s'%s", e->name, sug);
            }
        }
        break;
    case PN_EX_CALL: {
        pn_module *m = r->b->mod;
        if (e->ns) {
            pn_module *dep = pn_strmap_get(&m->ns_map, e->ns);
            if (!dep) rerr(r, e->ns_loc, "unknown module '%s'; add 'import \"%s\";'", e->ns, e->ns);
            else if (!pn_strmap_get(&dep->block_map, e->name))
                rerr(r, e->name_loc, "module '%s' has no block '%s'%s", e->ns, e->name, suggest_block(r->c, dep, e->name));
        } else if (!pn_strmap_get(&m->block_map, e->name) && pn_op_lookup(e->name) == PN_OP_COUNT &&
                   strcmp(e->name, "sqrt") != 0) {
            rerr(r, e->name_loc, "unknown op or block '%s'%s", e->name, suggest_callee(r->c, m, e->name));
        }
        for (int i = 0; i < e->args.len; i++) resolve_expr(r, ((pn_arg *)e->args.items[i])->value, depth + 1);
        break;
    }
    case PN_EX_LIST:
        for (int i = 0; i < e->args.len; i++) resolve_expr(r, e->args.items[i], depth + 1);
        break;
    case PN_EX_BINARY:
        resolve_expr(r, e->lhs, depth + 1);
        resolve_expr(r, e->rhs, depth + 1);
        break;
    case PN_EX_NEG: resolve_expr(r, e->lhs, depth + 1); break;
    default: break;
    }
}

static void resolve_stmts(rctx *r, pn_vec *body, bool *returned, int depth) {
    for (int i = 0; i < body->len; i++) {
        pn_stmt *st = body->items[i];
        if (*returned) {
            rerr(r, st->loc, "statement after 'return' in block '%s'", r->b->name);
            return;
        }
        switch (st->kind) {
        case PN_ST_INPUT:
            rerr(r, st->loc, "inputs can only be declared in a network");
            if (!pn_strmap_get(&r->defined, st->name)) {
                pn_strmap_put(&r->defined, st->name, st);
                pn_vec_push(&r->c->tmp, &r->order, (void *)st->name);
            }
            break;
        case PN_ST_TRAIN: rerr(r, st->loc, "train { } can only appear in a network"); break;
        case PN_ST_OUTPUT: rerr(r, st->loc, "outputs can only be declared in a network"); break;
        case PN_ST_ASSIGN:
            if (st->is_output) rerr(r, st->loc, "outputs can only be declared in a network");
            if (strcmp(st->name, "batch") == 0)
                rerr(r, st->name_loc, "'batch' is reserved for the batch dimension and cannot name a value");
            resolve_expr(r, st->value, 0);
            if (pn_strmap_get(&r->defined, st->name)) {
                rerr(r, st->name_loc, "redefinition of '%s'", st->name);
                pn_note(r->c->d, ((pn_stmt *)pn_strmap_get(&r->defined, st->name))->name_loc, "previous definition is here");
            }
            pn_strmap_put(&r->defined, st->name, st);
            pn_vec_push(&r->c->tmp, &r->order, (void *)st->name);
            break;
        case PN_ST_RETURN:
            resolve_expr(r, st->value, 0);
            *returned = true;
            break;
        case PN_ST_DIRECTIVE:
            if (depth > 16) {
                rerr(r, st->loc, "directives are nested too deeply");
                return;
            }
            resolve_stmts(r, &st->body, returned, depth + 1);
            break;
        }
    }
}

static void resolve_block(ck *c, pn_block_def *b) {
    rctx r = {.c = c, .b = b, .ok = true};
    if (pn_op_lookup(b->name) != PN_OP_COUNT) rerr(&r, b->name_loc, "block '%s' has the name of a built-in op", b->name);
    for (int i = 0; i < b->params.len; i++) {
        pn_param *p = b->params.items[i];
        pn_stmt *dummy = pn_arena_alloc(&c->tmp, sizeof *dummy);
        dummy->name_loc = p->loc;
        if (pn_strmap_get(&r.defined, p->name)) rerr(&r, p->loc, "duplicate parameter '%s'", p->name);
        if (strcmp(p->name, "batch") == 0)
            rerr(&r, p->loc, "'batch' is reserved for the batch dimension and cannot name a parameter");
        pn_strmap_put(&r.defined, p->name, dummy);
        pn_vec_push(&c->tmp, &r.order, (void *)p->name);
        if (p->def) {
            /* A default is a constant expression: no parameter is in scope, so none is suggested. */
            pn_strmap params = r.defined;
            pn_vec order = r.order;
            r.defined = (pn_strmap){0};
            r.order = (pn_vec){0};
            r.params = &params;
            resolve_expr(&r, p->def, 0);
            r.params = NULL;
            r.defined = params;
            r.order = order;
        }
    }
    bool returned = false;
    resolve_stmts(&r, &b->body, &returned, 0);
    if (!returned) rerr(&r, b->name_loc, "block '%s' has no 'return' statement", b->name);
    pn_strmap_free(&r.defined);
    b->state = r.ok ? 1 : 2;
}

/* ---- networks ---------------------------------------------------------------------------- */

static pn_graph *check_network(ck *c, pn_module *m, pn_network_def *nd) {
    c->g = pn_graph_new(nd->name);
    c->stage = -1;
    memset(c->stage_seen, 0, sizeof c->stage_seen);
    c->too_big = false;
    c->in_train = false;
    c->output_stmts = 0;
    c->network_inputs = c->network_outputs = 0;
    c->has_shard_batch = false;
    c->depth_reported = false;
    pn_strmap_free(&c->node_names);
    int errors = c->d->nerrors;
    scope s = {.mod = m};
    stctx x = {.network = true};
    value ret = {0};
    exec_stmts(c, &s, &nd->body, &x, &ret);
    if (!c->d->fatal) {
        int nst = 0;
        for (int i = 0; i < PN_MAX_STAGES; i++)
            if (c->stage_seen[i]) nst = i + 1;
        for (int i = 0; i < nst; i++) {
            if (!c->stage_seen[i]) {
                for (int k = i + 1; k < nst; k++) {
                    if (c->stage_seen[k]) {
                        cerr(c, c->stage_locs[k], "pipeline stages must be numbered from 0 without gaps, but stage %d is missing", i);
                        break;
                    }
                }
                break;
            }
        }
        c->g->nstages = nst ? nst : 1;
        if (c->output_stmts == 0) cerr(c, nd->name_loc, "network '%s' has no outputs", nd->name);
        for (int i = 0; i < s.order.len; i++) {
            binding *b = s.order.items[i];
            if (b->warn_unused && !b->used && b->v.k != V_ERROR)
                pn_warning(c->d, b->loc, "'%s' is never used", b->name);
        }
    }
    pn_strmap_free(&s.names);
    if (c->d->nerrors != errors) {
        pn_graph_free(c->g);
        c->g = NULL;
    }
    return c->g;
}

bool pn_check(pn_program *prog, const char *network_name, pn_graph **out) {
    ck c = {.prog = prog, .d = prog->diags, .stage = -1};
    pn_arena_init(&c.tmp);
    int errors = c.d->nerrors;
    if (out) *out = NULL;
    for (int i = 0; i < prog->modules.len && !c.d->fatal; i++) {
        pn_module *m = prog->modules.items[i];
        for (int k = 0; k < m->blocks.len && !c.d->fatal; k++) resolve_block(&c, m->blocks.items[k]);
        if (i > 0)
            for (int k = 0; k < m->networks.len; k++)
                pn_warning(c.d, ((pn_network_def *)m->networks.items[k])->name_loc,
                           "network '%s' in an imported module is ignored", ((pn_network_def *)m->networks.items[k])->name);
    }
    pn_module *main = prog->modules.len ? prog->modules.items[0] : NULL;
    if (main && !c.d->fatal) {
        pn_network_def *chosen = NULL;
        for (int k = 0; k < main->networks.len; k++) {
            pn_network_def *nd = main->networks.items[k];
            for (int j = 0; j < k; j++) {
                pn_network_def *o = main->networks.items[j];
                if (strcmp(o->name, nd->name) == 0) {
                    pn_error(c.d, nd->name_loc, "redefinition of network '%s'", nd->name);
                    pn_note(c.d, o->name_loc, "previous definition is here");
                }
            }
            if (network_name ? strcmp(nd->name, network_name) == 0 : !chosen) chosen = nd;
        }
        if (network_name && !chosen) {
            pn_error(c.d, PN_NOLOC, "'%s' has no network named '%s'", main->path, network_name);
        } else if (!out && network_name) {
            pn_graph_free(check_network(&c, main, chosen));
        } else if (!out) {
            if (main->networks.len == 0 && main->blocks.len == 0 && main->imports.len == 0)
                pn_error(c.d, (pn_loc){main->file, 0, 0}, "'%s' defines no network or block", main->path);
            for (int k = 0; k < main->networks.len && !c.d->fatal; k++) pn_graph_free(check_network(&c, main, main->networks.items[k]));
        } else if (network_name && !chosen) {
            pn_error(c.d, PN_NOLOC, "'%s' has no network named '%s'", main->path, network_name);
        } else if (!chosen) {
            pn_error(c.d, PN_NOLOC, "'%s' defines no network", main->path);
        } else if (!network_name && main->networks.len > 1) {
            pn_network_def *second = main->networks.items[1];
            pn_error(c.d, second->name_loc, "'%s' defines more than one network; choose one with --network NAME", main->path);
        } else if (c.d->nerrors == errors) {
            *out = check_network(&c, main, chosen);
        }
    }
    pn_strmap_free(&c.node_names);
    pn_arena_free(&c.tmp);
    if (c.d->nerrors != errors && out && *out) {
        pn_graph_free(*out);
        *out = NULL;
    }
    return c.d->nerrors == errors;
}
