/* pass_plan_memory: fixes the execution order (stage by stage, node order within a stage, so each
 * pipeline stage's kernels run contiguously) and decides where every live value is stored. Inputs and outputs use the
 * caller's buffers, views alias their source, and everything else gets a place in one arena,
 * reused by liveness (first fit). Batched values are planned in bytes per sample; the arena holds
 * `chunk` samples of them, then a fixed region for the batch-independent ones. */
#include "passes.h"
#include "../support/util.h"

#include <stdlib.h>

typedef struct alloc {
    int64_t off, size;
    int last_use;
} alloc;

typedef struct pool {
    alloc *live;
    int n, cap;
    int64_t high;
} pool;

static int by_offset(const void *a, const void *b) {
    int64_t x = ((const alloc *)a)->off, y = ((const alloc *)b)->off;
    return (x > y) - (x < y);
}

static int64_t place(pool *p, int64_t size, int def, int last_use) {
    /* Free what died before this definition. */
    int k = 0;
    for (int i = 0; i < p->n; i++)
        if (p->live[i].last_use >= def) p->live[k++] = p->live[i];
    p->n = k;
    /* First fit over the gaps between live allocations, in offset order. */
    if (p->n > 1) qsort(p->live, (size_t)p->n, sizeof(alloc), by_offset);
    int64_t best = 0;
    for (int i = 0; i < p->n; i++) {
        if (p->live[i].off - best >= size) break;
        if (p->live[i].off + p->live[i].size > best) best = p->live[i].off + p->live[i].size;
    }
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 16;
        p->live = realloc(p->live, sizeof(alloc) * (size_t)p->cap);
    }
    p->live[p->n++] = (alloc){best, size, last_use};
    if (best + size > p->high) p->high = best + size;
    return best;
}

/* The node whose storage n's value is in, following fused chains to their tail. */
static int tail_of(const pn_plan *p, int n) {
    while (p->fuse_next[n] >= 0) n = p->fuse_next[n];
    return n;
}

/* Views share their input's storage; so does dropout, the identity at inference. */
static bool is_view(pn_op op) { return (pn_ops[op].flags & PN_OPF_VIEW) || op == PN_OP_DROPOUT; }

void pass_plan_memory(pn_graph *g) {
    pn_plan *p = &g->plan;
    int n = g->nnodes;
    int *first_output = pn_xcalloc((size_t)(n ? n : 1), sizeof(int));
    int *last_use = pn_xcalloc((size_t)(n ? n : 1), sizeof(int));
    for (int i = 0; i < n; i++) first_output[i] = -1;
    for (int i = g->noutputs - 1; i >= 0; i--) first_output[g->outputs[i].node] = i;
    int nin = 0;
    for (int i = 0; i < n; i++) {
        pn_mem *m = &p->mem[i];
        const pn_node *nd = &g->nodes[i];
        *m = (pn_mem){PN_MEM_NONE, -1, false, 0, 0};
        if (!p->live[i] || p->fused[i]) continue;
        if (nd->op == PN_OP_INPUT) *m = (pn_mem){PN_MEM_INPUT, nin++, pn_shape_batched(&nd->shape), 0, 0};
        else if (nd->op == PN_OP_CONST) *m = (pn_mem){PN_MEM_CONST, -1, false, 0, 0};
    }
    /* Storage of computed values: the tail of a fused chain holds the chain's result. */
    for (int i = 0; i < n; i++) {
        if (!p->live[i] || p->fused[i]) continue;
        const pn_node *nd = &g->nodes[i];
        if (nd->op == PN_OP_INPUT || nd->op == PN_OP_CONST) continue;
        int t = tail_of(p, i);
        pn_mem *m = &p->mem[t];
        m->batched = pn_shape_batched(&g->nodes[t].shape);
        if (first_output[t] >= 0) {
            m->kind = PN_MEM_OUTPUT;
            m->index = first_output[t];
        } else if (is_view(nd->op) && t == i) {
            int src = nd->in[0];
            while (p->mem[src].kind == PN_MEM_ALIAS) src = p->mem[src].index;
            m->kind = PN_MEM_ALIAS;
            m->index = src;
        } else {
            m->kind = PN_MEM_ARENA;
        }
        if (t != i) p->mem[i] = (pn_mem){PN_MEM_ALIAS, t, m->batched, 0, 0};
    }
    /* The execution order, and each node's position in it. Reads never go to a later stage, so
     * sorting by (stage, index) keeps producers before consumers. */
    p->order = pn_arena_alloc(&g->arena, sizeof(int) * (size_t)(n ? n : 1));
    int *pos = pn_xcalloc((size_t)(n ? n : 1), sizeof(int));
    int k = 0;
    for (int s = 0; s < g->nstages; s++)
        for (int i = 0; i < n; i++)
            if (g->nodes[i].stage == s) p->order[k++] = i;
    for (int i = 0; i < n; i++)
        if (g->nodes[i].stage >= g->nstages) p->order[k++] = i;
    for (int j = 0; j < n; j++) pos[p->order[j]] = j;
    /* Last use of each stored value, as a position (aliases extend their source's life). */
    for (int i = 0; i < n; i++) last_use[i] = pos[i];
    for (int i = 0; i < n; i++) {
        if (!p->live[i] || p->fused[i]) continue;
        int user = pos[i];
        for (int c = i; c >= 0; c = p->fuse_next[c])
            for (int k = 0; k < g->nodes[c].ninputs; k++) {
                int s = g->nodes[c].in[k];
                while (p->mem[s].kind == PN_MEM_ALIAS) s = p->mem[s].index;
                if (last_use[s] < user) last_use[s] = user;
            }
    }
    for (int j = n - 1; j >= 0; j--) {
        int i = p->order[j];
        if (p->mem[i].kind == PN_MEM_ALIAS && p->live[i] && !p->fused[i]) {
            int s = p->mem[i].index;
            if (last_use[s] < last_use[i]) last_use[s] = last_use[i];
        }
    }
    pool batched = {0}, fixed = {0};
    for (int j = 0; j < n; j++) {
        int i = p->order[j];
        if (!p->live[i] || p->fused[i]) continue;
        int t = tail_of(p, i);
        pn_mem *m = &p->mem[t];
        if (m->kind != PN_MEM_ARENA) continue;
        int64_t elems = pn_shape_sample_elems(&g->nodes[t].shape);
        int64_t bytes = (elems * 4 + 63) / 64 * 64;
        m->bytes = bytes;
        m->offset = place(m->batched ? &batched : &fixed, bytes, j, last_use[t] > j ? last_use[t] : j);
    }
    free(pos);
    p->arena_sample_bytes = batched.high;
    p->arena_fixed_bytes = fixed.high;
    /* Samples per pass: as many as keep the activations of one pass within a cache-sized budget
     * (so a conv net's layers hand over through the cache), between 16 and 256 (so dense layers
     * reuse each weight panel over many rows). */
    const int64_t budget = INT64_C(8) << 20;
    p->chunk = 256;
    if (batched.high > 0 && batched.high * p->chunk > budget) {
        p->chunk = budget / batched.high / 8 * 8;
        if (p->chunk < 16) p->chunk = 16;
    }
    free(batched.live);
    free(fixed.live);
    free(first_output);
    free(last_use);
}
