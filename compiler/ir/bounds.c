/* Stage boundaries (bounds.h). A value crosses from stage a to stage b > a when a kernel of stage a
 * writes its storage and a kernel of stage b (or the output copies, which run with the last
 * stage) reads it; it is then received by every stage in (a, b], each from the one before, so
 * that a stage only ever talks to its neighbours. Views are followed to the storage they share. */
#include "bounds.h"
#include "../support/util.h"
#include "pnetrt_abi.h"

#include <stdlib.h>

/* The node whose storage node i's value is (a view's source, through chains of views). */
static int base_of(const pn_plan *p, int i) {
    for (int k = 0; p->mem[i].kind == PN_MEM_ALIAS && k < 1 << 20; k++) i = p->mem[i].index;
    return i;
}

/* Marks that stage `stage` reads node r's value. */
static void read_at(const pn_graph *g, int r, int stage, const int *prod, int *need) {
    int b = base_of(&g->plan, r);
    if (prod[b] >= 0 && prod[b] < stage && stage > need[b]) need[b] = stage;
}

void pn_stage_bounds(const pn_graph *g, pn_bounds *out) {
    const pn_plan *p = &g->plan;
    int nn = g->nnodes, S = g->nstages > 0 ? g->nstages : 1;
    *out = (pn_bounds){.nstages = S};
    int *prod = pn_xcalloc((size_t)nn + 1, sizeof *prod), *need = pn_xcalloc((size_t)nn + 1, sizeof *need);
    for (int i = 0; i < nn; i++) prod[i] = need[i] = -1;
    /* Writers: a kernel (a live node that is not an epilogue) writes its fused chain's tail. */
    for (int i = 0; i < nn; i++) {
        if (!p->live[i] || p->fused[i]) continue;
        int t = i;
        while (p->fuse_next[t] >= 0) t = p->fuse_next[t];
        /* Views (aliases of their source), inputs and constants write nothing. */
        if (p->mem[t].kind == PN_MEM_ARENA || p->mem[t].kind == PN_MEM_OUTPUT) prod[t] = g->nodes[i].stage;
    }
    /* Readers: every input of every node of a kernel's chain, and the output copies. */
    for (int i = 0; i < nn; i++) {
        if (!p->live[i] || p->fused[i]) continue;
        for (int t = i; t >= 0; t = p->fuse_next[t])
            for (int k = 0; k < g->nodes[t].ninputs; k++) read_at(g, g->nodes[t].in[k], g->nodes[i].stage, prod, need);
    }
    out->output_stage = pn_xcalloc((size_t)g->noutputs + 1, sizeof *out->output_stage);
    for (int k = 0; k < g->noutputs; k++) {
        int src = g->outputs[k].node;
        const pn_mem *m = &p->mem[src];
        if (m->kind == PN_MEM_OUTPUT && m->index == k && prod[src] >= 0) {
            out->output_stage[k] = prod[src];
        } else { /* a copy, run with the last stage */
            out->output_stage[k] = S - 1;
            read_at(g, src, S - 1, prod, need);
        }
    }
    out->recv_first = pn_xcalloc((size_t)S + 1, sizeof *out->recv_first);
    int64_t n = 0, cap = 0;
    for (int s = 0; s < S; s++) {
        out->recv_first[s] = n;
        for (int b = 0; b < nn; b++) {
            if (!(prod[b] >= 0 && prod[b] < s && s <= need[b])) continue;
            const pn_mem *m = &p->mem[b];
            int64_t kind, off, bytes;
            if (m->kind == PN_MEM_ARENA) {
                kind = m->batched ? PNETRT_XFER_ARENA : PNETRT_XFER_FIXED, off = m->offset, bytes = m->bytes;
            } else if (m->kind == PN_MEM_OUTPUT) {
                const pn_node *nd = &g->nodes[b];
                kind = pn_shape_batched(&nd->shape) ? PNETRT_XFER_OUTPUT : PNETRT_XFER_OUTPUT_FIXED;
                off = m->index, bytes = pn_shape_sample_elems(&nd->shape) * 4;
            } else {
                continue; /* inputs and constants: every stage has them */
            }
            if (n == cap) {
                cap = cap ? 2 * cap : 16;
                out->recv = pn_xrealloc(out->recv, (size_t)cap * 3 * sizeof *out->recv);
            }
            out->recv[3 * n] = kind, out->recv[3 * n + 1] = off, out->recv[3 * n + 2] = bytes;
            n++;
        }
    }
    out->recv_first[S] = n;
    for (int i = 0; i < nn; i++) out->nparams += g->nodes[i].nparams;
    out->param_stage = pn_xcalloc((size_t)out->nparams + 1, sizeof *out->param_stage);
    int64_t q = 0;
    for (int i = 0; i < nn; i++)
        for (int k = 0; k < g->nodes[i].nparams; k++) out->param_stage[q++] = g->nodes[i].stage;
    free(prod);
    free(need);
}

void pn_bounds_bytes(const pn_bounds *b, int s, int64_t *per_sample, int64_t *fixed) {
    *per_sample = *fixed = 0;
    if (s < 0 || s >= b->nstages) return;
    for (int64_t j = b->recv_first[s]; j < b->recv_first[s + 1]; j++) {
        int64_t kind = b->recv[3 * j], bytes = b->recv[3 * j + 2];
        if (kind == PNETRT_XFER_ARENA || kind == PNETRT_XFER_OUTPUT) *per_sample += bytes;
        else *fixed += bytes;
    }
}

void pn_bounds_free(pn_bounds *b) {
    free(b->recv_first);
    free(b->recv);
    free(b->output_stage);
    free(b->param_stage);
    *b = (pn_bounds){0};
}

/* Appends the pair (a, b) to *v (n pairs, cap of them). */
static void push_pair(int64_t **v, int64_t *n, int64_t *cap, int64_t a, int64_t b) {
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 16;
        *v = pn_xrealloc(*v, (size_t)*cap * 2 * sizeof **v);
    }
    (*v)[2 * *n] = a, (*v)[2 * *n + 1] = b;
    (*n)++;
}

void pn_train_bounds(const pn_graph *g, pn_tbounds *out) {
    const pn_tplan *t = &g->tplan;
    int nn = g->nnodes, S = g->nstages > 0 ? g->nstages : 1;
    *out = (pn_tbounds){.nstages = S};
    out->fwd_first = pn_xcalloc((size_t)S + 1, sizeof *out->fwd_first);
    out->bwd_first = pn_xcalloc((size_t)S + 1, sizeof *out->bwd_first);
    if (!t->present) return;
    int *need = pn_xcalloc((size_t)nn + 1, sizeof *need);
    for (int i = 0; i < nn; i++) need[i] = -1;
    /* A node's forward and backward read its inputs' values: a value stored by an earlier stage
     * crosses to the node's stage. */
    for (int i = 0; i < nn; i++) {
        if (!t->live[i] && i != t->loss) continue;
        int si = g->nodes[i].stage;
        for (int k = 0; k < g->nodes[i].ninputs; k++) {
            int a = t->act[g->nodes[i].in[k]];
            if (a < 0 || t->act_off[a] < 0 || g->nodes[a].op == PN_OP_INPUT || g->nodes[a].op == PN_OP_CONST) continue;
            if (g->nodes[a].stage < si && si > need[a]) need[a] = si;
        }
    }
    int64_t nf = 0, cf = 0, nb = 0, cb = 0;
    for (int s = 0; s < S; s++) {
        out->fwd_first[s] = nf;
        for (int a = 0; a < nn; a++)
            if (need[a] >= s && g->nodes[a].stage < s) push_pair(&out->fwd, &nf, &cf, t->act_off[a], pn_shape_sample_elems(&g->nodes[a].shape) * 4);
    }
    out->fwd_first[S] = nf;
    /* Stage s's backward needs the gradients of what it sent stage s + 1. */
    for (int s = 0; s < S; s++) {
        out->bwd_first[s] = nb;
        for (int a = 0; a < nn && s + 1 < S; a++) {
            if (!(need[a] >= s + 1 && g->nodes[a].stage < s + 1)) continue;
            int ga = t->gbuf[a];
            if (ga < 0 || t->grad_off[ga] < 0) continue;
            bool dup = false;
            for (int64_t j = out->bwd_first[s]; j < nb && !dup; j++) dup = out->bwd[2 * j] == t->grad_off[ga];
            if (!dup) push_pair(&out->bwd, &nb, &cb, t->grad_off[ga], pn_shape_sample_elems(&g->nodes[ga].shape) * 4);
        }
    }
    out->bwd_first[S] = nb;
    free(need);
}

void pn_tbounds_free(pn_tbounds *b) {
    free(b->fwd_first);
    free(b->fwd);
    free(b->bwd_first);
    free(b->bwd);
    *b = (pn_tbounds){0};
}
