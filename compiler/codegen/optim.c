/* The update of a training step: px__update(call, ith, nth). For every trained parameter tensor,
 * threads take a share of its elements; each element's gradient is the fixed tree over the
 * chunks' slots (train.h), or with folding the sum of the tree's remaining partial sums (the
 * call's sums, added from the right as pnetrt_tree_finish adds them, so the same bits without a
 * pass that writes the sum), then the optimizer (sgd with momentum, weight decay and Nesterov, or
 * adam with decoupled weight decay, as torch.optim.SGD and torch.optim.AdamW compute them). A
 * dense layer's W, updated a block of rows at a time, is also transposed into W^T (the layout
 * px__prep makes), and copied into its panels where dx reads them, while the rows are in cache, so
 * the next step need not prepare them. */
#include "train.h"

static LLVMValueRef I(cg *c, int64_t v) { return cg_i64(c, v); }
static LLVMValueRef F(cg *c, double v) { return cg_f32(c, v); }

/* Elements of a tensor other than a dense W that a thread updates at a time (a unit). */
#define UPD_UNIT 4096
/* Blocks of VW rows of a dense W per unit: each row of W^T then takes WT_BLOCKS vectors at a time
 * (adjacent within a panel of pn_wt_panel columns), and the unit's rows stay in L2 (64 rows of 784
 * floats: 200 KB) until transposed. */
#define WT_BLOCKS 4

typedef struct slot_tree {
    LLVMValueRef slots, lo, hi;
    int64_t stride, off;
} slot_tree;

static void add_slots(cg *c, LLVMValueRef i, LLVMValueRef j, LLVMValueRef s, void *arg) {
    slot_tree *t = arg;
    (void)s;
    LLVMValueRef a = cg_gep(c, t->slots, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, i, I(c, t->stride), ""), I(c, t->off), ""));
    LLVMValueRef b = cg_gep(c, t->slots, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, j, I(c, t->stride), ""), I(c, t->off), ""));
    cg_loop e;
    cg_loop_begin(c, &e, t->lo, t->hi, "e");
    cg_store(c, cg_fadd(c, cg_load(c, a, e.iv), cg_load(c, b, e.iv), false), a, e.iv);
    cg_loop_end(c, &e);
}

/* What every block of the update reads: the call's fields and the step's constants. */
typedef struct upd {
    const pn_train *tr;
    LLVMValueRef params, slots, opt, sums, nsums, nch, first, lr, step_size, bc2, decay, ostride;
    int64_t P;
} upd;

/* Partial sum j of the call's sums (a float pointer addressed by element index). */
static LLVMValueRef sum_ptr(cg *c, const upd *u, LLVMValueRef j) {
    return LLVMBuildLoad2(c->b, c->ptr, LLVMBuildInBoundsGEP2(c->b, c->ptr, u->sums, &j, 1, ""), "");
}

/* The optimizer over elements [0, len) from w, m and v, each gradient the right fold of the n
 * partial sums from g[0..n) (sums[0] + (sums[1] + ...)), or with n 0 the element of g[0]. */
static void update_loop(cg *c, const upd *u, LLVMValueRef at, LLVMValueRef len, const LLVMValueRef *g, int n) {
    const pn_train *tr = u->tr;
    LLVMValueRef w = cg_gep(c, u->params, at), m = cg_gep(c, u->opt, at);
    LLVMValueRef v = cg_gep(c, u->opt, LLVMBuildAdd(c->b, u->ostride, at, ""));
    cg_loop e;
    cg_loop_begin(c, &e, I(c, 0), len, "e");
    LLVMValueRef gv = cg_load(c, g[n ? n - 1 : 0], e.iv), wv = cg_load(c, w, e.iv);
    for (int j = n - 2; j >= 0; j--) gv = cg_fadd(c, cg_load(c, g[j], e.iv), gv, false);
    if (tr->opt == PN_OPT_SGD) {
        if (tr->weight_decay != 0) gv = cg_fma(c, wv, F(c, tr->weight_decay), gv);
        if (tr->momentum != 0) {
            LLVMValueRef buf = cg_fma(c, cg_load(c, m, e.iv), F(c, tr->momentum), gv);
            buf = cg_select(c, u->first, gv, buf);
            cg_store(c, buf, m, e.iv);
            gv = tr->nesterov ? cg_fma(c, buf, F(c, tr->momentum), gv) : buf;
        }
        wv = cg_fma(c, gv, LLVMBuildFNeg(c->b, u->lr, ""), wv);
    } else {
        if (tr->weight_decay != 0) wv = cg_fmul(c, wv, u->decay, false);
        LLVMValueRef mv = cg_fma(c, gv, F(c, 1.0 - tr->beta1), cg_fmul(c, cg_load(c, m, e.iv), F(c, tr->beta1), false));
        LLVMValueRef vv = cg_fma(c, cg_fmul(c, gv, gv, false), F(c, 1.0 - tr->beta2),
                                 cg_fmul(c, cg_load(c, v, e.iv), F(c, tr->beta2), false));
        cg_store(c, mv, m, e.iv);
        cg_store(c, vv, v, e.iv);
        LLVMValueRef den = cg_fadd(c, cg_fdiv(c, cg_call1(c, "llvm.sqrt", vv), u->bc2), F(c, tr->eps), false);
        wv = cg_fma(c, cg_fdiv(c, mv, den), LLVMBuildFNeg(c->b, u->step_size, ""), wv);
    }
    cg_store(c, wv, w, e.iv);
    cg_loop_end(c, &e);
}

/* Elements [x0, x1) of the tensor at off: their gradient, then the optimizer step. With sums
 * (nsums > 0) the gradient is sums[0] + (sums[1] + (... + sums[nsums - 1])), added in registers
 * by a loop made for each count (all the sums stream at once); else the tree over the chunks'
 * slots, in place in slot 0. */
static void update_block(cg *c, const upd *u, int64_t off, LLVMValueRef x0, LLVMValueRef x1) {
    LLVMValueRef len = LLVMBuildSub(c->b, x1, x0, ""), at = LLVMBuildAdd(c->b, x0, I(c, off), "");
    for (int n = 0; n <= PNETRT_MAX_SUMS; n++) {
        cg_if f;
        cg_if_begin(c, &f, LLVMBuildICmp(c->b, LLVMIntEQ, u->nsums, I(c, n), ""));
        LLVMValueRef g[PNETRT_MAX_SUMS];
        if (n == 0) {
            slot_tree t = {u->slots, x0, x1, u->P, off};
            cg_tree(c, u->nch, add_slots, &t);
            g[0] = cg_gep(c, u->slots, at);
        }
        for (int j = 0; j < n; j++) g[j] = cg_gep(c, sum_ptr(c, u, I(c, j)), at);
        update_loop(c, u, at, len, g, n);
        cg_if_end(c, &f);
    }
}


/* Where W^T's element (k, u) lies: in the panels of P = pn_wt_panel(U) columns (graph.h). */
static LLVMValueRef wt_at(cg *c, int64_t K, int64_t U, LLVMValueRef k, LLVMValueRef u) {
    int64_t P = pn_wt_panel(U);
    LLVMValueRef p = LLVMBuildSDiv(c->b, u, I(c, P), ""), j = LLVMBuildSRem(c->b, u, I(c, P), "");
    return LLVMBuildAdd(c->b, LLVMBuildMul(c->b, p, I(c, K * P), ""), LLVMBuildAdd(c->b, LLVMBuildMul(c->b, k, I(c, P), ""), j, ""),
                        "");
}

/* Copies W[u][k] to W^T[k][u] for u in [u0, u1), k in [k0, k1), one element at a time. */
static void transpose_scalar(cg *c, LLVMValueRef w, int64_t K, LLVMValueRef wt, int64_t U, LLVMValueRef u0, LLVMValueRef u1,
                             LLVMValueRef k0, LLVMValueRef k1) {
    cg_loop k;
    cg_loop_begin(c, &k, k0, k1, "k");
    cg_loop u;
    cg_loop_begin(c, &u, u0, u1, "u");
    cg_store(c, cg_load(c, w, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, u.iv, I(c, K), ""), k.iv, "")), wt,
             wt_at(c, K, U, k.iv, u.iv));
    cg_loop_end(c, &u);
    cg_loop_end(c, &k);
}

/* One VW x VW block, W rows u0.. and lanes k0.. into W^T rows k0.. and lanes u0.., in registers
 * (cg_transpose_regs). Each load and store is one row of VW floats. */
static void transpose_block(cg *c, int VW, LLVMValueRef w, int64_t K, LLVMValueRef wt, int64_t U, LLVMValueRef u0,
                            LLVMValueRef k0) {
    LLVMTypeRef vt = LLVMVectorType(c->f32, (unsigned)VW);
    LLVMValueRef r[16];
    for (int i = 0; i < VW; i++) {
        LLVMValueRef at = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, LLVMBuildAdd(c->b, u0, I(c, i), ""), I(c, K), ""), k0, "");
        r[i] = LLVMBuildLoad2(c->b, vt, cg_gep(c, w, at), "");
        LLVMSetAlignment(r[i], 4);
    }
    cg_transpose_regs(c, VW, r);
    for (int i = 0; i < VW; i++) {
        /* (VW divides PN_WT_PANEL, and a narrower W^T is one panel: the VW lanes lie in one.) */
        LLVMValueRef at = wt_at(c, K, U, LLVMBuildAdd(c->b, k0, I(c, i), ""), u0);
        LLVMSetAlignment(LLVMBuildStore(c->b, r[i], cg_gep(c, wt, at)), 4);
    }
}

/* Rows [u0, u1) of W [U, K] into wp, W in panels of P = pn_wt_panel(K) columns (graph.h): each row
 * of each whole panel P / VW vectors (VW divides PN_WT_PANEL), the last, narrower one float by float. */
static void panel_rows(cg *c, int VW, LLVMValueRef w, int64_t K, LLVMValueRef wp, int64_t U, LLVMValueRef u0,
                       LLVMValueRef u1) {
    int64_t P = pn_wt_panel(K), PF = P % VW ? 0 : K / P;
    LLVMTypeRef vt = LLVMVectorType(c->f32, (unsigned)VW);
    cg_loop u;
    cg_loop_begin(c, &u, u0, u1, "u");
    LLVMValueRef src = cg_gep(c, w, LLVMBuildMul(c->b, u.iv, I(c, K), "")), dst = cg_gep(c, wp, LLVMBuildMul(c->b, u.iv, I(c, P), ""));
    for (int64_t p = 0; p < PF; p++)
        for (int64_t j = 0; j < P; j += VW) {
            LLVMValueRef v = LLVMBuildLoad2(c->b, vt, cg_gep(c, src, I(c, p * P + j)), "");
            LLVMSetAlignment(v, 4);
            LLVMSetAlignment(LLVMBuildStore(c->b, v, cg_gep(c, dst, I(c, p * U * P + j))), 4);
        }
    if (PF * P < K) {
        cg_loop k;
        cg_loop_begin(c, &k, I(c, PF * P), I(c, K), "k");
        LLVMValueRef at = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, LLVMBuildSDiv(c->b, k.iv, I(c, P), ""), I(c, U * P), ""),
                                       LLVMBuildSRem(c->b, k.iv, I(c, P), ""), "");
        cg_store(c, cg_load(c, src, k.iv), dst, at);
        cg_loop_end(c, &k);
    }
    cg_loop_end(c, &u);
}

/* For each trained tensor, this thread's share of its units within [elem_lo, elem_hi), a unit
 * UPD_UNIT elements, or for a dense layer's W [U, K] WT_BLOCKS * VW rows, each updated by
 * update_block. After a block of W's rows, when every element of W is in range, the rows go to
 * W^T as px__prep puts them (a copy: the same bits) while they are in cache. */
LLVMValueRef cg_gen_update(cg *c) {
    const pn_graph *g = c->g;
    const pn_train *tr = &g->train;
    int VW, MR, NV;
    cg_gemm_shape(c, &VW, &MR, &NV);
    cg_step_begin(c, "update");
    upd u = {.tr = tr, .P = g->plan.param_floats};
    u.params = cg_tcp(c, TC_PARAMS);
    u.slots = cg_tcp(c, TC_SLOTS);
    u.opt = cg_tcp(c, TC_OPT);
    u.sums = cg_tcp(c, TC_SUMS);
    u.nsums = cg_tci(c, TC_NSUMS);
    u.nch = cg_tci(c, TC_NCHUNKS);
    u.first = LLVMBuildICmp(c->b, LLVMIntEQ, cg_tci(c, TC_STEP), I(c, 1), "");
    u.lr = cg_tcf(c, TC_LR);
    u.step_size = cg_tcf(c, TC_ADAM_STEP);
    u.bc2 = cg_tcf(c, TC_ADAM_BC2);
    u.decay = cg_fsub(c, F(c, 1.0), cg_fmul(c, u.lr, F(c, tr->weight_decay), false));
    u.ostride = cg_tci(c, TC_OPT_STRIDE);
    LLVMValueRef elo = cg_tci(c, TC_ELEM_LO), ehi = cg_tci(c, TC_ELEM_HI);
    LLVMValueRef global = cg_tcp(c, TC_GLOBAL);
    for (int i = 0; i < g->nnodes; i++) {
        const pn_node *nd = &g->nodes[i];
        if (!nd->nparams || !g->tplan.grad[i]) continue;
        int64_t off = g->plan.param_offset[i];
        for (int k = 0; k < nd->nparams; k++) {
            int64_t cnt = pn_shape_sample_elems(&nd->params[k].shape);
            if (nd->params[k].trainable) {
                bool wt = k == 0 && nd->op == PN_OP_DENSE && g->tplan.live[i];
                int64_t U = wt ? nd->params[0].shape.d[0] : 0, K = wt ? nd->params[0].shape.d[1] : 0;
                int64_t rows = WT_BLOCKS * VW, unit = wt ? rows * K : UPD_UNIT;
                /* The tensor's elements within [elem_lo, elem_hi): [a, b). */
                LLVMValueRef a = LLVMBuildSub(c->b, elo, I(c, off), ""), b = LLVMBuildSub(c->b, ehi, I(c, off), "");
                a = cg_smax(c, a, I(c, 0));
                b = cg_smin(c, b, I(c, cnt));
                b = cg_smax(c, b, a);
                LLVMValueRef lo, hi;
                cg_split(c, I(c, (cnt + unit - 1) / unit), &lo, &hi);
                cg_loop un;
                cg_loop_begin(c, &un, lo, hi, "unit");
                LLVMValueRef x0 = LLVMBuildMul(c->b, un.iv, I(c, unit), "");
                LLVMValueRef x1 = cg_smin(c, LLVMBuildAdd(c->b, x0, I(c, unit), ""), b);
                x0 = cg_smax(c, x0, a);
                x1 = cg_smax(c, x1, x0);
                update_block(c, &u, off, x0, x1);
                if (wt) {
                    /* The unit's rows [r0, r0 + rows) of W: VW x VW blocks through registers, k block
                     * by k block, so each row of W^T gets WT_BLOCKS adjacent vectors (16 rows at a
                     * time, the strided stores cost more than the prep did); the ragged columns and
                     * rows element by element. */
                    LLVMValueRef whole = LLVMBuildAnd(c->b, LLVMBuildICmp(c->b, LLVMIntEQ, a, I(c, 0), ""),
                                                      LLVMBuildICmp(c->b, LLVMIntEQ, b, I(c, cnt), ""), "");
                    LLVMValueRef w = cg_gep(c, u.params, I(c, off)), wtp = cg_gep(c, global, I(c, g->tplan.global_off[i]));
                    int64_t KF = K / VW, UF = U / VW * VW;
                    LLVMValueRef r0 = LLVMBuildMul(c->b, un.iv, I(c, rows), "");
                    LLVMValueRef rf = cg_smax(c, cg_smin(c, LLVMBuildAdd(c->b, r0, I(c, rows), ""), I(c, UF)), r0);
                    cg_if f;
                    cg_if_begin(c, &f, whole);
                    if (KF > 0 && UF > 0) {
                        cg_loop kb;
                        cg_loop_begin(c, &kb, I(c, 0), I(c, KF), "kb");
                        cg_loop ub;
                        cg_loop_begin(c, &ub, I(c, 0), LLVMBuildSDiv(c->b, LLVMBuildSub(c->b, rf, r0, ""), I(c, VW), ""), "ub");
                        transpose_block(c, VW, w, K, wtp, U, LLVMBuildAdd(c->b, r0, LLVMBuildMul(c->b, ub.iv, I(c, VW), ""), ""),
                                        LLVMBuildMul(c->b, kb.iv, I(c, VW), ""));
                        cg_loop_end(c, &ub);
                        cg_loop_end(c, &kb);
                    }
                    if (KF * VW < K) transpose_scalar(c, w, K, wtp, U, r0, rf, I(c, KF * VW), I(c, K));
                    if (UF < U) {
                        LLVMValueRef p0 = cg_smax(c, r0, I(c, UF)), p1 = cg_smin(c, LLVMBuildAdd(c->b, r0, I(c, rows), ""), I(c, U));
                        transpose_scalar(c, w, K, wtp, U, p0, cg_smax(c, p1, p0), I(c, 0), I(c, K));
                    }
                    if (g->tplan.wp_off[i] >= 0)
                        panel_rows(c, VW, w, K, cg_gep(c, global, I(c, g->tplan.wp_off[i])), U, r0,
                                   cg_smin(c, LLVMBuildAdd(c->b, r0, I(c, rows), ""), I(c, U)));
                    cg_if_end(c, &f);
                }
                cg_loop_end(c, &un);
            }
            off += (cnt + 15) / 16 * 16;
        }
    }
    LLVMBuildRetVoid(c->b);
    return c->fn;
}

/* px__prep(call, ith, nth): at the start of a step, each dense layer's W [U, K] transposed into the
 * global area as W^T [K, U] in panels of pn_wt_panel(U) columns (graph.h), the B operand of the
 * forward GEMM, and where dx is needed W in panels of pn_wt_panel(K) columns (split over blocks
 * of VW rows). The transpose is split over blocks of VW k (the
 * vector width); a whole block goes through registers VW u at a time (transpose_block), the rest
 * element by element, as the scalar twin did everything (tests: train.*, test_grad_ref). Only the
 * layers whose W lies in the call's [elem_lo, elem_hi): a rank that trains one pipeline stage
 * prepares (and touches the global area of) its stage's layers alone. */
LLVMValueRef cg_gen_prep(cg *c) {
    const pn_graph *g = c->g;
    int VW, MR, NV;
    cg_gemm_shape(c, &VW, &MR, &NV);
    cg_step_begin(c, "prep");
    LLVMValueRef params = cg_tcp(c, TC_PARAMS), global = cg_tcp(c, TC_GLOBAL);
    LLVMValueRef elo = cg_tci(c, TC_ELEM_LO), ehi = cg_tci(c, TC_ELEM_HI);
    for (int i = 0; i < g->nnodes; i++) {
        const pn_node *nd = &g->nodes[i];
        if (!g->tplan.live[i] || nd->op != PN_OP_DENSE) continue;
        int64_t U = nd->params[0].shape.d[0], K = nd->params[0].shape.d[1];
        LLVMValueRef w = cg_gep(c, params, I(c, g->plan.param_offset[i])), wt = cg_gep(c, global, I(c, g->tplan.global_off[i]));
        int64_t KB = (K + VW - 1) / VW, KF = K / VW, UF = U / VW, off = g->plan.param_offset[i];
        LLVMValueRef in = LLVMBuildAnd(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, I(c, off), ehi, ""),
                                       LLVMBuildICmp(c->b, LLVMIntSGT, I(c, off + U * K), elo, ""), "");
        LLVMValueRef lo, hi;
        cg_split(c, LLVMBuildSelect(c->b, in, I(c, KB), I(c, 0), ""), &lo, &hi);
        cg_loop kb;
        cg_loop_begin(c, &kb, lo, hi, "kb");
        LLVMValueRef k0 = LLVMBuildMul(c->b, kb.iv, I(c, VW), "");
        LLVMValueRef k1 = cg_smin(c, LLVMBuildAdd(c->b, k0, I(c, VW), ""), I(c, K));
        cg_if whole;
        cg_if_begin(c, &whole, LLVMBuildICmp(c->b, LLVMIntSLT, kb.iv, I(c, KF), ""));
        if (UF > 0) {
            cg_loop ub;
            cg_loop_begin(c, &ub, I(c, 0), I(c, UF), "ub");
            transpose_block(c, VW, w, K, wt, U, LLVMBuildMul(c->b, ub.iv, I(c, VW), ""), k0);
            cg_loop_end(c, &ub);
        }
        if (UF * VW < U) transpose_scalar(c, w, K, wt, U, I(c, UF * VW), I(c, U), k0, k1);
        cg_if_end(c, &whole);
        cg_if part;
        cg_if_begin(c, &part, LLVMBuildICmp(c->b, LLVMIntSGE, kb.iv, I(c, KF), ""));
        transpose_scalar(c, w, K, wt, U, I(c, 0), I(c, U), k0, k1);
        cg_if_end(c, &part);
        cg_loop_end(c, &kb);
        if (g->tplan.wp_off[i] >= 0) { /* W in panels: blocks of VW rows */
            LLVMValueRef rlo, rhi;
            int64_t RB = (U + VW - 1) / VW;
            cg_split(c, LLVMBuildSelect(c->b, in, I(c, RB), I(c, 0), ""), &rlo, &rhi);
            panel_rows(c, VW, w, K, cg_gep(c, global, I(c, g->tplan.wp_off[i])), U, LLVMBuildMul(c->b, rlo, I(c, VW), ""),
                       cg_smin(c, LLVMBuildMul(c->b, rhi, I(c, VW), ""), I(c, U)));
        }
    }
    LLVMBuildRetVoid(c->b);
    return c->fn;
}
