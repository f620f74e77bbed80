/* The checker's names: diagnostics with the block expansions they come from, "did you mean" suggestions,
 * scopes, node naming, and the pre-check of each block definition's names and structure. */
#include "check_internal.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* A number as written back to the user: 8 for an integer, 8.0 for a float. */
const char *ck_fmt_num(char *buf, size_t n, double f) {
    snprintf(buf, n, "%.15g", f);
    if (!strpbrk(buf, ".eEn")) strncat(buf, ".0", n - strlen(buf) - 1);
    return buf;
}

const char *ck_vkind_name(vkind k) {
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

/* ---- diagnostics within block expansions ------------------------------------------------ */

void ck_expansion_notes(ck *c) {
    for (frame *f = c->frames; f; f = f->up)
        pn_note(c->d, f->call_loc, "in block '%s' called here", f->block->name);
}

void ck_error(ck *c, pn_loc loc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *msg = pn_xvasprintf(fmt, ap);
    va_end(ap);
    pn_error(c->d, loc, "%s", msg);
    free(msg);
    ck_expansion_notes(c);
}

/* Appends "; did you mean 'x'?" when some candidate is close to name. */
const char *ck_suggest(ck *c, const char *name, const char *const *cands, int n) {
    const char *best = pn_closest(name, cands, n);
    return best ? pn_arena_printf(&c->tmp, "; did you mean '%s'?", best) : "";
}

/* The names PyTorch, Keras and TensorFlow give to arguments and settings, and pnet's: each pair
 * applies where pnet's name is a candidate ("kernel_size" is conv2d's kernel, a pool's size). */
static const char *const arg_aliases[][3] = {
    {"learning_rate", "lr", NULL}, {"epsilon", "eps", NULL},           {"betas", "beta1", "beta2"},
    {"decay", "weight_decay", NULL}, {"batch_size", "batch", NULL},    {"num_epochs", "epochs", NULL},
    {"out_features", "units", NULL}, {"output_dim", "units", NULL},    {"features", "units", NULL},
    {"use_bias", "bias", NULL},      {"filters", "out_channels", NULL}, {"kernel_size", "kernel", NULL},
    {"kernel_size", "size", NULL},   {"pool_size", "size", NULL},      {"strides", "stride", NULL},
    {"num_embeddings", "vocab", NULL}, {"input_dim", "vocab", NULL},   {"vocab_size", "vocab", NULL},
    {"embedding_dim", "dim", NULL},  {"output_dim", "dim", NULL},      {"rate", "p", NULL},
    {"negative_slope", "slope", NULL}, {"alpha", "slope", NULL},       {"dim", "axis", NULL},
    {"axes", "perm", NULL},          {"dims", "perm", NULL},           {"tensors", "inputs", NULL},
    {"begin", "start", NULL},        {"stop", "end", NULL},
};

static bool is_cand(const char *name, const char *const *cands, int n) {
    for (int i = 0; i < n; i++)
        if (cands[i] && strcmp(cands[i], name) == 0) return true;
    return false;
}

/* As ck_suggest, for a keyword argument or a setting: another framework's name for a candidate
 * first ("learning_rate": "; did you mean 'lr'?"), then the closest candidate. */
const char *ck_suggest_arg(ck *c, const char *name, const char *const *cands, int n) {
    for (int i = 0; i < PN_ARRAY_LEN(arg_aliases); i++) {
        const char *const *a = arg_aliases[i];
        if (strcmp(a[0], name) != 0 || !is_cand(a[1], cands, n)) continue;
        if (a[2] && is_cand(a[2], cands, n)) return pn_arena_printf(&c->tmp, "; did you mean '%s' and '%s'?", a[1], a[2]);
        return pn_arena_printf(&c->tmp, "; did you mean '%s'?", a[1]);
    }
    return ck_suggest(c, name, cands, n);
}

const char *ck_suggest_name(ck *c, scope *s, const char *name) {
    const char **cands = pn_arena_alloc(&c->tmp, sizeof(char *) * (size_t)(s->order.len + 1));
    for (int i = 0; i < s->order.len; i++) cands[i] = ((struct binding *)s->order.items[i])->name;
    return ck_suggest(c, name, cands, s->order.len);
}

const char *ck_suggest_block(ck *c, pn_module *m, const char *name) {
    const char **cands = pn_arena_alloc(&c->tmp, sizeof(char *) * (size_t)(m->blocks.len + 1));
    for (int i = 0; i < m->blocks.len; i++) cands[i] = ((pn_block_def *)m->blocks.items[i])->name;
    return ck_suggest(c, name, cands, m->blocks.len);
}

const char *ck_suggest_callee(ck *c, pn_module *m, const char *name) {
    const char *cands[PN_OP_COUNT];
    int n = 0;
    for (int i = 0; i < PN_OP_COUNT; i++)
        if (!(pn_ops[i].flags & PN_OPF_INTERNAL)) cands[n++] = pn_ops[i].name;
    const char *s = ck_suggest(c, name, cands, n);
    if (*s) return s;
    return ck_suggest_block(c, m, name);
}

/* ---- scopes ------------------------------------------------------------------------------ */

binding *ck_lookup(scope *s, const char *name) { return pn_strmap_get(&s->names, name); }

bool ck_define(ck *c, scope *s, const char *name, pn_loc loc, value v, bool warn_unused) {
    if (strcmp(name, "batch") == 0) {
        ck_error(c, loc, "'batch' is reserved for the batch dimension and cannot name a value");
        return false;
    }
    binding *old = ck_lookup(s, name);
    if (old) {
        ck_error(c, loc, "redefinition of '%s'", name);
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

const char *ck_qualify(ck *c, scope *s, const char *name) {
    return s->prefix ? pn_arena_printf(&c->g->arena, "%s.%s", s->prefix, name) : pn_arena_strdup(&c->g->arena, name);
}

const char *ck_node_name(ck *c, naming *nm, const char *key, bool top) {
    if (top) return nm->base;
    intptr_t k = (intptr_t)pn_strmap_get(&nm->counts, key);
    pn_strmap_put(&nm->counts, key, (void *)(k + 1));
    return pn_arena_printf(&c->g->arena, "%s.%s.%ld", nm->base, key, (long)k);
}

/* Marks the names an expression reads as used, without evaluating it: for expressions that were
 * rejected early, so they cause no follow-on "never used" warnings. */
void ck_mark_used(scope *s, pn_expr *e, int depth) {
    if (!e || depth > PN_MAX_EXPR_DEPTH) return;
    switch (e->kind) {
    case PN_EX_NAME: {
        binding *b = ck_lookup(s, e->name);
        if (b) b->used = true;
        break;
    }
    case PN_EX_CALL:
        for (int i = 0; i < e->args.len; i++) ck_mark_used(s, ((pn_arg *)e->args.items[i])->value, depth + 1);
        break;
    case PN_EX_LIST:
        for (int i = 0; i < e->args.len; i++) ck_mark_used(s, e->args.items[i], depth + 1);
        break;
    case PN_EX_BINARY: ck_mark_used(s, e->rhs, depth + 1); /* fall through */
    case PN_EX_NEG: ck_mark_used(s, e->lhs, depth + 1); break;
    default: break;
    }
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
                const char *sug = ck_suggest(r->c, e->name, (const char *const *)r->order.items, r->order.len);
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
                rerr(r, e->name_loc, "module '%s' has no block '%s'%s", e->ns, e->name, ck_suggest_block(r->c, dep, e->name));
        } else if (!pn_strmap_get(&m->block_map, e->name) && pn_op_lookup(e->name) == PN_OP_COUNT &&
                   strcmp(e->name, "sqrt") != 0) {
            rerr(r, e->name_loc, "unknown op or block '%s'%s", e->name, ck_suggest_callee(r->c, m, e->name));
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
        case PN_ST_CONST:
        case PN_ST_INPUT:
            rerr(r, st->loc, st->kind == PN_ST_CONST ? "constants can only be declared in a network, outside train { }"
                                                     : "inputs can only be declared in a network");
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

void ck_resolve_block(ck *c, pn_block_def *b) {
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
