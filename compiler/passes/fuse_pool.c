/* pass_fuse_pool: a maxpool2d whose windows tile its input (kernel = stride, no padding), over a
 * conv2d and its elementwise chain, is computed by the conv's kernel: the conv produces the
 * outputs of each window position in registers and keeps their maximum, so the unpooled map is
 * never stored or read back. The kernel (codegen/conv.c) reads the input rearranged into phase
 * planes, one per (row, column) remainder modulo the combined stride, so that the conv outputs
 * under one window position across neighbouring windows read consecutive floats. */
#include "passes.h"

/* Phase planes larger than this per sample stay with the separate pool kernel: they would not fit
 * a per-thread cache. */
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

void pass_fuse_pool(pn_graph *g) {
    pn_plan *p = &g->plan;
    int n = g->nnodes;
    int *uses = pn_arena_alloc(&g->arena, sizeof(int) * (size_t)(n ? n : 1));
    p->pool_grid = pn_arena_alloc(&g->arena, sizeof(pn_pool_grid) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++)
        for (int k = 0; p->live[i] && k < g->nodes[i].ninputs; k++) uses[g->nodes[i].in[k]]++;
    for (int i = 0; i < n; i++) {
        const pn_node *pl = &g->nodes[i];
        if (!p->live[i] || pl->op != PN_OP_MAXPOOL2D || p->fused[i]) continue;
        if (pl->ia[PN_POOL_KH] != pl->ia[PN_POOL_SH] || pl->ia[PN_POOL_KW] != pl->ia[PN_POOL_SW] ||
            pl->ia[PN_POOL_PH] != 0 || pl->ia[PN_POOL_PW] != 0 || pl->shape.d[2] < 1 || pl->shape.d[3] < 1 ||
            pl->ia[PN_POOL_SH] * pl->ia[PN_POOL_SW] > POOL_MAX_WINDOW)
            continue;
        int t = pl->in[0], h = pn_fused_head(g, t);
        const pn_node *tn = &g->nodes[t], *cv = &g->nodes[h];
        if (cv->op != PN_OP_CONV2D || cv->ia[PN_CONV_GROUPS] != 1 || !p->live[h]) continue;
        if (uses[t] != 1 || (tn->flags & PN_NODE_OUTPUT) || cv->stage != pl->stage || cv->shard > 1 || pl->shard > 1 ||
            p->fuse_next[t] >= 0 || pl->dtype != PN_F32)
            continue;
        pn_pool_grid pg;
        pn_pool_grid_of(g, h, i, &pg);
        if (pg.floats > POOL_GRID_MAX_FLOATS) continue;
        p->fuse_next[t] = i;
        p->fused[i] = true;
        p->pool_grid[h] = pg;
    }
}
