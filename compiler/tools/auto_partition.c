/* pnetc --auto-partition S: splits a network's layer statements into S contiguous pipeline
 * stages so that the slowest stage is as fast as possible under the report's cost model
 * (dynamic programming over contiguous ranges), then prints the source file back with the
 * @partition groups it chose, replacing any it had. */
#include "auto_partition.h"
#include "../ir/report.h"
#include "../support/util.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

typedef struct edit {
    uint32_t off, len; /* replace [off, off + len) */
    const char *text;
} edit;

typedef struct unit {
    pn_stmt *st;      /* the statement as written: an assignment, or a directive around one */
    const char *name; /* the name it defines */
    double cost;
} unit;

/* The assignment a statement defines, through directives such as @shard(features, K). */
static pn_stmt *assignment(pn_stmt *st) {
    while (st && st->kind == PN_ST_DIRECTIVE && st->form == PN_DIR_STMT && st->body.len == 1) st = st->body.items[0];
    return st && st->kind == PN_ST_ASSIGN ? st : NULL;
}

static void collect(pn_vec *body, unit *u, int *n, int cap, edit *e, int *ne, int ecap, pn_vec *others, pn_arena *a) {
    for (int i = 0; i < body->len; i++) {
        pn_stmt *st = body->items[i];
        pn_stmt *as = assignment(st);
        if (st->kind == PN_ST_DIRECTIVE && strcmp(st->name, "partition") == 0 && st->form != PN_DIR_ALONE) {
            /* Drop the directive (and its braces), keep its statements. */
            if (st->body.len > 0 && *ne + 2 <= ecap) {
                pn_stmt *first = st->body.items[0], *last = st->body.items[st->body.len - 1];
                e[(*ne)++] = (edit){st->full.off, first->full.off - st->full.off, ""};
                uint32_t end = last->full.off + last->full.len, stop = st->full.off + st->full.len;
                if (stop > end) e[(*ne)++] = (edit){end, stop - end, ""};
            }
            collect(&st->body, u, n, cap, e, ne, ecap, others, a);
        } else if (as && *n < cap) {
            u[(*n)++] = (unit){st, as->name, 0};
        } else {
            pn_vec_push(a, others, st);
        }
    }
}

/* By offset; at one offset, insertions before deletions (so both apply). */
static int by_offset(const void *a, const void *b) {
    const edit *x = a, *y = b;
    if (x->off != y->off) return (x->off > y->off) - (x->off < y->off);
    return (x->len > 0) - (y->len > 0);
}

bool pn_auto_partition(pn_program *prog, const pn_graph *g, int S, FILE *out, char *err, size_t errlen) {
    pn_module *m = prog->modules.items[0];
    pn_network_def *nd = NULL;
    for (int i = 0; i < m->networks.len; i++)
        if (strcmp(((pn_network_def *)m->networks.items[i])->name, g->name) == 0) nd = m->networks.items[i];
    PN_ASSERT(nd);
    enum { CAP = 65536 };
    unit *u = calloc(CAP, sizeof *u);
    edit *e = calloc(2 * CAP + 16, sizeof *e);
    int n = 0, ne = 0;
    pn_vec others = {0};
    collect(&nd->body, u, &n, CAP, e, &ne, 2 * CAP, &others, &prog->arena);
    if (n < S) {
        snprintf(err, errlen, "network '%s' has %d layer statements, fewer than %d stages", g->name, n, S);
        free(u);
        free(e);
        return false;
    }
    /* A statement's cost: the nodes it made (named after it, or qualified by it). */
    for (int i = 0; i < g->nnodes; i++) {
        const pn_node *nd2 = &g->nodes[i];
        if (nd2->flags & PN_NODE_TRAIN) continue;
        for (int k = 0; k < n; k++) {
            size_t len = strlen(u[k].name);
            if (strncmp(nd2->name, u[k].name, len) == 0 && (nd2->name[len] == 0 || nd2->name[len] == '.')) {
                u[k].cost += pn_node_cost(g, nd2);
                break;
            }
        }
    }
    /* best[s][i]: the least possible slowest stage for units [0, i) in s stages. */
    double *pre = calloc((size_t)n + 1, sizeof *pre);
    for (int i = 0; i < n; i++) pre[i + 1] = pre[i] + u[i].cost;
    double *best = malloc(sizeof(double) * (size_t)(S + 1) * (size_t)(n + 1));
    int *cut = malloc(sizeof(int) * (size_t)(S + 1) * (size_t)(n + 1));
#define B(s, i) best[(size_t)(s) * (size_t)(n + 1) + (size_t)(i)]
#define C(s, i) cut[(size_t)(s) * (size_t)(n + 1) + (size_t)(i)]
    for (int s = 0; s <= S; s++)
        for (int i = 0; i <= n; i++) B(s, i) = DBL_MAX;
    B(0, 0) = 0;
    for (int s = 1; s <= S; s++)
        for (int i = s; i <= n; i++)
            for (int j = s - 1; j < i; j++) {
                if (B(s - 1, j) == DBL_MAX) continue;
                double v = B(s - 1, j) > pre[i] - pre[j] ? B(s - 1, j) : pre[i] - pre[j];
                if (v < B(s, i)) {
                    B(s, i) = v;
                    C(s, i) = j;
                }
            }
    bool ok = true;
    int *start = calloc((size_t)S + 1, sizeof *start);
    start[S] = n;
    for (int s = S, i = n; s > 0; s--) {
        start[s - 1] = C(s, i);
        i = start[s - 1];
    }
    /* Network-level directives, inputs, outputs and train { } must stay outside the groups. */
    for (int s = 0; s < S; s++) {
        uint32_t lo = u[start[s]].st->full.off, hi = u[start[s + 1] - 1].st->full.off + u[start[s + 1] - 1].st->full.len;
        for (int k = 0; k < others.len; k++) {
            pn_stmt *o = others.items[k];
            if (o->full.off > lo && o->full.off < hi && o->kind != PN_ST_OUTPUT) {
                int line, col;
                pn_loc_linecol(prog->diags, o->full, &line, &col);
                snprintf(err, errlen, "stage %d would enclose the statement at line %d; move it after the layers", s, line);
                ok = false;
                goto out;
            }
        }
    }
    /* The groups: "@partition(k) {" before a stage's first statement, "}" after its last. */
    char **texts = calloc((size_t)S * 2, sizeof *texts);
    for (int s = 0; s < S; s++) {
        pn_stmt *first = u[start[s]].st, *last = u[start[s + 1] - 1].st;
        texts[2 * s] = pn_xmalloc(64);
        snprintf(texts[2 * s], 64, "@partition(%d) {\n    ", s);
        e[ne++] = (edit){first->full.off, 0, texts[2 * s]};
        texts[2 * s + 1] = pn_xstrdup("\n    }");
        e[ne++] = (edit){last->full.off + last->full.len, 0, texts[2 * s + 1]};
    }
    qsort(e, (size_t)ne, sizeof *e, by_offset);
    const pn_source *src = pn_source_get(prog->diags, m->file);
    uint32_t pos = 0;
    for (int i = 0; i < ne; i++) {
        if (e[i].off < pos) continue; /* inside a deleted range */
        fwrite(src->text + pos, 1, e[i].off - pos, out);
        fputs(e[i].text, out);
        pos = e[i].off + e[i].len;
    }
    fwrite(src->text + pos, 1, src->len - pos, out);
    fprintf(stderr, "pnetc: note: %d stages, modelled slowest stage %.3g us per sample (mean %.3g)\n", S,
            B(S, n) * 1e6, pre[n] / S * 1e6);
    for (int s = 0; s < 2 * S; s++) free(texts[s]);
    free(texts);
out:
    free(start);
    free(best);
    free(cut);
    free(pre);
    free(u);
    free(e);
    return ok;
#undef B
#undef C
}
