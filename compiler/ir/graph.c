/* Graph IR construction and per-node facts (parameters, FLOPs). The op table is in ops.c. */
#include "graph.h"
#include "../support/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *pn_dtype_name(pn_dtype t) { return t == PN_I32 ? "i32" : "f32"; }

int64_t pn_shape_sample_elems(const pn_shape *s) {
    int64_t n = 1;
    for (int i = pn_shape_batched(s) ? 1 : 0; i < s->rank; i++)
        if (__builtin_mul_overflow(n, s->d[i], &n)) return -1;
    return n;
}

char *pn_shape_str(pn_dtype t, const pn_shape *s, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "%s[", pn_dtype_name(t));
    for (int i = 0; i < s->rank && k < n; i++) {
        if (s->d[i] == PN_BATCH) k += (size_t)snprintf(buf + k, n - k, "%sbatch", i ? "," : "");
        else k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)s->d[i]);
    }
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

pn_graph *pn_graph_new(const char *name) {
    pn_graph *g = pn_xmalloc(sizeof *g);
    memset(g, 0, sizeof *g);
    pn_arena_init(&g->arena);
    g->name = pn_arena_strdup(&g->arena, name);
    g->nstages = 1;
    g->replicas = 1;
    g->microbatches = 1;
    return g;
}

void pn_graph_free(pn_graph *g) {
    if (!g) return;
    free(g->nodes);
    free(g->outputs);
    pn_arena_free(&g->arena);
    free(g);
}

int pn_graph_add(pn_graph *g, const pn_node *n, const int32_t *inputs, int ninputs) {
    if (g->nnodes == g->capnodes) {
        g->capnodes = g->capnodes ? g->capnodes * 2 : 64;
        g->nodes = pn_xrealloc(g->nodes, sizeof(pn_node) * (size_t)g->capnodes);
    }
    int id = g->nnodes++;
    pn_node *d = &g->nodes[id];
    *d = *n;
    d->ninputs = ninputs;
    d->in = pn_arena_alloc(&g->arena, sizeof(int32_t) * (size_t)(ninputs ? ninputs : 1));
    for (int i = 0; i < ninputs; i++) {
        PN_ASSERT(inputs[i] >= 0 && inputs[i] < id);
        d->in[i] = inputs[i];
    }
    if (d->shard < 1) d->shard = 1;
    return id;
}

void pn_graph_add_output(pn_graph *g, const char *name, int node, pn_loc loc) {
    if (g->noutputs == g->capoutputs) {
        g->capoutputs = g->capoutputs ? g->capoutputs * 2 : 4;
        g->outputs = pn_xrealloc(g->outputs, sizeof(pn_output) * (size_t)g->capoutputs);
    }
    g->outputs[g->noutputs++] = (pn_output){pn_arena_strdup(&g->arena, name), node, loc, NULL};
    g->nodes[node].flags |= PN_NODE_OUTPUT;
}

int64_t pn_node_param_count(const pn_node *n) {
    int64_t total = 0;
    for (int i = 0; i < n->nparams; i++) {
        int64_t e = 1;
        for (int k = 0; k < n->params[i].shape.rank; k++) e *= n->params[i].shape.d[k];
        total += e;
    }
    return total;
}

int64_t pn_node_flops(const pn_graph *g, const pn_node *n) {
    int64_t out = pn_shape_sample_elems(&n->shape);
    return out < 0 ? -1 : pn_ops[n->op].flops(g, n, out);
}

/* Phase planes larger than this per sample stay with the separate pool kernel (pass_fuse_pool):
 * they would not fit a per-thread cache. */
enum { POOL_GRID_MAX_FLOATS = 64 * 1024 };
/* The kernel accumulates every position of a window at once, in at most 8 vectors per row. */
enum { POOL_MAX_WINDOW = 8 };

void pn_pool_grid_of(const pn_graph *g, int conv, int pool, pn_pool_grid *out) {
    const pn_node *cv = &g->nodes[conv], *pl = &g->nodes[pool];
    int64_t C = g->nodes[cv->in[0]].shape.d[1];
    int64_t sph = pl->ia[PN_POOL_SH], spw = pl->ia[PN_POOL_SW];
    int64_t sh = cv->ia[PN_CONV_SH], sw = cv->ia[PN_CONV_SW];
    out->fh = sph * sh;
    out->fw = spw * sw;
    /* Window position (dy, dx) of pooled output (ph, pw) reads padded input row fh*ph + dy*sh + kh:
     * plane (dy*sh + kh) % fh, row ph + (dy*sh + kh) / fh. */
    out->rows = pl->shape.d[2] + ((sph - 1) * sh + cv->ia[PN_CONV_KH] - 1) / out->fh;
    out->cols = pl->shape.d[3] + ((spw - 1) * sw + cv->ia[PN_CONV_KW] - 1) / out->fw;
    out->lanes = (pl->shape.d[2] - 1) * out->cols + pl->shape.d[3];
    out->floats = C * out->fh * out->fw * out->rows * out->cols;
}

bool pn_conv_gathers(const pn_node *n, int mr) {
    const int64_t *a = n->ia;
    int64_t groups = a[PN_CONV_GROUPS] > 1 ? a[PN_CONV_GROUPS] : 1;
    if (groups == 1 && a[PN_CONV_SH] == 1 && a[PN_CONV_SW] == 1 && a[PN_CONV_PH] == 0 && a[PN_CONV_PW] == 0) return false;
    return !(groups > 1 && a[PN_CONV_OUT] / groups < mr);
}

bool pn_pool_tiles(const pn_graph *g, int conv, int pool) {
    const pn_node *cv = &g->nodes[conv], *pl = &g->nodes[pool];
    if (pl->op != PN_OP_MAXPOOL2D || cv->op != PN_OP_CONV2D || cv->ia[PN_CONV_GROUPS] != 1) return false;
    if (pl->ia[PN_POOL_KH] != pl->ia[PN_POOL_SH] || pl->ia[PN_POOL_KW] != pl->ia[PN_POOL_SW] || pl->ia[PN_POOL_PH] != 0 ||
        pl->ia[PN_POOL_PW] != 0 || pl->shape.d[2] < 1 || pl->shape.d[3] < 1 ||
        pl->ia[PN_POOL_SH] * pl->ia[PN_POOL_SW] > POOL_MAX_WINDOW)
        return false;
    pn_pool_grid pg;
    pn_pool_grid_of(g, conv, pool, &pg);
    return pg.floats <= POOL_GRID_MAX_FLOATS;
}

int pn_fused_head(const pn_graph *g, int i) {
    const pn_plan *p = &g->plan;
    if (!p->fused || !p->fuse_next) return i;
    while (p->fused[i]) {
        int prev = -1;
        for (int j = 0; j < g->nnodes && prev < 0; j++)
            if (p->fuse_next[j] == i) prev = j;
        if (prev < 0) break;
        i = prev;
    }
    return i;
}
