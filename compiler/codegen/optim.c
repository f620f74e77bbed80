/* The update of a training step: px__update(call, ith, nth). For every trained parameter tensor,
 * threads take a share of its elements; each element's gradient is the fixed tree over the
 * chunks' slots (train.h), then the optimizer (sgd with momentum, weight decay and Nesterov, or
 * adam with decoupled weight decay, as torch.optim.SGD and torch.optim.AdamW compute them). */
#include "train.h"

static LLVMValueRef I(cg *c, int64_t v) { return cg_i64(c, v); }
static LLVMValueRef F(cg *c, double v) { return cg_f32(c, v); }

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

LLVMValueRef cg_gen_update(cg *c) {
    const pn_graph *g = c->g;
    const pn_train *tr = &g->train;
    cg_step_begin(c, "update");
    LLVMValueRef params = cg_tcp(c, TC_PARAMS), slots = cg_tcp(c, TC_SLOTS), opt = cg_tcp(c, TC_OPT);
    LLVMValueRef nch = cg_tci(c, TC_NCHUNKS);
    LLVMValueRef first = LLVMBuildICmp(c->b, LLVMIntEQ, cg_tci(c, TC_STEP), I(c, 1), "");
    LLVMValueRef lr = cg_tcf(c, TC_LR), step_size = cg_tcf(c, TC_ADAM_STEP), bc2 = cg_tcf(c, TC_ADAM_BC2);
    LLVMValueRef decay = cg_fsub(c, F(c, 1.0), cg_fmul(c, lr, F(c, tr->weight_decay), false));
    LLVMValueRef elo = cg_tci(c, TC_ELEM_LO), ehi = cg_tci(c, TC_ELEM_HI), ostride = cg_tci(c, TC_OPT_STRIDE);
    int64_t P = g->plan.param_floats;
    for (int i = 0; i < g->nnodes; i++) {
        const pn_node *nd = &g->nodes[i];
        if (!nd->nparams || !g->tplan.grad[i]) continue;
        int64_t off = g->plan.param_offset[i];
        for (int k = 0; k < nd->nparams; k++) {
            int64_t cnt = pn_shape_sample_elems(&nd->params[k].shape);
            if (nd->params[k].trainable) {
                /* This thread's share of the tensor's elements within [elem_lo, elem_hi). */
                LLVMValueRef a = LLVMBuildSub(c->b, elo, I(c, off), ""), b = LLVMBuildSub(c->b, ehi, I(c, off), "");
                a = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, a, I(c, 0), ""), I(c, 0), a, "");
                b = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSGT, b, I(c, cnt), ""), I(c, cnt), b, "");
                b = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, b, a, ""), a, b, "");
                LLVMValueRef span = LLVMBuildSub(c->b, b, a, ""), lo, hi;
                cg_split(c, span, &lo, &hi);
                lo = LLVMBuildAdd(c->b, a, lo, "lo");
                hi = LLVMBuildAdd(c->b, a, hi, "hi");
                slot_tree t = {slots, lo, hi, P, off};
                cg_tree(c, nch, add_slots, &t);
                LLVMValueRef gp = cg_gep(c, slots, I(c, off)), w = cg_gep(c, params, I(c, off));
                LLVMValueRef m = cg_gep(c, opt, I(c, off)), v = cg_gep(c, opt, LLVMBuildAdd(c->b, ostride, I(c, off), ""));
                cg_loop e;
                cg_loop_begin(c, &e, lo, hi, "e");
                LLVMValueRef gv = cg_load(c, gp, e.iv), wv = cg_load(c, w, e.iv);
                if (tr->opt == PN_OPT_SGD) {
                    if (tr->weight_decay != 0) gv = cg_fma(c, wv, F(c, tr->weight_decay), gv);
                    if (tr->momentum != 0) {
                        LLVMValueRef buf = cg_fma(c, cg_load(c, m, e.iv), F(c, tr->momentum), gv);
                        buf = cg_select(c, first, gv, buf);
                        cg_store(c, buf, m, e.iv);
                        gv = tr->nesterov ? cg_fma(c, buf, F(c, tr->momentum), gv) : buf;
                    }
                    wv = cg_fma(c, gv, LLVMBuildFNeg(c->b, lr, ""), wv);
                } else {
                    if (tr->weight_decay != 0) wv = cg_fmul(c, wv, decay, false);
                    LLVMValueRef mv = cg_fma(c, gv, F(c, 1.0 - tr->beta1), cg_fmul(c, cg_load(c, m, e.iv), F(c, tr->beta1), false));
                    LLVMValueRef vv = cg_fma(c, cg_fmul(c, gv, gv, false), F(c, 1.0 - tr->beta2),
                                             cg_fmul(c, cg_load(c, v, e.iv), F(c, tr->beta2), false));
                    cg_store(c, mv, m, e.iv);
                    cg_store(c, vv, v, e.iv);
                    LLVMValueRef den = cg_fadd(c, cg_fdiv(c, cg_call1(c, "llvm.sqrt", vv), bc2), F(c, tr->eps), false);
                    wv = cg_fma(c, cg_fdiv(c, mv, den), LLVMBuildFNeg(c->b, step_size, ""), wv);
                }
                cg_store(c, wv, w, e.iv);
                cg_loop_end(c, &e);
            }
            off += (cnt + 15) / 16 * 16;
        }
    }
    LLVMBuildRetVoid(c->b);
    return c->fn;
}

/* Copies W[u][k] to W^T[k][u] for u in [u0, u1), k in [k0, k1), one element at a time. */
static void transpose_scalar(cg *c, LLVMValueRef w, int64_t K, LLVMValueRef wt, int64_t U, LLVMValueRef u0, LLVMValueRef u1,
                             LLVMValueRef k0, LLVMValueRef k1) {
    cg_loop k;
    cg_loop_begin(c, &k, k0, k1, "k");
    cg_loop u;
    cg_loop_begin(c, &u, u0, u1, "u");
    cg_store(c, cg_load(c, w, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, u.iv, I(c, K), ""), k.iv, "")), wt,
             LLVMBuildAdd(c->b, LLVMBuildMul(c->b, k.iv, I(c, U), ""), u.iv, ""));
    cg_loop_end(c, &u);
    cg_loop_end(c, &k);
}

/* One VW x VW block, W rows u0.. and lanes k0.. into W^T rows k0.. and lanes u0.., in registers:
 * for d = VW/2, ..., 1 each pair of rows i, i + d (bit d of i clear) swaps its off-diagonal d-blocks,
 * which swaps bit d of the row index with bit d of the lane index; after every d, row and lane
 * have traded places. Each load and store is one row of VW floats. */
static void transpose_block(cg *c, int VW, LLVMValueRef w, int64_t K, LLVMValueRef wt, int64_t U, LLVMValueRef u0,
                            LLVMValueRef k0) {
    LLVMTypeRef vt = LLVMVectorType(c->f32, (unsigned)VW);
    LLVMValueRef r[16];
    for (int i = 0; i < VW; i++) {
        LLVMValueRef at = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, LLVMBuildAdd(c->b, u0, I(c, i), ""), I(c, K), ""), k0, "");
        r[i] = LLVMBuildLoad2(c->b, vt, cg_gep(c, w, at), "");
        LLVMSetAlignment(r[i], 4);
    }
    for (int d = VW / 2; d >= 1; d /= 2)
        for (int i = 0; i < VW; i++) {
            if (i & d) continue;
            LLVMValueRef mi[16], mj[16];
            for (int l = 0; l < VW; l++) {
                mi[l] = LLVMConstInt(c->i32, (unsigned long long)(l & d ? VW + l - d : l), 0);
                mj[l] = LLVMConstInt(c->i32, (unsigned long long)(l & d ? VW + l : l + d), 0);
            }
            LLVMValueRef ni = LLVMBuildShuffleVector(c->b, r[i], r[i + d], LLVMConstVector(mi, (unsigned)VW), "");
            LLVMValueRef nj = LLVMBuildShuffleVector(c->b, r[i], r[i + d], LLVMConstVector(mj, (unsigned)VW), "");
            r[i] = ni;
            r[i + d] = nj;
        }
    for (int i = 0; i < VW; i++) {
        LLVMValueRef at = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, LLVMBuildAdd(c->b, k0, I(c, i), ""), I(c, U), ""), u0, "");
        LLVMSetAlignment(LLVMBuildStore(c->b, r[i], cg_gep(c, wt, at)), 4);
    }
}

/* px__prep(call, ith, nth): at the start of a step, each dense layer's W [U, K] transposed into the
 * global area as W^T [K, U], the B operand of the forward GEMM. Split over blocks of VW k (the
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
    }
    LLVMBuildRetVoid(c->b);
    return c->fn;
}
