/* The training step of a network with a train block: the segment functions that run a chunk's
 * forward (training mode), loss and backward kernels, the syncs between segments (batchnorm's
 * batch statistics), the prep and update functions (optim.c), the evaluation forward, and the
 * loss kernels (at the end). What each op runs in each pass comes from its row of the codegen
 * table (dispatch.c). Kernels see the graph without fusion; desc.c describes the result to
 * libpnetrt (pnetrt_train_desc). */
#include "tk.h"
#include "../support/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { ST_INFER, ST_TRAIN, ST_BREAK } step_kind;

typedef struct tstep {
    step_kind kind;
    int node;
    LLVMValueRef fn;   /* the kernel; for ST_BREAK, the sync that follows the segment */
    bool backward;     /* part of the backward pass (else the forward pass or the loss) */
    bool after;        /* the part of a synced pass after its sync (cg_pass: writes no parameter gradient) */
} tstep;

typedef struct tlist {
    tstep *s;
    int n, cap;
} tlist;

static bool push(tlist *l, step_kind k, int node, LLVMValueRef fn) {
    if (!fn && k != ST_BREAK) return false;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 32;
        l->s = realloc(l->s, sizeof(tstep) * (size_t)l->cap);
    }
    l->s[l->n++] = (tstep){k, node, fn, false, false};
    return true;
}

/* A pass around a sync (cg_pass): the sync ends the segment. */
static void push_pass(tlist *l, int node, cg_pass p) {
    push(l, ST_TRAIN, node, p.kernel);
    if (p.sync) push(l, ST_BREAK, node, p.sync);
    if (push(l, ST_TRAIN, node, p.after)) l->s[l->n - 1].after = true;
}

/* The segment whose kernels write each parameter's gradients (pn_train_fns.grad_segment): a
 * node's backward kernels, except the part of a synced pass after its sync, write them. */
static int64_t *grad_segments(const pn_graph *g, const tlist *steps, int64_t *nparams) {
    int n = g->nnodes, np = 0;
    int64_t *node_seg = pn_xmalloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) {
        node_seg[i] = -1;
        np += g->nodes[i].nparams;
    }
    for (int k = 0, s = 0; k < steps->n; k++) {
        const tstep *st = &steps->s[k];
        if (st->kind == ST_BREAK) s++;
        else if (st->kind == ST_TRAIN && st->backward && !st->after && g->nodes[st->node].nparams)
            node_seg[st->node] = node_seg[st->node] == -1 || node_seg[st->node] == s ? s : -2;
    }
    int64_t *seg = pn_xmalloc(sizeof(int64_t) * (size_t)(np ? np : 1));
    np = 0;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < g->nodes[i].nparams; k++) seg[np++] = g->nodes[i].params[k].trainable ? node_seg[i] : -1;
    free(node_seg);
    *nparams = np;
    return seg;
}

static const pn_graph *sort_graph;

static int cmp_backward(const void *a, const void *b) {
    const pn_graph *g = sort_graph;
    int x = *(const int *)a, y = *(const int *)b;
    if (g->nodes[x].stage != g->nodes[y].stage) return g->nodes[y].stage - g->nodes[x].stage;
    return y - x;
}

/* What the segment function knows while it is built. */
typedef struct tenv {
    LLVMValueRef call, arena, cap, sl, s0, n, scratch, ith, nth, ctx, chunk;
    int *input_index;
} tenv;

static LLVMValueRef field(cg *c, LLVMValueRef call, int k, LLVMTypeRef t) {
    LLVMValueRef idx = I(c, k);
    return LLVMBuildLoad2(c->b, t, LLVMBuildInBoundsGEP2(c->b, c->i64, call, &idx, 1, ""), "");
}

static LLVMValueRef byte_gep(cg *c, LLVMValueRef p, LLVMValueRef off) {
    return LLVMBuildInBoundsGEP2(c->b, c->i8, p, &off, 1, "");
}

/* Pointer to node i's value (or gradient) at the chunk's first sample. */
static LLVMValueRef tptr(cg *c, tenv *e, int i, bool grad) {
    const pn_tplan *t = &c->g->tplan;
    int a = grad ? t->gbuf[i] : t->act[i];
    PN_ASSERT(a >= 0);
    const pn_node *nd = &c->g->nodes[a];
    LLVMValueRef bytes = LLVMBuildMul(c->b, I(c, pn_shape_sample_elems(&nd->shape) * 4), e->sl, "");
    if (!grad && nd->op == PN_OP_CONST) return cg_const_global(c, a);
    if (!grad && nd->op == PN_OP_INPUT) {
        LLVMValueRef ins = field(c, e->call, TC_INPUTS, c->ptr);
        LLVMValueRef idx = I(c, e->input_index[a]);
        LLVMValueRef base = LLVMBuildLoad2(c->b, c->ptr, LLVMBuildInBoundsGEP2(c->b, c->ptr, ins, &idx, 1, ""), "");
        if (!pn_shape_batched(&nd->shape)) return base; /* shared by every sample */
        return byte_gep(c, base, LLVMBuildMul(c->b, I(c, pn_shape_sample_elems(&nd->shape) * 4), e->s0, ""));
    }
    int64_t off = grad ? t->grad_off[a] : t->act_off[a];
    PN_ASSERT(off >= 0);
    return byte_gep(c, e->arena, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, I(c, off), e->cap, ""), bytes, ""));
}

static void set_ctx(cg *c, tenv *e, int k, LLVMValueRef v) {
    LLVMValueRef idx = I(c, k);
    LLVMBuildStore(c->b, v, LLVMBuildInBoundsGEP2(c->b, c->i64, e->ctx, &idx, 1, ""));
}

static LLVMValueRef fptr(cg *c, LLVMValueRef base, LLVMValueRef floats) { return cg_gep(c, base, floats); }

static void call_step(cg *c, tenv *e, const tstep *st) {
    const pn_graph *g = c->g;
    const pn_tplan *t = &g->tplan;
    const pn_node *nd = &g->nodes[st->node];
    int64_t poff = g->plan.param_offset[st->node] >= 0 ? g->plan.param_offset[st->node] : 0;
    LLVMValueRef params = fptr(c, field(c, e->call, TC_PARAMS, c->ptr), I(c, poff));
    if (st->kind == ST_INFER) {
        LLVMValueRef a[70];
        int na = 0;
        a[na++] = tptr(c, e, st->node, false);
        for (int k = 0; k < nd->ninputs; k++) a[na++] = tptr(c, e, nd->in[k], false);
        a[na++] = params;
        a[na++] = e->scratch;
        a[na++] = e->n;
        a[na++] = e->ith;
        a[na++] = e->nth;
        LLVMBuildCall2(c->b, LLVMGlobalGetValueType(st->fn), st->fn, a, (unsigned)na, "");
        return;
    }
    LLVMValueRef nullp = LLVMConstNull(c->ptr);
    bool has_act = t->act[st->node] >= 0 && (t->act_off[t->act[st->node]] >= 0 || nd->op == PN_OP_INPUT);
    set_ctx(c, e, TK_Y, has_act ? tptr(c, e, st->node, false) : nullp);
    set_ctx(c, e, TK_DY, t->gbuf[st->node] >= 0 ? tptr(c, e, st->node, true) : nullp);
    for (int k = 0; k < nd->ninputs && k < TK_MAX_INPUTS; k++) {
        set_ctx(c, e, TK_X + k, tptr(c, e, nd->in[k], false));
        set_ctx(c, e, TK_DX + k, t->gbuf[nd->in[k]] >= 0 && cg_grad_edge(g, st->node, k) ? tptr(c, e, nd->in[k], true) : nullp);
    }
    set_ctx(c, e, TK_PARAMS, params);
    LLVMValueRef slot = LLVMBuildMul(c->b, e->chunk, I(c, g->plan.param_floats), "");
    set_ctx(c, e, TK_GPARAMS, fptr(c, field(c, e->call, TC_SLOTS, c->ptr), LLVMBuildAdd(c->b, slot, I(c, poff), "")));
    set_ctx(c, e, TK_STATS, fptr(c, field(c, e->call, TC_STATS, c->ptr), LLVMBuildMul(c->b, e->chunk, I(c, t->stat_floats), "")));
    set_ctx(c, e, TK_GLOBAL, field(c, e->call, TC_GLOBAL, c->ptr));
    set_ctx(c, e, TK_SCRATCH, e->scratch);
    set_ctx(c, e, TK_S0, e->s0);
    set_ctx(c, e, TK_NTOTAL, field(c, e->call, TC_BATCH, c->i64));
    set_ctx(c, e, TK_SEED, field(c, e->call, TC_SEED, c->i64));
    set_ctx(c, e, TK_STEP, field(c, e->call, TC_STEP, c->i64));
    set_ctx(c, e, TK_GADD, field(c, e->call, TC_GRAD_ADD, c->i64));
    LLVMValueRef a[4] = {e->ctx, e->n, e->ith, e->nth};
    LLVMBuildCall2(c->b, LLVMGlobalGetValueType(st->fn), st->fn, a, 4, "");
}

/* void px__seg<k>(call, chunk, arena, cap, base, scratch, ith, nth): steps [from, to) on one chunk;
 * the arena holds `cap` samples starting at sample `base`. */
/* A call of pnetrt_step_mark(call, layer, part, ith): the training profile's time of the step just
 * run (runtime/core/profile.c); part: 1 for a backward step, + 2 for a segment's last. */
static void mark_step(cg *c, const tenv *e, int layer, int part) {
    LLVMTypeRef args[4] = {c->ptr, c->i64, c->i64, c->i64};
    LLVMTypeRef ft = LLVMFunctionType(c->vd, args, 4, 0);
    LLVMValueRef f = LLVMGetNamedFunction(c->mod, "pnetrt_step_mark");
    if (!f) f = LLVMAddFunction(c->mod, "pnetrt_step_mark", ft);
    LLVMValueRef v[4] = {e->call, I(c, layer), I(c, part), e->ith};
    LLVMBuildCall2(c->b, ft, f, v, 4, "");
}

/* A segment: steps [from, to) with a barrier between two. With layer_of (a training step's, not
 * an evaluation's), each step is followed (after the barrier, so that the team's slowest thread
 * counts; after the last, the mark waits for the team itself while a profile runs) by a mark of
 * its descriptor layer (layer_of[node]; -2 for a node of the train block), which times it while a
 * profile runs. */
static LLVMValueRef emit_seg(cg *c, const tstep *steps, int from, int to, const char *name, int *input_index,
                             const int *layer_of) {
    LLVMTypeRef args[8] = {c->ptr, c->i64, c->ptr, c->i64, c->i64, c->ptr, c->i64, c->i64};
    LLVMValueRef fn = LLVMAddFunction(c->mod, name, LLVMFunctionType(c->vd, args, 8, 0));
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    c->fn = fn;
    LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, fn, "entry"));
    tenv e = {0};
    e.input_index = input_index;
    e.call = LLVMGetParam(fn, 0);
    e.chunk = LLVMGetParam(fn, 1);
    e.arena = LLVMGetParam(fn, 2);
    e.cap = LLVMGetParam(fn, 3);
    e.scratch = LLVMGetParam(fn, 5);
    e.ith = LLVMGetParam(fn, 6);
    e.nth = LLVMGetParam(fn, 7);
    e.ctx = LLVMBuildArrayAlloca(c->b, c->i64, I(c, TK_COUNT), "ctx");
    e.s0 = LLVMBuildMul(c->b, e.chunk, I(c, c->g->tplan.chunk), "s0");
    e.n = cg_smin(c, I(c, c->g->tplan.chunk), LLVMBuildSub(c->b, field(c, e.call, TC_BATCH, c->i64), e.s0, ""));
    e.sl = LLVMBuildSub(c->b, e.s0, LLVMGetParam(fn, 4), "sl");
    LLVMValueRef barrier = LLVMGetNamedFunction(c->mod, "pnetrt_barrier");
    if (!barrier) barrier = LLVMAddFunction(c->mod, "pnetrt_barrier", LLVMFunctionType(c->vd, NULL, 0, 0));
    if (layer_of) mark_step(c, &e, -1, 0);
    for (int k = from; k < to; k++) {
        if (k > from) {
            LLVMBuildCall2(c->b, LLVMFunctionType(c->vd, NULL, 0, 0), barrier, NULL, 0, "");
            if (layer_of) mark_step(c, &e, layer_of[steps[k - 1].node], steps[k - 1].backward);
        }
        call_step(c, &e, &steps[k]);
    }
    if (layer_of && to > from) mark_step(c, &e, layer_of[steps[to - 1].node], 2 + steps[to - 1].backward);
    LLVMBuildRetVoid(c->b);
    return fn;
}

static LLVMValueRef fn_array(cg *c, LLVMValueRef *fs, int n, const char *suffix) {
    char *name = pn_xasprintf("%s__%s", c->px, suffix);
    LLVMValueRef init = LLVMConstArray2(c->ptr, fs, (uint64_t)n);
    LLVMValueRef gv = LLVMAddGlobal(c->mod, LLVMTypeOf(init), name);
    free(name);
    LLVMSetInitializer(gv, init);
    LLVMSetGlobalConstant(gv, 1);
    LLVMSetLinkage(gv, LLVMPrivateLinkage);
    return gv;
}

static bool is_view(pn_op op) { return pn_ops[op].flags & PN_OPF_VIEW; }

bool cg_gen_training(cg *c, LLVMValueRef *out, pn_train_fns *fns) {
    const pn_graph *orig = c->g;
    *out = NULL;
    if (!orig->tplan.present) return true;
    /* The graph as the training kernels see it: nothing fused or folded. */
    pn_graph tg = *orig;
    int n = orig->nnodes;
    tg.plan.fuse_next = pn_xmalloc(sizeof(int) * (size_t)(n ? n : 1));
    tg.plan.fused = pn_xcalloc((size_t)(n ? n : 1), sizeof(bool));
    for (int i = 0; i < n; i++) tg.plan.fuse_next[i] = -1;
    /* ... but a relu that its convolution applies as it stores (plan_train.c). */
    for (int i = 0; i < n; i++)
        if (orig->tplan.fused[i]) {
            tg.plan.fuse_next[orig->nodes[i].in[0]] = i;
            tg.plan.fused[i] = true;
        }
    c->g = &tg;
    const pn_tplan *t = &tg.tplan;
    int *input_index = pn_xcalloc((size_t)(n ? n : 1), sizeof(int));
    int nin = 0;
    for (int i = 0; i < n; i++)
        if (tg.nodes[i].op == PN_OP_INPUT && !(tg.nodes[i].flags & PN_NODE_TRAIN)) input_index[i] = nin++;
    for (int i = 0; i < n; i++)
        if (tg.nodes[i].op == PN_OP_INPUT && (tg.nodes[i].flags & PN_NODE_TRAIN)) input_index[i] = nin++;
    bool ok = true;
    for (int i = 0; i < n && ok; i++) {
        const pn_node *nd = &tg.nodes[i];
        if (!t->live[i] || nd->op == PN_OP_INPUT || nd->op == PN_OP_CONST) continue;
        if (i != t->loss && !pn_shape_batched(&nd->shape)) {
            cg_fail(c, i, "training: '%s' has no batch axis; every value a loss needs must have one", nd->name);
            ok = false;
        }
        if (nd->ninputs > TK_MAX_INPUTS) {
            cg_fail(c, i, "training: '%s' has more than %d inputs", nd->name, TK_MAX_INPUTS);
            ok = false;
        }
    }
    /* Each node's layer in the descriptor (its nodes outside train { }, in order), or -2. */
    int *layer_of = pn_xmalloc(sizeof(int) * (size_t)(n ? n : 1));
    for (int i = 0, nl = 0; i < n; i++) layer_of[i] = orig->nodes[i].flags & PN_NODE_TRAIN ? -2 : nl++;
    tlist steps = {0}, eval = {0};
    bool *written = pn_xcalloc((size_t)(n ? n : 1), sizeof(bool));
    LLVMValueRef *fwd_kern = pn_xcalloc((size_t)(n ? n : 1), sizeof *fwd_kern);
    /* Forward, training mode: the op's synced pass, else its train column, else its inference
     * kernel. */
    for (int i = 0; i < n && ok; i++) {
        const pn_node *nd = &tg.nodes[i];
        if (!t->live[i] || i == t->loss || nd->op == PN_OP_INPUT || nd->op == PN_OP_CONST || is_view(nd->op) || t->fused[i])
            continue;
        const cg_op_row *r = cg_op(nd->op);
        if (r->synced) push_pass(&steps, i, r->synced(c, i, false, NULL));
        else if (r->train) push(&steps, ST_TRAIN, i, fwd_kern[i] = r->train(c, i));
        else push(&steps, ST_INFER, i, fwd_kern[i] = cg_gen_kernel(c, i));
    }
    /* The loss and its gradient, then the backward pass in reverse order. */
    const pn_node *ln = &tg.nodes[t->loss];
    if (ok) {
        int pred = t->gbuf[ln->in[0]];
        bool acc = pred >= 0 && written[pred];
        if (pred >= 0) written[pred] = true;
        push(&steps, ST_TRAIN, t->loss, cg_gen_loss(c, t->loss, true, acc));
    }
    /* Backward: by stage, last stage first, and in reverse order within a stage (a reverse
     * topological order, since reads never go to a later stage). */
    int *border = pn_xmalloc(sizeof(int) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) border[i] = i;
    sort_graph = &tg;
    qsort(border, (size_t)n, sizeof(int), cmp_backward);
    int first_bwd = steps.n;
    for (int bi = 0; bi < n && ok; bi++) {
        int i = border[bi];
        const pn_node *nd = &tg.nodes[i];
        if (!t->grad[i] || i == t->loss || nd->op == PN_OP_INPUT || nd->op == PN_OP_CONST || is_view(nd->op) || t->pool_bwd[i])
            continue; /* (a relu whose max-pool's backward is its own: plan_train.c) */
        bool acc[TK_MAX_INPUTS] = {0};
        for (int k = 0; k < nd->ninputs && k < TK_MAX_INPUTS; k++) {
            if (!cg_grad_edge(&tg, i, k)) continue;
            int b = t->gbuf[nd->in[k]];
            acc[k] = written[b];
            written[b] = true;
        }
        const cg_op_row *r = cg_op(nd->op);
        if (r->synced) {
            push_pass(&steps, i, r->synced(c, i, true, acc));
            continue;
        }
        LLVMValueRef f = cg_gen_backward(c, i, acc);
        if (!f && c->error.msg[0]) ok = false; /* the kernel cannot be built (cg_fail said why) */
        push(&steps, ST_TRAIN, i, f);
    }
    free(border);
    for (int k = first_bwd; k < steps.n; k++) steps.s[k].backward = true;
    /* Evaluation: the inference-mode forward over the same layout, then the loss alone. */
    for (int i = 0; i < n && ok; i++) {
        const pn_node *nd = &tg.nodes[i];
        if (!t->live[i] || i == t->loss || nd->op == PN_OP_INPUT || nd->op == PN_OP_CONST || is_view(nd->op) || t->fused[i])
            continue;
        /* The op's eval column where the two modes differ, else the training forward's kernel. */
        const cg_op_row *r = cg_op(nd->op);
        if (r->eval) push(&eval, ST_INFER, i, r->eval(c, i));
        else {
            PN_ASSERT(fwd_kern[i]); /* an op with a synced pass has an eval column */
            push(&eval, r->train ? ST_TRAIN : ST_INFER, i, fwd_kern[i]);
        }
    }
    if (ok) push(&eval, ST_TRAIN, t->loss, cg_gen_loss(c, t->loss, false, false));
    if (ok) {
        fns->prep = cg_gen_prep(c);
        fns->update = cg_gen_update(c);
        /* Segments: split at every sync. */
        int nseg = 1;
        for (int k = 0; k < steps.n; k++) nseg += steps.s[k].kind == ST_BREAK;
        LLVMValueRef *segs = pn_xcalloc((size_t)nseg, sizeof *segs), *syncs = pn_xcalloc((size_t)nseg, sizeof *syncs);
        for (int k = 0; k < nseg; k++) syncs[k] = LLVMConstNull(c->ptr);
        int from = 0, s = 0;
        for (int k = 0; k <= steps.n; k++) {
            if (k < steps.n && steps.s[k].kind != ST_BREAK) continue;
            char *name = pn_xasprintf("%s__seg%d", c->px, s);
            segs[s] = emit_seg(c, steps.s, from, k, name, input_index, layer_of);
            free(name);
            if (k < steps.n) syncs[s] = steps.s[k].fn;
            s++;
            from = k + 1;
        }
        /* Pipeline training: each stage's forward and backward steps on one chunk (when no
         * batchnorm cuts the step into segments). */
        fns->nstages = nseg == 1 && tg.nstages > 1 ? tg.nstages : 0;
        if (fns->nstages) {
            LLVMValueRef *pf = pn_xcalloc((size_t)tg.nstages, sizeof *pf), *pb = pn_xcalloc((size_t)tg.nstages, sizeof *pb);
            tstep *sel = pn_xmalloc(sizeof(tstep) * (size_t)(steps.n ? steps.n : 1));
            for (int st = 0; st < tg.nstages; st++)
                for (int bw = 0; bw < 2; bw++) {
                    int ns = 0;
                    for (int k = 0; k < steps.n; k++)
                        if (steps.s[k].backward == (bw == 1) && tg.nodes[steps.s[k].node].stage == st) sel[ns++] = steps.s[k];
                    char *name = pn_xasprintf("%s__stage%d_%s", c->px, st, bw ? "backward" : "forward");
                    (bw ? pb : pf)[st] = emit_seg(c, sel, 0, ns, name, input_index, layer_of);
                    free(name);
                }
            fns->stage_fwd = fn_array(c, pf, tg.nstages, "stage_fwd");
            fns->stage_bwd = fn_array(c, pb, tg.nstages, "stage_bwd");
            /* Evaluation with one stage per rank: each stage's part of the evaluation forward (and
             * the loss, in its stage), over the same layout as the training forward's. */
            for (int st = 0; st < tg.nstages; st++) {
                int ns = 0;
                for (int k = 0; k < eval.n; k++)
                    if (tg.nodes[eval.s[k].node].stage == st) sel[ns++] = eval.s[k];
                char *name = pn_xasprintf("%s__stage%d_eval", c->px, st);
                pf[st] = emit_seg(c, sel, 0, ns, name, input_index, NULL);
                free(name);
            }
            fns->stage_eval = fn_array(c, pf, tg.nstages, "stage_eval");
            free(sel);
            free(pf);
            free(pb);
        } else {
            fns->stage_fwd = fns->stage_bwd = fns->stage_eval = LLVMConstNull(c->ptr);
        }
        char *name = pn_xasprintf("%s__evalseg", c->px);
        fns->eval = emit_seg(c, eval.s, 0, eval.n, name, input_index, NULL);
        free(name);
        fns->nseg = nseg;
        fns->grad_segment = grad_segments(&tg, &steps, &fns->nparams);
        fns->segs = fn_array(c, segs, nseg, "segs");
        fns->syncs = fn_array(c, syncs, nseg > 1 ? nseg - 1 : 1, "syncs");
        free(segs);
        free(syncs);
        *out = fns->segs;
    }
    free(steps.s);
    free(eval.s);
    free(written);
    free(fwd_kern);
    free(input_index);
    free(layer_of);
    free(tg.plan.fuse_next);
    free(tg.plan.fused);
    c->g = orig;
    return ok;
}

/* ---- losses --------------------------------------------------------------------------------------
 * stats[0] = the chunk's loss sum, stats[1] = its correct predictions (cross_entropy); the gradient
 * of the mean loss over the whole batch goes to the prediction. */
LLVMValueRef cg_gen_loss(cg *c, int node, bool backward, bool acc) {
    const pn_graph *g = c->g;
    const pn_node *nd = &g->nodes[node];
    const pn_shape *ps = &g->nodes[nd->in[0]].shape;
    cg_tk_begin(c, node, backward ? "loss" : "evalloss");
    LLVMValueRef p = ctxp(c, TK_X), t = ctxp(c, TK_X + 1), dp = backward ? ctxp(c, TK_DX) : NULL;
    LLVMValueRef st = ctxp(c, TK_STATS);
    LLVMValueRef ntot = LLVMBuildSIToFP(c->b, ctxi(c, TK_NTOTAL), c->f32, "");
    LLVMValueRef zero_th = LLVMBuildICmp(c->b, LLVMIntEQ, c->ith, I(c, 0), "");
    if (nd->op == PN_OP_CROSS_ENTROPY) {
        int64_t K = ps->d[1];
        for (int part = 0; part < 2; part++) {
            /* part 0: thread 0 sums the loss in row order; part 1: the gradient, split by rows. */
            if (part == 1 && !backward) break;
            cg_if f;
            LLVMValueRef lo = I(c, 0), hi = c->n;
            if (part == 0) cg_if_begin(c, &f, zero_th);
            else cg_split(c, c->n, &lo, &hi);
            cg_loop r;
            cg_loop_begin(c, &r, lo, hi, "r");
            LLVMValueRef lsum = part == 0 ? cg_loop_acc(c, &r, F(c, 0.0)) : NULL;
            LLVMValueRef good = part == 0 ? cg_loop_acc(c, &r, F(c, 0.0)) : NULL;
            LLVMValueRef row = cg_gep(c, p, imul(c, r.iv, I(c, K)));
            LLVMValueRef lab = LLVMBuildSExt(c->b, cg_load_i32(c, t, r.iv), c->i64, "");
            cg_loop k;
            cg_loop_begin(c, &k, I(c, 0), I(c, K), "k");
            LLVMValueRef mx = cg_loop_acc(c, &k, F(c, -INFINITY)), am = cg_loop_acc(c, &k, I(c, 0));
            LLVMValueRef v = cg_load(c, row, k.iv);
            LLVMValueRef gt = LLVMBuildFCmp(c->b, LLVMRealOGT, v, mx, "");
            cg_loop_next(&k, mx, fsel(c, gt, v, mx));
            cg_loop_next(&k, am, LLVMBuildSelect(c->b, gt, k.iv, am, ""));
            cg_loop_end(c, &k);
            cg_loop k2;
            cg_loop_begin(c, &k2, I(c, 0), I(c, K), "k2");
            LLVMValueRef se = cg_loop_acc(c, &k2, F(c, 0.0));
            cg_loop_next(&k2, se, cg_fadd(c, se, cg_exp(c, cg_fsub(c, cg_load(c, row, k2.iv), mx)), true));
            cg_loop_end(c, &k2);
            if (part == 0) {
                LLVMValueRef lse = cg_fadd(c, cg_log(c, se), mx, false);
                LLVMValueRef l = cg_fsub(c, lse, cg_load(c, row, lab));
                cg_loop_next(&r, lsum, cg_fadd(c, lsum, l, false));
                LLVMValueRef hit = LLVMBuildICmp(c->b, LLVMIntEQ, am, lab, "");
                cg_loop_next(&r, good, cg_fadd(c, good, fsel(c, hit, F(c, 1.0), F(c, 0.0)), false));
            } else {
                LLVMValueRef inv = cg_fdiv(c, F(c, 1.0), se);
                LLVMValueRef drow = cg_gep(c, dp, imul(c, r.iv, I(c, K)));
                cg_loop k3;
                cg_loop_begin(c, &k3, I(c, 0), I(c, K), "k3");
                LLVMValueRef sm = cg_fmul(c, cg_exp(c, cg_fsub(c, cg_load(c, row, k3.iv), mx)), inv, false);
                LLVMValueRef one = LLVMBuildICmp(c->b, LLVMIntEQ, k3.iv, lab, "");
                LLVMValueRef gv = cg_fdiv(c, cg_fsub(c, sm, fsel(c, one, F(c, 1.0), F(c, 0.0))), ntot);
                cg_put(c, gv, drow, k3.iv, acc);
                cg_loop_end(c, &k3);
            }
            cg_loop_end(c, &r);
            if (part == 0) {
                cg_store(c, lsum, st, I(c, 0));
                cg_store(c, good, st, I(c, 1));
                cg_if_end(c, &f);
            }
        }
        return cg_tk_end(c);
    }
    /* mse: mean over every element of (p - t)^2. */
    int64_t E = pn_shape_sample_elems(ps);
    LLVMValueRef all = LLVMBuildSIToFP(c->b, imul(c, ctxi(c, TK_NTOTAL), I(c, E)), c->f32, "");
    cg_if f;
    cg_if_begin(c, &f, zero_th);
    cg_loop e;
    cg_loop_begin(c, &e, I(c, 0), numel(c, ps), "e");
    LLVMValueRef s = cg_loop_acc(c, &e, F(c, 0.0));
    LLVMValueRef d = cg_fsub(c, cg_load(c, p, e.iv), cg_load(c, t, e.iv));
    cg_loop_next(&e, s, cg_fma(c, d, d, s));
    cg_loop_end(c, &e);
    cg_store(c, s, st, I(c, 0));
    cg_store(c, F(c, 0.0), st, I(c, 1));
    cg_if_end(c, &f);
    if (backward) {
        LLVMValueRef lo, hi;
        cg_split(c, numel(c, ps), &lo, &hi);
        cg_loop e2;
        cg_loop_begin(c, &e2, lo, hi, "e2");
        LLVMValueRef d2 = cg_fsub(c, cg_load(c, p, e2.iv), cg_load(c, t, e2.iv));
        cg_put(c, cg_fdiv(c, cg_fmul(c, d2, F(c, 2.0), false), all), dp, e2.iv, acc);
        cg_loop_end(c, &e2);
    }
    return cg_tk_end(c);
}
