/* Parses the text form of the graph IR (as printed by print.c) back into a graph:
 *   network NAME stages=S replicas=R microbatches=M schedule=gpipe|1f1b
 *     NAME = OP(INPUT, ...) KEY=VALUE ... : TYPE stage=S shard=K [output] [train]  [# comment]
 *     output NAME = NODE
 *     train loss=NODE optimizer=sgd(...)|adam(...) batch=N epochs=N seed=N
 * Parameters are re-derived and every shape is re-inferred and compared with the text. */
#include "graph.h"
#include "shapes.h"
#include "../support/strmap.h"
#include "../support/util.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct cursor {
    const char *s, *end;
    int line;
    char *err;
    size_t errlen;
    bool failed;
} cursor;

static bool bad(cursor *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool bad(cursor *c, const char *fmt, ...) {
    if (c->failed) return false;
    int n = snprintf(c->err, c->errlen, "line %d: ", c->line);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < c->errlen) vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    c->failed = true;
    return false;
}

static void ws(cursor *c) {
    while (c->s < c->end && (*c->s == ' ' || *c->s == '\t' || *c->s == '\r')) c->s++;
}

static bool lit(cursor *c, const char *t) {
    ws(c);
    size_t n = strlen(t);
    if ((size_t)(c->end - c->s) >= n && memcmp(c->s, t, n) == 0) {
        c->s += n;
        return true;
    }
    return false;
}

static bool expect(cursor *c, const char *t) {
    return lit(c, t) || bad(c, "expected '%s'", t);
}

/* A name, [A-Za-z0-9_.]+ of any length, on the heap (the caller frees it); NULL if there is none. */
static char *word(cursor *c) {
    ws(c);
    const char *start = c->s;
    while (c->s < c->end && (isalnum((unsigned char)*c->s) || *c->s == '_' || *c->s == '.')) c->s++;
    size_t k = (size_t)(c->s - start);
    if (k == 0) return bad(c, "expected a name"), NULL;
    char *w = pn_xmalloc(k + 1);
    memcpy(w, start, k);
    w[k] = 0;
    return w;
}

static bool integer(cursor *c, int64_t *v) {
    ws(c);
    char *e;
    char tmp[32];
    size_t n = (size_t)(c->end - c->s) < sizeof tmp - 1 ? (size_t)(c->end - c->s) : sizeof tmp - 1;
    memcpy(tmp, c->s, n);
    tmp[n] = 0;
    long long x = strtoll(tmp, &e, 10);
    if (e == tmp) return bad(c, "expected an integer");
    c->s += e - tmp;
    *v = x;
    return true;
}

static bool number(cursor *c, double *v) {
    ws(c);
    char tmp[64], *e;
    size_t n = (size_t)(c->end - c->s) < sizeof tmp - 1 ? (size_t)(c->end - c->s) : sizeof tmp - 1;
    memcpy(tmp, c->s, n);
    tmp[n] = 0;
    *v = strtod(tmp, &e);
    if (e == tmp) return bad(c, "expected a number");
    c->s += e - tmp;
    return true;
}

static bool boolean(cursor *c, int64_t *v) {
    if (lit(c, "true")) return *v = 1, true;
    if (lit(c, "false")) return *v = 0, true;
    return bad(c, "expected true or false");
}

/* The keyword kw that opens an output or train line: kw, white space, then not '=' (which makes a node named kw). */
static bool keyword_line(cursor *c, const char *kw) {
    ws(c);
    size_t n = strlen(kw);
    const char *p = c->s + n;
    if ((size_t)(c->end - c->s) <= n || memcmp(c->s, kw, n) != 0 || (*p != ' ' && *p != '\t')) return false;
    while (p < c->end && (*p == ' ' || *p == '\t' || *p == '\r')) p++;
    if (p < c->end && *p == '=') return false;
    c->s += n;
    return true;
}

/* key=INT, for the header and trailer lines */
static bool keyed_int(cursor *c, const char *key, int64_t *v) {
    char k[64];
    snprintf(k, sizeof k, "%s=", key);
    return expect(c, k) && integer(c, v);
}

static bool type(cursor *c, pn_dtype *t, pn_shape *s) {
    if (lit(c, "f32")) *t = PN_F32;
    else if (lit(c, "i32")) *t = PN_I32;
    else return bad(c, "expected f32 or i32");
    if (!expect(c, "[")) return false;
    s->rank = 0;
    if (lit(c, "]")) return true;
    do {
        if (s->rank >= PN_MAX_RANK) return bad(c, "too many dimensions");
        if (lit(c, "batch")) s->d[s->rank++] = PN_BATCH;
        else if (!integer(c, &s->d[s->rank++])) return false;
    } while (lit(c, ","));
    return expect(c, "]");
}

static pn_op op_by_name(const char *name) {
    for (int i = 0; i < PN_OP_COUNT; i++)
        if (strcmp(pn_ops[i].name, name) == 0) return (pn_op)i;
    return PN_OP_COUNT;
}

/* values=[v0,v1,...] of a tensor constant, into the graph's arena. */
static bool const_values(cursor *c, pn_graph *g, pn_node *n, int64_t *count) {
    int64_t cap = 16, k = 0;
    float *v = pn_xmalloc(sizeof(float) * (size_t)cap);
    bool ok = expect(c, "[");
    while (ok) {
        double d;
        if (!(ok = number(c, &d))) break;
        if (k == cap) v = pn_xrealloc(v, sizeof(float) * (size_t)(cap *= 2));
        v[k++] = (float)d;
        if (!lit(c, ",")) break;
    }
    ok = ok && expect(c, "]");
    if (ok) {
        float *data = pn_arena_alloc(&g->arena, sizeof(float) * (size_t)k);
        memcpy(data, v, sizeof(float) * (size_t)k);
        n->data = data;
        *count = k;
    }
    free(v);
    return ok;
}

static bool attr(cursor *c, pn_node *n, const char *key) {
    int na;
    const pn_attr_desc *a = pn_op_attrs(n->op, &na);
    for (int i = 0; i < na; i++) {
        if (strcmp(a[i].key, key) != 0) continue;
        int64_t *v = n->ia + a[i].slot;
        switch (a[i].kind) {
        case 'i':
        case 'g': return integer(c, v);
        case 'b':
        case 'B': return boolean(c, v);
        case 'f': return number(c, &n->fa[a[i].slot]);
        case 'p': return expect(c, "[") && integer(c, v) && expect(c, ",") && integer(c, v + 1) && expect(c, "]");
        case 'l': {
            int k = 0;
            if (!expect(c, "[")) return false;
            do {
                if (k >= PN_MAX_RANK) return bad(c, "too many entries in '%s'", key);
                if (!integer(c, &v[k++])) return false;
            } while (lit(c, ","));
            n->ia[PN_MAX_IATTR - 1] = k;
            return expect(c, "]");
        }
        }
    }
    return bad(c, "'%s' has no attribute '%s'", pn_ops[n->op].name, key);
}

static bool node_line(cursor *c, pn_graph *g, pn_strmap *names, const char *name) {
    pn_node n = {.name = pn_arena_strdup(&g->arena, name), .loc = PN_NOLOC};
    int32_t in[64];
    int nin = 0;
    char *w = word(c);
    if (!w) return false;
    n.op = op_by_name(w);
    if (n.op == PN_OP_COUNT) bad(c, "unknown op '%s'", w);
    free(w);
    if (n.op == PN_OP_COUNT || !expect(c, "(")) return false;
    if (!lit(c, ")")) {
        do {
            if (nin >= 64) return bad(c, "too many inputs");
            if (!(w = word(c))) return false;
            intptr_t id = (intptr_t)pn_strmap_get(names, w);
            if (!id) bad(c, "'%s' is not defined before this line", w);
            free(w);
            if (!id) return false;
            in[nin++] = (int32_t)(id - 1);
        } while (lit(c, ","));
        if (!expect(c, ")")) return false;
    }
    int64_t nvalues = 0;
    int nattr;
    const pn_attr_desc *ad = pn_op_attrs(n.op, &nattr);
    for (int i = 0; i < nattr; i++)
        if (ad[i].kind == 'g') n.ia[ad[i].slot] = 1; /* absent: 1 */
    while (!lit(c, ":")) {
        w = word(c);
        bool ok = w && expect(c, "=") &&
                  (n.op == PN_OP_CONST && strcmp(w, "values") == 0 ? const_values(c, g, &n, &nvalues) : attr(c, &n, w));
        free(w);
        if (!ok) return false;
    }
    pn_dtype t = PN_F32;
    pn_shape s = {0};
    if (!type(c, &t, &s)) return false;
    int64_t stage, shard;
    if (!keyed_int(c, "stage", &stage) || !keyed_int(c, "shard", &shard)) return false;
    if (stage < 0 || stage >= g->nstages) return bad(c, "stage %lld is out of range", (long long)stage);
    if (shard < 1) return bad(c, "shard must be positive");
    n.stage = (int)stage;
    n.shard = (int)shard;
    for (;;) {
        if (lit(c, "output")) n.flags |= PN_NODE_OUTPUT;
        else if (lit(c, "train")) n.flags |= PN_NODE_TRAIN;
        else break;
    }
    ws(c);
    if (c->s < c->end && *c->s != '#') return bad(c, "unexpected text after the node");
    const pn_node *inputs[64];
    char want_buf[128];
    for (int i = 0; i < nin; i++) inputs[i] = &g->nodes[in[i]];
    int64_t list[PN_MAX_RANK];
    int nlist = 0;
    if (n.op == PN_OP_INPUT) {
        n.dtype = t;
        n.shape = s;
    } else if (n.data) {
        if (t != PN_F32 || s.rank < 1 || pn_shape_batched(&s) || pn_shape_sample_elems(&s) != nvalues)
            return bad(c, "a constant of %lld values cannot be of type %s", (long long)nvalues, pn_shape_str(t, &s, want_buf, sizeof want_buf));
        n.shape = s;
    } else if (n.op == PN_OP_RESHAPE) {
        for (int i = pn_shape_batched(&s) ? 1 : 0; i < s.rank; i++) list[nlist++] = s.d[i];
    } else if (n.op == PN_OP_TRANSPOSE) {
        nlist = (int)n.ia[PN_MAX_IATTR - 1];
        memcpy(list, n.ia + PN_PERM, sizeof(int64_t) * (size_t)nlist);
    } else if (n.op == PN_OP_PAD) { /* the rule reads its four sides from the list */
        nlist = 4;
        memcpy(list, n.ia + PN_PAD_TOP, sizeof(int64_t) * 4);
    }
    n.ia[PN_MAX_IATTR - 1] = 0;
    pn_shape_err se;
    if (!pn_shape_infer(&n, inputs, nin, list, nlist, &se)) return bad(c, "%s", se.msg);
    char want[128], got[128];
    pn_shape_str(t, &s, want, sizeof want);
    pn_shape_str(n.dtype, &n.shape, got, sizeof got);
    if (strcmp(want, got) != 0) return bad(c, "the type %s does not match the inferred %s", want, got);
    if (pn_strmap_get(names, n.name)) return bad(c, "'%s' is defined twice", n.name);
    n.flags &= ~PN_NODE_OUTPUT; /* set again by the output lines */
    int id = pn_graph_add(g, &n, in, nin);
    pn_strmap_put(names, g->nodes[id].name, (void *)(intptr_t)(id + 1));
    return true;
}

static bool train_line(cursor *c, pn_graph *g, pn_strmap *names) {
    pn_train *t = &g->train;
    t->present = true;
    char *w = expect(c, "loss=") ? word(c) : NULL;
    if (!w) return false;
    intptr_t id = (intptr_t)pn_strmap_get(names, w);
    if (!id) bad(c, "unknown loss node '%s'", w);
    free(w);
    if (!id) return false;
    t->loss = (int)(id - 1);
    if (!expect(c, "optimizer=")) return false;
    int64_t b = 0;
    if (lit(c, "sgd(")) {
        t->opt = PN_OPT_SGD;
        if (!expect(c, "lr=") || !number(c, &t->lr) || !expect(c, ", momentum=") || !number(c, &t->momentum) ||
            !expect(c, ", weight_decay=") || !number(c, &t->weight_decay) || !expect(c, ", nesterov=") ||
            !boolean(c, &b) || !expect(c, ")"))
            return false;
        t->nesterov = b;
    } else if (lit(c, "adam(")) {
        t->opt = PN_OPT_ADAM;
        if (!expect(c, "lr=") || !number(c, &t->lr) || !expect(c, ", beta1=") || !number(c, &t->beta1) ||
            !expect(c, ", beta2=") || !number(c, &t->beta2) || !expect(c, ", eps=") || !number(c, &t->eps) ||
            !expect(c, ", weight_decay=") || !number(c, &t->weight_decay) || !expect(c, ")"))
            return false;
    } else {
        return bad(c, "expected sgd(...) or adam(...)");
    }
    return keyed_int(c, "batch", &t->batch) && keyed_int(c, "epochs", &t->epochs) && keyed_int(c, "seed", &t->seed);
}

pn_graph *pn_graph_parse(const char *text, size_t len, char *err, size_t errlen) {
    cursor c = {.s = text, .end = text + len, .line = 0, .err = err, .errlen = errlen};
    pn_graph *g = NULL;
    pn_strmap names = {0};
    err[0] = 0;
    while (c.s < c.end && !c.failed) {
        const char *eol = memchr(c.s, '\n', (size_t)(c.end - c.s));
        cursor l = c;
        l.line = ++c.line;
        l.end = eol ? eol : c.end;
        c.s = eol ? eol + 1 : c.end;
        ws(&l);
        if (l.s == l.end || *l.s == '#') continue;
        char *name = NULL;
        bool ok;
        if (!g) {
            int64_t st, rep, mb;
            ok = expect(&l, "network") && (name = word(&l));
            if (ok) {
                g = pn_graph_new(name);
                ok = keyed_int(&l, "stages", &st) && keyed_int(&l, "replicas", &rep) &&
                     keyed_int(&l, "microbatches", &mb) && expect(&l, "schedule=");
            }
            if (ok) {
                if (lit(&l, "gpipe")) g->schedule = PN_SCHED_GPIPE;
                else if (lit(&l, "1f1b")) g->schedule = PN_SCHED_1F1B;
                else ok = bad(&l, "expected gpipe or 1f1b");
            }
            if (ok && (st < 1 || st > 1024 || rep < 1 || mb < 1)) ok = bad(&l, "stages, replicas and microbatches must be positive");
            if (ok) {
                g->nstages = (int)st;
                g->replicas = (int)rep;
                g->has_shard_batch = rep > 1; /* the text says replicas=1 for no directive too */
                g->microbatches = (int)mb;
                g->has_pipeline = mb > 1;
            }
        } else if (keyword_line(&l, "output")) {
            char *node = NULL;
            ok = (name = word(&l)) && expect(&l, "=") && (node = word(&l));
            intptr_t id = ok ? (intptr_t)pn_strmap_get(&names, node) : 0;
            if (ok && !id) ok = bad(&l, "unknown output node '%s'", node);
            if (ok) pn_graph_add_output(g, name, (int)(id - 1), PN_NOLOC);
            free(node);
        } else if (keyword_line(&l, "train")) {
            ok = train_line(&l, g, &names);
        } else {
            ok = (name = word(&l)) && expect(&l, "=") && node_line(&l, g, &names, name);
        }
        free(name);
        if (!ok) {
            c.failed = true;
            if (!err[0]) snprintf(err, errlen, "line %d: %s", l.line, "invalid graph text");
        }
    }
    if (!c.failed && !g) snprintf(err, errlen, "line %d: expected 'network'", c.line);
    pn_strmap_free(&names);
    if (c.failed || err[0]) {
        pn_graph_free(g);
        return NULL;
    }
    return g;
}
