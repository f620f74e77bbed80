/* pnetc --auto-partition S: splits a network's layer statements into S contiguous pipeline
 * stages so that the slowest stage is as fast as possible under the report's cost model
 * (dynamic programming over contiguous ranges), then prints the source file back with the
 * @partition groups it chose, and the @pipeline(microbatches = M) that the same costs find fastest
 * for them. It replaces all partitioning: the network's old groups and @pipeline go, and so do the
 * @partition directives of the blocks it calls. The text is rewritten in two steps:
 * deletions first (the old directives), then the new groups, line by line where the statements
 * stand on their own lines (re-indented), inline where they do not. The result is checked
 * again before it is printed, and the note gives --report's figures for it. */
#include "auto_partition.h"
#include "../check/check.h"
#include "../ir/report.h"
#include "../parse/parse.h"
#include "../passes/passes.h"
#include "../support/util.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

typedef struct edit {
    uint32_t off, len; /* replace [off, off + len) */
    const char *text;
    int seq;           /* insertions at one offset keep their order */
    bool partial;      /* a deletion inside a line, which may leave it blank */
} edit;

typedef struct edits {
    edit *e;
    int n, cap;
} edits;

typedef struct unit {
    pn_stmt *st;      /* the statement as written: an assignment, or a directive around one */
    const char *name; /* the name it defines */
    double cost;
} unit;

/* Old groups' contents that lose one level of indentation, in source offsets. */
typedef struct dedent {
    uint32_t lo, hi;
    int amount;
} dedent;

typedef struct ap {
    pn_program *prog;
    pn_module *m;
    const char *text; /* the main file */
    uint32_t len;
    edits del;        /* deletions in the main file */
    dedent *dd;
    int ndd, capdd;
    unit *u;
    int n, cap;
    pn_vec others;    /* the network's statements that are not layers */
    pn_vec blocks;    /* blocks the network calls, visited */
    pn_vec stripped;  /* those of them that lost @partition directives */
    char *err;
    size_t errlen;
    bool failed;
    int train_chunk;  /* pnetc --train-chunk, for the memory plan */
} ap;

static void push_edit(edits *es, uint32_t off, uint32_t len, const char *text) {
    if (es->n == es->cap) {
        es->cap = es->cap ? 2 * es->cap : 64;
        es->e = pn_xrealloc(es->e, sizeof *es->e * (size_t)es->cap);
    }
    es->e[es->n] = (edit){off, len, text, es->n, false};
    es->n++;
}

static bool blank(char ch) {
    return ch == ' ' || ch == '\t' || ch == '\r';
}

static uint32_t line_start(const char *t, uint32_t off) {
    while (off > 0 && t[off - 1] != '\n') off--;
    return off;
}

/* True when only blanks stand between the start of off's line and off. */
static bool starts_line(const char *t, uint32_t off) {
    for (uint32_t i = line_start(t, off); i < off; i++)
        if (!blank(t[i])) return false;
    return true;
}

/* The offset after the newline that ends off's line, when only blanks (and, with comment, a
 * # comment) follow off on it; else 0. */
static uint32_t clean_rest(const char *t, uint32_t len, uint32_t off, bool comment) {
    while (off < len && blank(t[off])) off++;
    if (comment && off < len && t[off] == '#')
        while (off < len && t[off] != '\n') off++;
    return off < len && t[off] == '\n' ? off + 1 : 0;
}

/* Deletes [lo, hi) of the main file, or the whole line when nothing else stands on it. */
static void delete_text(ap *a, uint32_t lo, uint32_t hi) {
    while (hi < a->len && (a->text[hi] == ' ' || a->text[hi] == '\t')) hi++;
    uint32_t next = clean_rest(a->text, a->len, hi, false);
    if (next && starts_line(a->text, lo)) {
        push_edit(&a->del, line_start(a->text, lo), next - line_start(a->text, lo), "");
        return;
    }
    if (next) { /* the end of a line: no trailing blanks */
        while (lo > 0 && (a->text[lo - 1] == ' ' || a->text[lo - 1] == '\t')) lo--;
        hi = next - 1;
        if (hi > lo && a->text[hi - 1] == '\r') hi--;
    }
    push_edit(&a->del, lo, hi - lo, "");
    a->del.e[a->del.n - 1].partial = true;
}

/* The offset just past the '{' that opens a group directive's body. */
static uint32_t group_open_end(const ap *a, const pn_stmt *st) {
    uint32_t i = st->loc.off + st->loc.len;
    while (i < a->len && a->text[i] != '{') {
        if (a->text[i] == '#')
            while (i < a->len && a->text[i] != '\n') i++;
        else i++;
    }
    return i < a->len ? i + 1 : st->loc.off + st->loc.len;
}

/* Removes one @partition directive of the main file, keeping its statements. */
static void strip_directive(ap *a, pn_stmt *st) {
    uint32_t stop = st->full.off + st->full.len;
    if (st->form == PN_DIR_STMT) {
        delete_text(a, st->full.off, st->loc.off + st->loc.len);
        return;
    }
    if (st->body.len == 0) {
        delete_text(a, st->full.off, stop);
        return;
    }
    uint32_t open = group_open_end(a, st);
    delete_text(a, st->full.off, open);
    pn_stmt *first = st->body.items[0];
    uint32_t close = stop - 1; /* the '}' */
    if (close >= a->len || a->text[close] != '}') return;
    delete_text(a, close, stop);
    /* Contents on their own lines move out one level, to where the directive stood. */
    uint32_t dl = line_start(a->text, st->full.off), fl = line_start(a->text, first->full.off);
    if (starts_line(a->text, st->full.off) && starts_line(a->text, first->full.off) && fl > dl) {
        int amount = (int)(first->full.off - fl) - (int)(st->full.off - dl);
        if (amount > 0) {
            if (a->ndd == a->capdd) {
                a->capdd = a->capdd ? 2 * a->capdd : 16;
                a->dd = pn_xrealloc(a->dd, sizeof *a->dd * (size_t)a->capdd);
            }
            a->dd[a->ndd++] = (dedent){first->full.off, close, amount};
        }
    }
}

/* Every @partition directive in body, at any depth. */
static void strip_all(ap *a, pn_vec *body) {
    for (int i = 0; i < body->len; i++) {
        pn_stmt *st = body->items[i];
        if (st->kind != PN_ST_DIRECTIVE && st->kind != PN_ST_TRAIN) continue;
        if (st->kind == PN_ST_DIRECTIVE && strcmp(st->name, "partition") == 0 && st->form != PN_DIR_ALONE)
            strip_directive(a, st);
        strip_all(a, &st->body);
    }
}

/* The assignment a statement defines, through directives such as @shard(features, K). */
static pn_stmt *assignment(pn_stmt *st) {
    while (st && st->kind == PN_ST_DIRECTIVE && st->form == PN_DIR_STMT && st->body.len == 1) st = st->body.items[0];
    return st && st->kind == PN_ST_ASSIGN ? st : NULL;
}

/* The network's layer statements, in order, looking through its old @partition groups. */
static void collect(ap *a, pn_vec *body) {
    for (int i = 0; i < body->len; i++) {
        pn_stmt *st = body->items[i];
        pn_stmt *as = assignment(st);
        if (st->kind == PN_ST_DIRECTIVE && strcmp(st->name, "partition") == 0 && st->form != PN_DIR_ALONE) {
            collect(a, &st->body);
        } else if (as) {
            if (a->n == a->cap) {
                a->cap = a->cap ? 2 * a->cap : 64;
                a->u = pn_xrealloc(a->u, sizeof *a->u * (size_t)a->cap);
            }
            a->u[a->n++] = (unit){st, as->name, 0};
        } else {
            pn_vec_push(&a->prog->arena, &a->others, st);
        }
    }
}

static bool has_partition(pn_vec *body) {
    for (int i = 0; i < body->len; i++) {
        pn_stmt *st = body->items[i];
        if (st->kind == PN_ST_DIRECTIVE && strcmp(st->name, "partition") == 0) return true;
        if (has_partition(&st->body)) return true;
    }
    return false;
}

static void visit_stmts(ap *a, pn_module *mod, pn_vec *body);

/* Finds the blocks an expression calls (as the checker resolves them) and strips their
 * @partition directives. */
static void visit_expr(ap *a, pn_module *mod, pn_expr *e) {
    if (!e || a->failed) return;
    if (e->kind == PN_EX_CALL) {
        pn_module *bm = e->ns ? pn_strmap_get(&mod->ns_map, e->ns) : mod;
        pn_block_def *b = bm ? pn_strmap_get(&bm->block_map, e->name) : NULL;
        bool seen = false;
        for (int i = 0; b && i < a->blocks.len; i++) seen |= a->blocks.items[i] == b;
        if (b && !seen) {
            pn_vec_push(&a->prog->arena, &a->blocks, b);
            if (has_partition(&b->body)) {
                int line, col;
                pn_loc_linecol(a->prog->diags, b->name_loc, &line, &col);
                if (b->mod != a->m) {
                    snprintf(a->err, a->errlen,
                             "block '%s.%s' (%s:%d:%d) has @partition directives, which --auto-partition cannot "
                             "remove from an imported file; remove them there first",
                             b->mod->ns, b->name, pn_source_get(a->prog->diags, b->mod->file)->path, line, col);
                    a->failed = true;
                    return;
                }
                strip_all(a, &b->body);
                pn_vec_push(&a->prog->arena, &a->stripped, b);
            }
            visit_stmts(a, b->mod, &b->body);
        }
    }
    visit_expr(a, mod, e->lhs);
    visit_expr(a, mod, e->rhs);
    for (int i = 0; i < e->args.len; i++)
        visit_expr(a, mod, e->kind == PN_EX_CALL ? ((pn_arg *)e->args.items[i])->value : e->args.items[i]);
}

static void visit_stmts(ap *a, pn_module *mod, pn_vec *body) {
    for (int i = 0; i < body->len && !a->failed; i++) {
        pn_stmt *st = body->items[i];
        visit_expr(a, mod, st->value);
        visit_stmts(a, mod, &st->body);
    }
}

/* By offset; at one offset, insertions before deletions (so both apply). */
static int by_offset(const void *x, const void *y) {
    const edit *p = x, *q = y;
    if (p->off != q->off) return (p->off > q->off) - (p->off < q->off);
    if ((p->len > 0) != (q->len > 0)) return (p->len > 0) - (q->len > 0);
    return (p->seq > q->seq) - (p->seq < q->seq);
}

/* A growing string. */
typedef struct buf {
    char *s;
    size_t len, cap;
} buf;

static void put(buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->s = pn_xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

static void put_str(buf *b, const char *s) {
    put(b, s, strlen(s));
}

static void spaces(buf *b, int n) {
    for (int i = 0; i < n; i++) put(b, " ", 1);
}

/* The main file with the deletions applied; shift[k]: the bytes that deletions 0..k removed. */
static buf apply_deletions(ap *a, uint32_t *shift) {
    buf t = {0};
    if (a->del.n) qsort(a->del.e, (size_t)a->del.n, sizeof *a->del.e, by_offset);
    uint32_t pos = 0, gone = 0;
    for (int i = 0; i < a->del.n; i++) {
        edit *e = &a->del.e[i];
        if (e->off < pos) { /* overlaps the previous deletion: keep only the new part */
            uint32_t end = e->off + e->len > pos ? e->off + e->len : pos;
            e->len = end - pos;
            e->off = pos;
        }
        put(&t, a->text + pos, e->off - pos);
        pos = e->off + e->len;
        gone += e->len;
        shift[i] = gone;
    }
    put(&t, a->text + pos, a->len - pos);
    return t;
}

/* Where source offset off lands after the deletions. */
static uint32_t mapped(const ap *a, const uint32_t *shift, uint32_t off) {
    int lo = 0, hi = a->del.n; /* the deletions that end at or before off */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (a->del.e[mid].off + a->del.e[mid].len <= off) lo = mid + 1;
        else hi = mid;
    }
    uint32_t gone = lo ? shift[lo - 1] : 0;
    if (lo < a->del.n && a->del.e[lo].off < off) gone += off - a->del.e[lo].off; /* inside one */
    return off - gone;
}

static int line_of(const uint32_t *starts, int nlines, uint32_t off) {
    int lo = 0, hi = nlines - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (starts[mid] <= off) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

static int indent_of(const char *t, uint32_t ls) {
    int n = 0;
    while (blank(t[ls + (uint32_t)n]) && t[ls + (uint32_t)n] != '\r') n++;
    return n;
}

/* Writes the partitioned text: groups of units [start[s], start[s + 1]) as stage s, with the
 * directive lead (or nothing when NULL) on the line before stage 0's group. */
static buf rewrite(ap *a, const pn_network_def *nd, const int *start, int S, const char *lead) {
    uint32_t *shift = pn_xcalloc((size_t)a->del.n + 1, sizeof *shift);
    buf t = apply_deletions(a, shift);
    int nlines = 1;
    for (size_t i = 0; i < t.len; i++) nlines += t.s[i] == '\n';
    uint32_t *ls = pn_xcalloc((size_t)nlines + 1, sizeof *ls);
    for (uint32_t i = 0, k = 1; i < t.len; i++)
        if (t.s[i] == '\n') ls[k++] = i + 1;
    ls[nlines] = (uint32_t)t.len + 1;
    int *ind = pn_xmalloc(sizeof(int) * (size_t)nlines); /* the new indentation, or -1 */
    buf *pre = pn_xcalloc((size_t)nlines + 1, sizeof *pre); /* text before each line: "}" and "@partition" */
    edits ins = {0};                                    /* inline group edges */
    bool *emptied = pn_xcalloc((size_t)nlines, sizeof *emptied); /* blank only because of a deletion */
    for (int i = 0; i < nlines; i++) ind[i] = -1;
    for (int k = 0; k < a->del.n; k++) {
        if (!a->del.e[k].partial) continue;
        int l = line_of(ls, nlines, mapped(a, shift, a->del.e[k].off));
        uint32_t p = ls[l] + (uint32_t)indent_of(t.s, ls[l]);
        emptied[l] = p < t.len && (t.s[p] == '\n' || t.s[p] == '\r');
    }
    for (int k = 0; k < a->ndd; k++) {
        int l0 = line_of(ls, nlines, mapped(a, shift, a->dd[k].lo)), l1 = line_of(ls, nlines, mapped(a, shift, a->dd[k].hi));
        for (int l = l0; l <= l1; l++) {
            uint32_t p = ls[l] + (uint32_t)indent_of(t.s, ls[l]);
            if (l == l1 && p >= mapped(a, shift, a->dd[k].hi)) break;
            int cur = ind[l] >= 0 ? ind[l] : indent_of(t.s, ls[l]);
            ind[l] = cur > a->dd[k].amount ? cur - a->dd[k].amount : 0;
        }
    }
    /* The network body's indentation: that of its first statement, when it has a line of its own. */
    int base = 4;
    pn_stmt *st0 = nd->body.len ? nd->body.items[0] : NULL;
    if (st0 && starts_line(a->text, st0->full.off)) base = (int)(st0->full.off - line_start(a->text, st0->full.off));
    char head[64];
    for (int s = 0; s < S; s++) {
        pn_stmt *first = a->u[start[s]].st, *last = a->u[start[s + 1] - 1].st;
        uint32_t f = mapped(a, shift, first->full.off), l = mapped(a, shift, last->full.off + last->full.len);
        uint32_t after = clean_rest(t.s, (uint32_t)t.len, l, true);
        if (!starts_line(t.s, f) || !after) {
            if (s == 0 && lead) push_edit(&ins, f, 0, pn_xasprintf("%s ", lead));
            snprintf(head, sizeof head, "@partition(%d) { ", s);
            push_edit(&ins, f, 0, pn_xstrdup(head));
            push_edit(&ins, l, 0, pn_xstrdup(" }"));
            continue;
        }
        int l0 = line_of(ls, nlines, f), l1 = line_of(ls, nlines, after - 1);
        /* Comment lines right above the first statement go into the group with it. */
        while (l0 > 0 && t.s[ls[l0 - 1] + (uint32_t)indent_of(t.s, ls[l0 - 1])] == '#') l0--;
        if (s == 0 && lead) {
            spaces(&pre[l0], base);
            put_str(&pre[l0], lead);
            put_str(&pre[l0], "\n");
        }
        spaces(&pre[l0], base);
        snprintf(head, sizeof head, "@partition(%d) {\n", s);
        put_str(&pre[l0], head);
        spaces(&pre[l1 + 1], base);
        put_str(&pre[l1 + 1], "}\n");
        /* A line that starts a statement (or a comment) goes one level in; a statement's later
         * lines keep their place relative to its first. */
        int k = start[s], shift_of_unit = 0;
        for (int li = l0; li <= l1; li++) {
            int old = indent_of(t.s, ls[li]);
            uint32_t p = ls[li] + (uint32_t)old;
            if (p >= t.len || t.s[p] == '\n') continue;
            while (k < start[s + 1] - 1 && mapped(a, shift, a->u[k + 1].st->full.off) <= p) k++;
            uint32_t us = mapped(a, shift, a->u[k].st->full.off),
                     ue = mapped(a, shift, a->u[k].st->full.off + a->u[k].st->full.len);
            if (p > us && p < ue) {
                ind[li] = old + shift_of_unit > 0 ? old + shift_of_unit : 0;
            } else {
                ind[li] = base + 4;
                shift_of_unit = base + 4 - old;
            }
        }
    }
    if (ins.n) qsort(ins.e, (size_t)ins.n, sizeof *ins.e, by_offset);
    buf out = {0};
    int next = 0;
    for (int li = 0; li < nlines; li++) {
        if (pre[li].len) put(&out, pre[li].s, pre[li].len);
        uint32_t lo = ls[li], hi = li + 1 < nlines ? ls[li + 1] : (uint32_t)t.len;
        if (emptied[li]) lo = hi;
        if (ind[li] >= 0) {
            spaces(&out, ind[li]);
            lo += (uint32_t)indent_of(t.s, ls[li]);
        }
        for (uint32_t p = lo; p < hi; p++) {
            for (; next < ins.n && ins.e[next].off <= p; next++) put_str(&out, ins.e[next].text);
            put(&out, t.s + p, 1);
        }
    }
    for (; next < ins.n; next++) put_str(&out, ins.e[next].text);
    if (pre[nlines].len) put(&out, pre[nlines].s, pre[nlines].len);
    for (int i = 0; i <= nlines; i++) free(pre[i].s);
    for (int i = 0; i < ins.n; i++) free((char *)ins.e[i].text);
    free(ins.e);
    free(pre);
    free(emptied);
    free(ind);
    free(ls);
    free(shift);
    free(t.s);
    if (!out.s) put_str(&out, "");
    return out;
}

/* Checks the partitioned text as pnetc would read it, and fills its report's stage costs (measured
 * where the profile names a layer) and the chunk they are for. */
static bool recheck(ap *a, const char *network, const pn_profile *profile, const char *text, size_t len, int S,
                    pn_stage_stats *st, double *balance, long long *batch, long long *chunk) {
    pn_diags d;
    pn_diags_init(&d, stderr);
    d.no_warnings = true;
    pn_program p;
    pn_program_init(&p, &d);
    for (int i = 0; i < a->prog->include_dirs.len; i++) pn_vec_push(&p.arena, &p.include_dirs, a->prog->include_dirs.items[i]);
    p.stdlib_dir = a->prog->stdlib_dir;
    pn_graph *g = NULL;
    bool ok = pn_program_load(&p, a->m->path, text, len) && !d.nerrors && pn_check(&p, network, &g);
    if (ok && g->nstages == S) {
        g->profile = profile;
        g->train_chunk = a->train_chunk;
        for (int i = 0; i < pn_npasses; i++) pn_passes[i].run(g); /* the memory plan's chunk */
        *balance = pn_report_stats(g, st, S);
        *batch = pn_report_batch(g);
        *chunk = pn_report_chunk(g);
    } else {
        fprintf(stderr, "pnetc: error: internal error: the partitioned file does not check (please report this):\n");
        pn_diags_flush(&d);
        ok = false;
    }
    if (g) pn_graph_free(g);
    pn_program_free(&p);
    pn_diags_free(&d);
    return ok;
}

bool pn_auto_partition(pn_program *prog, pn_graph *g, int S, FILE *out, char *err, size_t errlen) {
    int train_chunk = g->train_chunk;
    pn_module *m = prog->modules.items[0];
    pn_network_def *nd = NULL;
    for (int i = 0; i < m->networks.len; i++)
        if (strcmp(((pn_network_def *)m->networks.items[i])->name, g->name) == 0) nd = m->networks.items[i];
    PN_ASSERT(nd);
    const pn_source *src = pn_source_get(prog->diags, m->file);
    ap a = {.prog = prog, .m = m, .text = src->text, .len = (uint32_t)src->len, .err = err, .errlen = errlen,
            .train_chunk = train_chunk};
    bool ok = false;
    double *pre = NULL, *best = NULL, *head = NULL, *tail = NULL;
    int *cut = NULL, *start = NULL, *unit_of = NULL, *stage_was = NULL;
    pn_stage_stats *st = NULL;
    buf text = {0};
    collect(&a, &nd->body);
    strip_all(&a, &nd->body);
    /* The old @pipeline goes: the micro-batch count is chosen again, for the new stages. */
    for (int i = 0; i < nd->body.len; i++) {
        pn_stmt *st = nd->body.items[i];
        if (st->kind == PN_ST_DIRECTIVE && strcmp(st->name, "pipeline") == 0)
            delete_text(&a, st->full.off, st->full.off + st->full.len);
    }
    visit_stmts(&a, m, &nd->body);
    if (a.failed) goto out;
    if (a.n < S) {
        snprintf(err, errlen, "network '%s' has %d layer statement%s, fewer than %d stages", g->name, a.n,
                 a.n == 1 ? "" : "s", S);
        goto out;
    }
    /* A statement's cost: the nodes it made (named after it, or qualified by it), all in one stage.
     * Inputs and constants belong to no statement and stay in stage 0, as in the report: c0. The
     * graph's stages are set to price the cuts, and restored below. */
    unit_of = pn_xmalloc(sizeof(int) * (size_t)(g->nnodes ? g->nnodes : 1));
    stage_was = pn_xmalloc(sizeof(int) * (size_t)(g->nnodes ? g->nnodes : 1));
    for (int i = 0; i < g->nnodes; i++) {
        stage_was[i] = g->nodes[i].stage;
        g->nodes[i].stage = 0;
        unit_of[i] = -1;
    }
    double c0 = 0;
    for (int i = 0; i < g->nnodes; i++) {
        const pn_node *n = &g->nodes[i];
        if (n->flags & PN_NODE_TRAIN) continue;
        for (int k = 0; k < a.n && unit_of[i] < 0; k++) {
            size_t len = strlen(a.u[k].name);
            if (strncmp(n->name, a.u[k].name, len) == 0 && (n->name[len] == 0 || n->name[len] == '.')) {
                a.u[k].cost += pn_node_cost(g, n);
                unit_of[i] = k;
            }
        }
        if (unit_of[i] < 0 && n->ninputs == 0) c0 += pn_node_cost(g, n);
    }
    /* What a cut before unit j adds to the stages on either side: a chain that one kernel would run
     * (an epilogue, a folded batchnorm, a max-pool inside its conv) runs as two when the cut
     * splits it, which the units beside the cut pay (tail[j]: unit j - 1, head[j]: unit j); and
     * the values that cross the cut are read from the core that wrote them (head[j]). */
    head = pn_xcalloc((size_t)a.n + 1, sizeof *head);
    tail = pn_xcalloc((size_t)a.n + 1, sizeof *tail);
    double xfer = pn_report_xfer(g);
    for (int j = 1; j < a.n; j++) {
        for (int i = 0; i < g->nnodes; i++) g->nodes[i].stage = unit_of[i] >= j ? 1 : 0;
        double before = 0, after = 0;
        for (int i = 0; i < g->nnodes; i++) {
            if (unit_of[i] == j - 1) before += pn_node_cost(g, &g->nodes[i]);
            if (unit_of[i] == j) after += pn_node_cost(g, &g->nodes[i]);
            if (unit_of[i] < 0 || unit_of[i] >= j) continue;
            bool crosses = false; /* a value of a unit before the cut that one after it reads */
            for (int k = i + 1; k < g->nnodes && !crosses; k++)
                for (int e = 0; e < g->nodes[k].ninputs && !crosses; e++)
                    crosses = g->nodes[k].in[e] == i && unit_of[k] >= j && !(g->nodes[k].flags & PN_NODE_TRAIN);
            if (crosses) after += 4.0 * (double)pn_shape_sample_elems(&g->nodes[i].shape) * xfer;
        }
        tail[j] = before - a.u[j - 1].cost;
        head[j] = after - a.u[j].cost;
    }
    for (int i = 0; i < g->nnodes; i++) g->nodes[i].stage = stage_was[i];
    /* best[s][i]: the least possible slowest stage for units [0, i) in s stages. */
    int n = a.n;
    pre = pn_xcalloc((size_t)n + 1, sizeof *pre);
    for (int i = 0; i < n; i++) pre[i + 1] = pre[i] + a.u[i].cost;
    best = pn_xmalloc(sizeof(double) * (size_t)(S + 1) * (size_t)(n + 1));
    cut = pn_xmalloc(sizeof(int) * (size_t)(S + 1) * (size_t)(n + 1));
#define B(s, i) best[(size_t)(s) * (size_t)(n + 1) + (size_t)(i)]
#define C(s, i) cut[(size_t)(s) * (size_t)(n + 1) + (size_t)(i)]
    for (int s = 0; s <= S; s++)
        for (int i = 0; i <= n; i++) B(s, i) = DBL_MAX;
    B(0, 0) = 0;
    for (int s = 1; s <= S; s++)
        for (int i = s; i <= n; i++)
            for (int j = s - 1; j < i; j++) {
                if (B(s - 1, j) == DBL_MAX) continue;
                double cost = pre[i] - pre[j] + (j == 0 ? c0 : head[j]) + (i < n ? tail[i] : 0);
                double v = B(s - 1, j) > cost ? B(s - 1, j) : cost;
                if (v < B(s, i)) {
                    B(s, i) = v;
                    C(s, i) = j;
                }
            }
    start = pn_xcalloc((size_t)S + 1, sizeof *start);
    start[S] = n;
    for (int s = S, i = n; s > 0; s--) {
        start[s - 1] = C(s, i);
        i = start[s - 1];
    }
#undef B
#undef C
    /* Network-level directives, inputs, outputs and train { } must stay outside the groups. */
    for (int s = 0; s < S; s++) {
        uint32_t lo = a.u[start[s]].st->full.off, hi = a.u[start[s + 1] - 1].st->full.off + a.u[start[s + 1] - 1].st->full.len;
        for (int k = 0; k < a.others.len; k++) {
            pn_stmt *o = a.others.items[k];
            if (o->full.off > lo && o->full.off < hi && o->kind != PN_ST_OUTPUT) {
                int line, col;
                pn_loc_linecol(prog->diags, o->full, &line, &col);
                snprintf(err, errlen, "stage %d would enclose the statement at line %d; move it after the layers", s, line);
                goto out;
            }
        }
    }
    text = rewrite(&a, nd, start, S, NULL);
    /* The micro-batches: the count that the same costs find fastest for these stages, trading the
     * bubble against what each micro-batch pays whatever its size (report.h). */
    st = pn_xcalloc((size_t)S, sizeof *st);
    double balance;
    long long batch = 0, chunk = 0;
    int M = 1;
    if (!recheck(&a, g->name, g->profile, text.s, text.len, S, st, &balance, &batch, &chunk)) {
        snprintf(err, errlen, "--auto-partition could not produce a valid file");
        goto out;
    }
    if (S > 1) {
        M = pn_best_microbatches_on(st, S, batch, chunk, pn_report_cores(g, S));
        char lead[96];
        snprintf(lead, sizeof lead, "@pipeline(microbatches = %d%s);", M, g->schedule == PN_SCHED_1F1B ? ", schedule = 1f1b" : "");
        free(text.s);
        text = rewrite(&a, nd, start, S, lead);
        if (!recheck(&a, g->name, g->profile, text.s, text.len, S, st, &balance, &batch, &chunk)) {
            snprintf(err, errlen, "--auto-partition could not produce a valid file");
            goto out;
        }
    }
    fwrite(text.s, 1, text.len, out);
    for (int i = 0; i < a.stripped.len; i++) {
        pn_block_def *b = a.stripped.items[i];
        int line, col;
        pn_loc_linecol(prog->diags, b->name_loc, &line, &col);
        fprintf(stderr, "%s:%d:%d: note: removed the @partition directives of block '%s': --auto-partition replaces all partitioning\n",
                src->path, line, col, b->name);
    }
    double worst = 0, mean = 0;
    for (int s = 0; s < S; s++) {
        double c = st[s].cost + st[s].call / (double)chunk;
        mean += c / S;
        if (c > worst) worst = c;
    }
    double bubble = 0;
    pn_pipeline_time_on(st, S, batch, chunk, M, pn_report_cores(g, S), &bubble);
    fprintf(stderr, "pnetc: note: %d stage%s, %s slowest stage %.3g us per sample, mean %.3g us, balance %.2f", S,
            S == 1 ? "" : "s", g->profile ? "measured" : "modelled", worst * 1e6, mean * 1e6, balance);
    if (S > 1)
        fprintf(stderr, "; %d micro-batches per chunk of %lld samples, predicted bubble %.1f%% for a batch of %lld", M, chunk,
                100 * bubble, batch);
    fprintf(stderr, "\n");
    ok = true;
out:
    free(text.s);
    free(st);
    free(start);
    free(best);
    free(cut);
    free(pre);
    free(head);
    free(tail);
    free(unit_of);
    free(stage_was);
    free(a.u);
    free(a.del.e);
    free(a.dd);
    return ok;
}
