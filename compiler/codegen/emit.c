/* Builds the module of a network: one kernel per computed node, the forward function that runs
 * them with barriers between, the descriptor libpnetrt reads, the prefixed embedding API, and
 * main() for executables. Then verifies, optimises and writes it. */
#include "codegen.h"
#include "train.h"
#include "../ir/report.h"
#include "../support/util.h"
#include "pnetrt_abi.h"

#include <llvm-c/Analysis.h>
#include <llvm-c/Target.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tail_of(const pn_plan *p, int n) {
    while (p->fuse_next[n] >= 0) n = p->fuse_next[n];
    return n;
}

typedef struct fwd {
    LLVMValueRef inputs, outputs, arena, params, scratch, cap;
} fwd;

/* Pointer to the storage of node i inside the forward function. */
static LLVMValueRef storage(cg *c, fwd *f, int i) {
    const pn_plan *p = &c->g->plan;
    const pn_mem *m = &p->mem[i];
    switch (m->kind) {
    case PN_MEM_INPUT:
    case PN_MEM_OUTPUT: {
        LLVMValueRef idx = cg_i64(c, m->index);
        LLVMValueRef arr = m->kind == PN_MEM_INPUT ? f->inputs : f->outputs;
        return LLVMBuildLoad2(c->b, c->ptr, LLVMBuildInBoundsGEP2(c->b, c->ptr, arr, &idx, 1, ""), "");
    }
    case PN_MEM_ARENA: {
        /* The arena holds `cap` samples (a chunk, or a pipeline micro-batch slot), then the
         * batch-independent values. */
        LLVMValueRef idx = m->batched ? LLVMBuildMul(c->b, cg_i64(c, m->offset), f->cap, "")
                                      : LLVMBuildAdd(c->b, LLVMBuildMul(c->b, cg_i64(c, p->arena_sample_bytes), f->cap, ""),
                                                     cg_i64(c, m->offset), "");
        return LLVMBuildInBoundsGEP2(c->b, c->i8, f->arena, &idx, 1, "");
    }
    case PN_MEM_ALIAS: return storage(c, f, m->index);
    case PN_MEM_CONST: return cg_const_global(c, i);
    case PN_MEM_NONE: break;
    }
    PN_ASSERT(!"node without storage");
    return NULL;
}

static LLVMValueRef declare(cg *c, const char *name, LLVMTypeRef ret, LLVMTypeRef *args, unsigned n) {
    LLVMValueRef f = LLVMGetNamedFunction(c->mod, name);
    if (!f) f = LLVMAddFunction(c->mod, name, LLVMFunctionType(ret, args, n, 0));
    return f;
}

/* A copy of node src's value into output buffer k (an output that is an input, a constant, or
 * the same node as an earlier output). */
static LLVMValueRef gen_output_copy(cg *c, int k, int src) {
    char *name = pn_xasprintf("%s__out%d", c->px, k);
    LLVMTypeRef args[5] = {c->ptr, c->ptr, c->i64, c->i64, c->i64};
    c->fn = LLVMAddFunction(c->mod, name, LLVMFunctionType(c->vd, args, 5, 0));
    free(name);
    LLVMSetLinkage(c->fn, LLVMInternalLinkage);
    c->n = LLVMGetParam(c->fn, 2);
    c->ith = LLVMGetParam(c->fn, 3);
    c->nth = LLVMGetParam(c->fn, 4);
    LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, c->fn, "entry"));
    const pn_shape *s = &c->g->nodes[src].shape;
    LLVMValueRef total = c->g->plan.mem[src].kind == PN_MEM_CONST ? cg_i64(c, 1) : cg_numel(c, s);
    LLVMValueRef lo, hi;
    cg_split(c, total, &lo, &hi);
    cg_loop i;
    cg_loop_begin(c, &i, lo, hi, "i");
    LLVMValueRef a = LLVMBuildInBoundsGEP2(c->b, c->i32, LLVMGetParam(c->fn, 1), &i.iv, 1, "");
    LLVMValueRef b = LLVMBuildInBoundsGEP2(c->b, c->i32, LLVMGetParam(c->fn, 0), &i.iv, 1, "");
    LLVMBuildStore(c->b, LLVMBuildLoad2(c->b, c->i32, a, ""), b);
    cg_loop_end(c, &i);
    LLVMBuildRetVoid(c->b);
    return c->fn;
}

typedef struct kernels {
    LLVMValueRef *kern;          /* per node, or NULL */
    LLVMValueRef copies[256];    /* copies into outputs that are not their node's own storage */
    int copy_src[256], copy_dst[256], ncopy;
} kernels;

/* A forward function over the kernels of `stage` (all stages when -1), in execution order,
 * with a barrier between kernels; output copies run with the last stage. */
static LLVMValueRef emit_forward(cg *c, const kernels *ks, int stage, const char *name) {
    const pn_graph *g = c->g;
    const pn_plan *p = &g->plan;
    LLVMTypeRef args[3] = {c->ptr, c->i64, c->i64};
    LLVMValueRef fn = LLVMAddFunction(c->mod, name, LLVMFunctionType(c->vd, args, 3, 0));
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    c->fn = fn;
    LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, fn, "entry"));
    LLVMValueRef call = LLVMGetParam(fn, 0), ith = LLVMGetParam(fn, 1), nth = LLVMGetParam(fn, 2);
    LLVMValueRef field[7];
    for (int k = 0; k < 7; k++) {
        LLVMValueRef idx = cg_i64(c, k);
        field[k] = LLVMBuildInBoundsGEP2(c->b, c->i64, call, &idx, 1, "");
    }
    LLVMValueRef n = LLVMBuildLoad2(c->b, c->i64, field[0], "n");
    fwd f = {LLVMBuildLoad2(c->b, c->ptr, field[1], "inputs"), LLVMBuildLoad2(c->b, c->ptr, field[2], "outputs"),
             LLVMBuildLoad2(c->b, c->ptr, field[4], "arena"), LLVMBuildLoad2(c->b, c->ptr, field[3], "params"), NULL,
             LLVMBuildLoad2(c->b, c->i64, field[6], "cap")};
    /* This thread's scratch (every kernel is built by now, so scratch_bytes is final). */
    LLVMValueRef scratch_base = LLVMBuildLoad2(c->b, c->ptr, field[5], "scratch");
    LLVMValueRef soff = LLVMBuildMul(c->b, ith, cg_i64(c, c->scratch_bytes), "");
    f.scratch = LLVMBuildInBoundsGEP2(c->b, c->i8, scratch_base, &soff, 1, "scratch");
    LLVMValueRef barrier = declare(c, "pnetrt_barrier", c->vd, NULL, 0);
    LLVMTypeRef barrier_t = LLVMFunctionType(c->vd, NULL, 0, 0);
    bool first = true;
    for (int j = 0; j < g->nnodes; j++) {
        int i = p->order[j];
        if (!ks->kern[i] || (stage >= 0 && g->nodes[i].stage != stage)) continue;
        if (!first) LLVMBuildCall2(c->b, barrier_t, barrier, NULL, 0, "");
        first = false;
        const pn_node *nd = &g->nodes[i];
        LLVMValueRef a[70];
        int na = 0;
        a[na++] = storage(c, &f, tail_of(p, i));
        for (int k = 0; k < nd->ninputs; k++) a[na++] = storage(c, &f, nd->in[k]);
        LLVMValueRef po = cg_i64(c, p->param_offset[i] >= 0 ? p->param_offset[i] : 0);
        a[na++] = LLVMBuildInBoundsGEP2(c->b, c->f32, f.params, &po, 1, "");
        a[na++] = f.scratch;
        a[na++] = n;
        a[na++] = ith;
        a[na++] = nth;
        LLVMBuildCall2(c->b, LLVMGlobalGetValueType(ks->kern[i]), ks->kern[i], a, (unsigned)na, "");
    }
    for (int k = 0; k < ks->ncopy && (stage < 0 || stage == g->nstages - 1); k++) {
        if (!first) LLVMBuildCall2(c->b, barrier_t, barrier, NULL, 0, "");
        first = false;
        LLVMValueRef idx = cg_i64(c, ks->copy_dst[k]);
        LLVMValueRef dst = LLVMBuildLoad2(c->b, c->ptr, LLVMBuildInBoundsGEP2(c->b, c->ptr, f.outputs, &idx, 1, ""), "");
        LLVMValueRef a[5] = {dst, storage(c, &f, ks->copy_src[k]), n, ith, nth};
        LLVMBuildCall2(c->b, LLVMGlobalGetValueType(ks->copies[k]), ks->copies[k], a, 5, "");
    }
    LLVMBuildRetVoid(c->b);
    return fn;
}

/* The kernels, then the forward function over all of them and one per pipeline stage (into
 * *stages, an array constant of nstages function pointers). */
static LLVMValueRef gen_forward(cg *c, LLVMValueRef *stages) {
    const pn_graph *g = c->g;
    const pn_plan *p = &g->plan;
    kernels ks = {0};
    ks.kern = pn_xcalloc((size_t)(g->nnodes ? g->nnodes : 1), sizeof *ks.kern);
    for (int i = 0; i < g->nnodes; i++)
        if (p->live[i] && !p->fused[i]) ks.kern[i] = cg_gen_kernel(c, i);
    for (int k = 0; k < g->noutputs && ks.ncopy < 256; k++) {
        int src = g->outputs[k].node;
        const pn_mem *m = &p->mem[src];
        if (m->kind == PN_MEM_OUTPUT && m->index == k) continue;
        ks.copy_src[ks.ncopy] = src;
        ks.copy_dst[ks.ncopy] = k;
        ks.copies[ks.ncopy++] = gen_output_copy(c, k, src);
    }
    char *name = pn_xasprintf("%s__forward", c->px);
    LLVMValueRef all = emit_forward(c, &ks, -1, name);
    free(name);
    LLVMValueRef *fs = pn_xcalloc((size_t)g->nstages, sizeof *fs);
    for (int s = 0; s < g->nstages; s++) {
        name = pn_xasprintf("%s__forward_stage%d", c->px, s);
        fs[s] = emit_forward(c, &ks, s, name);
        free(name);
    }
    LLVMValueRef init = LLVMConstArray2(c->ptr, fs, (uint64_t)g->nstages);
    name = pn_xasprintf("%s__stages", c->px);
    *stages = LLVMAddGlobal(c->mod, LLVMTypeOf(init), name);
    free(name);
    LLVMSetInitializer(*stages, init);
    LLVMSetGlobalConstant(*stages, 1);
    LLVMSetLinkage(*stages, LLVMPrivateLinkage);
    free(fs);
    free(ks.kern);
    return all;
}

/* ---- prepared parameters ------------------------------------------------------------------ */

/* The weights of a dense or conv2d node as a matrix [rows][k]: dense [units][in], conv2d
 * [out_channels][in_channels * KH * KW]. */
static void weight_matrix(const pn_node *n, int64_t *rows, int64_t *k) {
    *k = n->params[0].shape.d[1];
    if (n->op == PN_OP_CONV2D) {
        *rows = n->ia[PN_CONV_OUT];
        *k *= n->ia[PN_CONV_KH] * n->ia[PN_CONV_KW];
    } else {
        *rows = n->ia[PN_DENSE_UNITS];
    }
}

/* Plans the prepared buffer: a copy of the raw parameters, then the folded biases, then the
 * packed panels (and padded bias) of every dense layer, and the packed weights of the convs whose
 * kernels take lanes over channels. */
static void plan_packing(cg *c) {
    const pn_graph *g = c->g;
    int VW, MR, NV;
    cg_gemm_shape(c, &VW, &MR, &NV);
    int64_t cur = g->plan.param_floats;
    c->pack_offset = pn_xcalloc((size_t)(g->nnodes ? g->nnodes : 1), sizeof(int64_t));
    c->pack_width = pn_xcalloc((size_t)(g->nnodes ? g->nnodes : 1), sizeof(int64_t));
    c->fold_bias = pn_xcalloc((size_t)(g->nnodes ? g->nnodes : 1), sizeof(int64_t));
    for (int i = 0; i < g->nnodes; i++) {
        const pn_node *n = &g->nodes[i];
        c->pack_offset[i] = -1;
        c->fold_bias[i] = -1;
        if (!g->plan.live[i] || g->plan.fused[i]) continue;
        if (n->op == PN_OP_CONV2D && cg_folded_bn(c, i) >= 0) {
            c->fold_bias[i] = cur;
            cur += (n->ia[PN_CONV_OUT] + 15) / 16 * 16;
        }
        int64_t NR = n->op == PN_OP_DENSE ? (int64_t)VW * NV : n->op == PN_OP_CONV2D ? cg_conv_pack_width(c, i) : 0;
        if (NR == 0) continue;
        int64_t U, K;
        weight_matrix(n, &U, &K);
        int64_t NP = (U + NR - 1) / NR;
        c->pack_offset[i] = cur;
        c->pack_width[i] = NR;
        cur += (NP * K * NR + (n->op == PN_OP_DENSE ? NP * NR : 0) + 15) / 16 * 16;
    }
    c->prepared_floats = cur;
}

/* The folded form of batchnorm node bn for channel ch: y = x * scale + shift, with
 * scale = gamma / sqrt(running_var + eps) and shift = beta - running_mean * scale. */
static void bn_scale_shift(cg *c, LLVMValueRef raw, int bn, LLVMValueRef ch, LLVMValueRef *scale, LLVMValueRef *shift) {
    const pn_node *b = &c->g->nodes[bn];
    int64_t a = (b->shape.d[1] + 15) / 16 * 16;
    LLVMValueRef base = cg_gep(c, raw, cg_i64(c, c->g->plan.param_offset[bn]));
    LLVMValueRef gamma = cg_load(c, base, ch), beta = cg_load(c, cg_gep(c, base, cg_i64(c, a)), ch);
    LLVMValueRef mean = cg_load(c, cg_gep(c, base, cg_i64(c, 2 * a)), ch), var = cg_load(c, cg_gep(c, base, cg_i64(c, 3 * a)), ch);
    *scale = cg_fdiv(c, gamma, cg_call1(c, "llvm.sqrt", cg_fadd(c, var, cg_f32(c, b->fa[PN_FA_VALUE]), false)));
    *shift = cg_fsub(c, beta, cg_fmul(c, mean, *scale, false));
}

/* void px__prepare(const float *raw, float *prepared): copies, folds batchnorms, then packs
 * W[u][k] into panels. */
static LLVMValueRef gen_prepare(cg *c) {
    const pn_graph *g = c->g;
    char *name = pn_xasprintf("%s__prepare", c->px);
    LLVMTypeRef args[2] = {c->ptr, c->ptr};
    c->fn = LLVMAddFunction(c->mod, name, LLVMFunctionType(c->vd, args, 2, 0));
    free(name);
    LLVMSetLinkage(c->fn, LLVMInternalLinkage);
    LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, c->fn, "entry"));
    LLVMValueRef raw = LLVMGetParam(c->fn, 0), prep = LLVMGetParam(c->fn, 1);
    cg_loop i;
    cg_loop_begin(c, &i, cg_i64(c, 0), cg_i64(c, g->plan.param_floats), "i");
    cg_store(c, cg_load(c, raw, i.iv), prep, i.iv);
    cg_loop_end(c, &i);
    /* Folded batchnorms: conv2d weights scaled in place, the shifted bias in fold_bias. */
    for (int n = 0; n < g->nnodes; n++) {
        if (c->fold_bias[n] < 0) continue;
        const pn_node *nd = &g->nodes[n];
        int64_t OC, K;
        weight_matrix(nd, &OC, &K);
        LLVMValueRef w = cg_gep(c, raw, cg_i64(c, g->plan.param_offset[n]));
        LLVMValueRef pw = cg_gep(c, prep, cg_i64(c, g->plan.param_offset[n]));
        LLVMValueRef pb = cg_gep(c, prep, cg_i64(c, c->fold_bias[n]));
        cg_loop oc;
        cg_loop_begin(c, &oc, cg_i64(c, 0), cg_i64(c, OC), "oc");
        LLVMValueRef scale, shift;
        bn_scale_shift(c, raw, cg_folded_bn(c, n), oc.iv, &scale, &shift);
        cg_loop k;
        cg_loop_begin(c, &k, cg_i64(c, 0), cg_i64(c, K), "k");
        LLVMValueRef at = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, oc.iv, cg_i64(c, K), ""), k.iv, "");
        cg_store(c, cg_fmul(c, cg_load(c, w, at), scale, false), pw, at);
        cg_loop_end(c, &k);
        LLVMValueRef b = nd->ia[PN_CONV_BIAS] ? cg_load(c, cg_gep(c, w, cg_i64(c, (OC * K + 15) / 16 * 16)), oc.iv) : cg_f32(c, 0.0);
        cg_store(c, cg_fma(c, b, scale, shift), pb, oc.iv);
        cg_loop_end(c, &oc);
    }
    for (int n = 0; n < g->nnodes; n++) {
        if (c->pack_offset[n] < 0) continue;
        const pn_node *nd = &g->nodes[n];
        bool conv = nd->op == PN_OP_CONV2D;
        /* A conv's weights are read after its batchnorm was folded into them, above. */
        int bn = conv ? -1 : cg_folded_bn(c, n);
        int64_t U, K;
        weight_matrix(nd, &U, &K);
        int64_t NR = c->pack_width[n], NP = (U + NR - 1) / NR;
        LLVMValueRef w = cg_gep(c, conv ? prep : raw, cg_i64(c, g->plan.param_offset[n]));
        LLVMValueRef dst = cg_gep(c, prep, cg_i64(c, c->pack_offset[n]));
        /* dst[(p*K + k)*NR + j] = W[p*NR + j][k], zero past U. */
        cg_loop col;
        cg_loop_begin(c, &col, cg_i64(c, 0), cg_i64(c, NP * NR), "col");
        LLVMValueRef p = LLVMBuildSDiv(c->b, col.iv, cg_i64(c, NR), ""), j = LLVMBuildSRem(c->b, col.iv, cg_i64(c, NR), "");
        LLVMValueRef in_range = LLVMBuildICmp(c->b, LLVMIntSLT, col.iv, cg_i64(c, U), "");
        LLVMValueRef src_row = cg_smin(c, col.iv, cg_i64(c, U - 1));
        LLVMValueRef scale = cg_f32(c, 1.0), shift = cg_f32(c, 0.0);
        if (bn >= 0) bn_scale_shift(c, raw, bn, src_row, &scale, &shift);
        cg_loop k;
        cg_loop_begin(c, &k, cg_i64(c, 0), cg_i64(c, K), "k");
        LLVMValueRef v = cg_load(c, w, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, src_row, cg_i64(c, K), ""), k.iv, ""));
        v = cg_select(c, in_range, bn >= 0 ? cg_fmul(c, v, scale, false) : v, cg_f32(c, 0.0));
        LLVMValueRef at = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, p, cg_i64(c, K), ""), k.iv, ""),
                                                          cg_i64(c, NR), ""), j, "");
        cg_store(c, v, dst, at);
        cg_loop_end(c, &k);
        if (conv) { /* the kernel reads the bias where it is */
            cg_loop_end(c, &col);
            continue;
        }
        LLVMValueRef bias = cg_f32(c, 0.0);
        if (nd->ia[PN_DENSE_BIAS]) {
            LLVMValueRef bsrc = cg_gep(c, w, cg_i64(c, (U * K + 15) / 16 * 16));
            bias = cg_load(c, bsrc, src_row);
        }
        if (bn >= 0) bias = cg_fma(c, bias, scale, shift);
        bias = cg_select(c, in_range, bias, cg_f32(c, 0.0));
        cg_store(c, bias, dst, LLVMBuildAdd(c->b, cg_i64(c, NP * K * NR), col.iv, ""));
        cg_loop_end(c, &col);
    }
    LLVMBuildRetVoid(c->b);
    return c->fn;
}

/* ---- the descriptor ---------------------------------------------------------------------- */

static LLVMValueRef str(cg *c, const char *s) {
    LLVMValueRef init = LLVMConstStringInContext(c->ctx, s, (unsigned)strlen(s), 0);
    LLVMValueRef gv = LLVMAddGlobal(c->mod, LLVMTypeOf(init), ".str");
    LLVMSetInitializer(gv, init);
    LLVMSetGlobalConstant(gv, 1);
    LLVMSetLinkage(gv, LLVMPrivateLinkage);
    LLVMSetUnnamedAddress(gv, LLVMGlobalUnnamedAddr);
    return gv;
}

static LLVMValueRef const_array(cg *c, LLVMTypeRef elem, LLVMValueRef *items, int n, const char *name) {
    if (n == 0) return LLVMConstNull(c->ptr);
    LLVMValueRef init = LLVMConstArray2(elem, items, (uint64_t)n);
    LLVMValueRef gv = LLVMAddGlobal(c->mod, LLVMTypeOf(init), name);
    LLVMSetInitializer(gv, init);
    LLVMSetGlobalConstant(gv, 1);
    LLVMSetLinkage(gv, LLVMPrivateLinkage);
    return gv;
}

static LLVMTypeRef tensor_type(cg *c) {
    LLVMTypeRef f[] = {c->ptr, c->i64, c->i64, LLVMArrayType2(c->i64, 8), c->i64, c->i64, c->i64, c->i64, c->i64};
    return LLVMStructTypeInContext(c->ctx, f, 9, 0);
}

static LLVMValueRef tensor_desc(cg *c, const char *name, pn_dtype dt, const pn_shape *s, int64_t offset, int64_t init,
                                int64_t fan_in, int64_t trainable, int64_t limit) {
    LLVMValueRef dims[8];
    for (int i = 0; i < 8; i++) dims[i] = cg_i64(c, i < s->rank ? s->d[i] : 0);
    LLVMValueRef f[] = {str(c, name), cg_i64(c, dt == PN_I32), cg_i64(c, s->rank), LLVMConstArray2(c->i64, dims, 8),
                        cg_i64(c, offset), cg_i64(c, init), cg_i64(c, fan_in), cg_i64(c, trainable), cg_i64(c, limit)};
    return LLVMConstNamedStruct(tensor_type(c), f, 9);
}

enum { INIT_KAIMING, INIT_BIAS, INIT_ONES, INIT_ZEROS, INIT_NORMAL }; /* PNETRT_INIT_* */

static void param_init(const pn_graph *g, const pn_node *n, int k, int64_t *init, int64_t *fan_in) {
    const char *s = n->params[k].suffix;
    *fan_in = 0;
    switch (n->op) {
    case PN_OP_DENSE:
    case PN_OP_CONV2D:
        *fan_in = 1;
        for (int d = 1; d < n->params[0].shape.rank; d++) *fan_in *= n->params[0].shape.d[d];
        *init = strcmp(s, "weight") == 0 ? INIT_KAIMING : INIT_BIAS;
        return;
    case PN_OP_EMBEDDING: *init = INIT_NORMAL; return;
    default:
        *init = strcmp(s, "weight") == 0 || strcmp(s, "running_var") == 0 ? INIT_ONES : INIT_ZEROS;
        (void)g;
        return;
    }
}

static int64_t id_limit(const pn_graph *g, int input) {
    int64_t lim = 0;
    for (int i = 0; i < g->nnodes; i++) {
        const pn_node *n = &g->nodes[i];
        if (n->op != PN_OP_EMBEDDING || !g->plan.live[i]) continue;
        int src = n->in[0];
        while (g->nodes[src].op == PN_OP_RESHAPE || g->nodes[src].op == PN_OP_FLATTEN) src = g->nodes[src].in[0];
        if (src == input && (lim == 0 || n->ia[PN_EMB_VOCAB] < lim)) lim = n->ia[PN_EMB_VOCAB];
    }
    return lim;
}

/* The training descriptor, or a null pointer. */
static LLVMValueRef gen_train_desc(cg *c, const pn_train_fns *fns) {
    const pn_graph *g = c->g;
    const pn_tplan *t = &g->tplan;
    if (!t->present) return LLVMConstNull(c->ptr);
    LLVMValueRef *ins = pn_xcalloc((size_t)g->nnodes + 1, sizeof *ins);
    int nin = 0;
    for (int i = 0; i < g->nnodes; i++) {
        const pn_node *n = &g->nodes[i];
        if (n->op == PN_OP_INPUT && (n->flags & PN_NODE_TRAIN)) ins[nin++] = tensor_desc(c, n->name, n->dtype, &n->shape, 0, 0, 0, 0, 0);
    }
    const pn_train *tr = &g->train;
    const pn_node *loss = &g->nodes[t->loss];
    LLVMTypeRef dbl = LLVMDoubleTypeInContext(c->ctx);
    LLVMValueRef f[] = {
        cg_i64(c, nin), const_array(c, tensor_type(c), ins, nin, ".train_inputs"), cg_i64(c, t->chunk),
        cg_i64(c, fns->nseg), fns->segs, fns->syncs, fns->prep, fns->update, fns->eval, cg_i64(c, t->sample_bytes),
        cg_i64(c, t->stat_floats), cg_i64(c, t->global_floats),
        cg_i64(c, g->plan.param_floats * (tr->opt == PN_OPT_ADAM ? 2 : 1)), cg_i64(c, tr->opt == PN_OPT_ADAM),
        LLVMConstReal(dbl, tr->lr), LLVMConstReal(dbl, tr->momentum), LLVMConstReal(dbl, tr->weight_decay),
        LLVMConstReal(dbl, tr->beta1), LLVMConstReal(dbl, tr->beta2), LLVMConstReal(dbl, tr->eps), cg_i64(c, tr->nesterov),
        cg_i64(c, tr->batch), cg_i64(c, tr->epochs), cg_i64(c, tr->seed),
        cg_i64(c, loss->op == PN_OP_CROSS_ENTROPY ? 1 : 2),
        cg_i64(c, loss->op == PN_OP_CROSS_ENTROPY ? g->nodes[loss->in[0]].shape.d[1] : 0),
        cg_i64(c, fns->nstages), fns->stage_fwd, fns->stage_bwd};
    LLVMValueRef init = LLVMConstStructInContext(c->ctx, f, (unsigned)(sizeof f / sizeof f[0]), 0);
    char *name = pn_xasprintf("%s__train", c->px);
    LLVMValueRef gv = LLVMAddGlobal(c->mod, LLVMTypeOf(init), name);
    free(name);
    LLVMSetInitializer(gv, init);
    LLVMSetGlobalConstant(gv, 1);
    LLVMSetLinkage(gv, LLVMPrivateLinkage);
    free(ins);
    return gv;
}

static void gen_desc(cg *c, LLVMValueRef forward, LLVMValueRef stages, LLVMValueRef prepare, const pn_cg_options *opt,
                     const char *target, LLVMValueRef train) {
    const pn_graph *g = c->g;
    const pn_plan *p = &g->plan;
    int nn = g->nnodes;
    LLVMValueRef *ins = pn_xcalloc((size_t)nn + 1, sizeof *ins), *outs = pn_xcalloc((size_t)g->noutputs + 1, sizeof *outs);
    LLVMValueRef *prm = pn_xcalloc((size_t)nn * PN_MAX_PARAMS + 1, sizeof *prm), *lay = pn_xcalloc((size_t)nn + 1, sizeof *lay);
    int nin = 0, np = 0, nl = 0;
    char buf[512]; /* a shape: at most 8 dims of 20 digits */
    for (int i = 0; i < nn; i++) {
        const pn_node *n = &g->nodes[i];
        if (n->op == PN_OP_INPUT && !(n->flags & PN_NODE_TRAIN))
            ins[nin++] = tensor_desc(c, n->name, n->dtype, &n->shape, 0, 0, 0, 0, id_limit(g, i));
        int64_t off = p->param_offset[i];
        for (int k = 0; k < n->nparams; k++) {
            char *pname = pn_xasprintf("%s.%s", n->name, n->params[k].suffix);
            int64_t init, fan_in;
            param_init(g, n, k, &init, &fan_in);
            prm[np++] = tensor_desc(c, pname, PN_F32, &n->params[k].shape, off, init, fan_in, n->params[k].trainable, 0);
            free(pname);
            off += (pn_shape_sample_elems(&n->params[k].shape) + 15) / 16 * 16;
        }
        if (n->flags & PN_NODE_TRAIN) continue;
        char *inputs = pn_xstrdup("");
        for (int k = 0; k < n->ninputs; k++) {
            char *more = pn_xasprintf("%s%s%s", inputs, k ? ", " : "", g->nodes[n->in[k]].name);
            free(inputs);
            inputs = more;
        }
        /* The memory plan lists each stored value under the node that produces it: the last
         * link of a fused chain (the pool of a pooled conv, say), not the kernel's node. */
        const pn_mem *m = &p->mem[i];
        bool stored = p->live[i] && p->fuse_next[i] < 0 && m->kind == PN_MEM_ARENA;
        LLVMValueRef f[] = {str(c, n->name), str(c, pn_ops[n->op].name), str(c, pn_shape_str(n->dtype, &n->shape, buf, sizeof buf)),
                            str(c, inputs), cg_i64(c, pn_node_param_count(n)), cg_i64(c, pn_node_flops(g, n)),
                            cg_i64(c, n->stage), cg_i64(c, n->shard),
                            cg_i64(c, stored ? m->offset : -1), cg_i64(c, stored ? m->bytes : 0)};
        lay[nl++] = LLVMConstStructInContext(c->ctx, f, 10, 0);
        free(inputs);
    }
    for (int k = 0; k < g->noutputs; k++) {
        const pn_node *n = &g->nodes[g->outputs[k].node];
        outs[k] = tensor_desc(c, g->outputs[k].name, n->dtype, &n->shape, 0, 0, 0, 0, 0);
    }
    LLVMTypeRef lt[10];
    for (int k = 0; k < 10; k++) lt[k] = k < 4 ? c->ptr : c->i64;
    LLVMTypeRef layer_t = LLVMStructTypeInContext(c->ctx, lt, 10, 0);
    LLVMValueRef embedded = LLVMConstNull(c->ptr);
    if (opt->weights) {
        LLVMValueRef init = LLVMConstStringInContext(c->ctx, (const char *)opt->weights,
                                                     (unsigned)(p->param_floats * 4), 1);
        char *name = pn_xasprintf("%s__weights", c->px);
        embedded = LLVMAddGlobal(c->mod, LLVMTypeOf(init), name);
        free(name);
        LLVMSetInitializer(embedded, init);
        LLVMSetGlobalConstant(embedded, 1);
        LLVMSetLinkage(embedded, LLVMPrivateLinkage);
        LLVMSetAlignment(embedded, 64);
    }
    /* The passes only mark nodes, so this is the report pnetc --report prints for the source. */
    char *report = pn_graph_report_text(g);
    LLVMValueRef f[] = {
        cg_i64(c, PNETRT_ABI), str(c, g->name), cg_i64(c, nin), cg_i64(c, g->noutputs), cg_i64(c, np), cg_i64(c, nl),
        const_array(c, tensor_type(c), ins, nin, ".inputs"), const_array(c, tensor_type(c), outs, g->noutputs, ".outputs"),
        const_array(c, tensor_type(c), prm, np, ".params"), const_array(c, layer_t, lay, nl, ".layers"),
        cg_i64(c, p->param_floats), cg_i64(c, c->prepared_floats), embedded, cg_i64(c, p->arena_sample_bytes),
        cg_i64(c, p->arena_fixed_bytes), cg_i64(c, p->chunk), cg_i64(c, c->scratch_bytes), forward, stages, prepare, cg_i64(c, g->nstages),
        cg_i64(c, g->has_shard_batch ? g->replicas : 0), cg_i64(c, g->microbatches), cg_i64(c, g->schedule), str(c, target), train, str(c, report)};
    free(report);
    int nf = (int)(sizeof f / sizeof f[0]);
    LLVMValueRef init = LLVMConstStructInContext(c->ctx, f, (unsigned)nf, 0);
    char *name = pn_xasprintf("%s__desc", c->px);
    LLVMValueRef desc = LLVMAddGlobal(c->mod, LLVMTypeOf(init), name);
    free(name);
    LLVMSetInitializer(desc, init);
    LLVMSetGlobalConstant(desc, 1);
    LLVMSetLinkage(desc, LLVMPrivateLinkage);
    free(ins);
    free(outs);
    free(prm);
    free(lay);
}

/* ---- the embedding API and main ----------------------------------------------------------- */

static LLVMValueRef begin_fn(cg *c, const char *suffix, LLVMTypeRef ret, LLVMTypeRef *args, unsigned n) {
    char *name = pn_xasprintf("%s%s", c->px, suffix);
    c->fn = LLVMAddFunction(c->mod, name, LLVMFunctionType(ret, args, n, 0));
    free(name);
    LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, c->fn, "entry"));
    return c->fn;
}

/* int PX_SUFFIX(args...) { return TARGET(args...); } */
static void forward_to(cg *c, const char *suffix, const char *target, LLVMTypeRef *args, unsigned n) {
    LLVMValueRef fn = begin_fn(c, suffix, c->i32, args, n);
    LLVMValueRef rt = declare(c, target, c->i32, args, n), vals[8];
    for (unsigned i = 0; i < n; i++) vals[i] = LLVMGetParam(fn, i);
    LLVMBuildRet(c->b, LLVMBuildCall2(c->b, LLVMFunctionType(c->i32, args, n, 0), rt, vals, n, ""));
}

static void gen_api(cg *c) {
    char *name = pn_xasprintf("%s__desc", c->px);
    LLVMValueRef desc = LLVMGetNamedGlobal(c->mod, name);
    free(name);
    const pn_graph *g = c->g;
    /* int px_create(px **out, const char *weights) */
    LLVMTypeRef a2[2] = {c->ptr, c->ptr};
    LLVMValueRef fn = begin_fn(c, "_create", c->i32, a2, 2);
    LLVMTypeRef ct[3] = {c->ptr, c->ptr, c->ptr};
    LLVMValueRef rt = declare(c, "pnetrt_create", c->i32, ct, 3);
    LLVMValueRef args[3] = {LLVMGetParam(fn, 0), desc, LLVMGetParam(fn, 1)};
    LLVMBuildRet(c->b, LLVMBuildCall2(c->b, LLVMFunctionType(c->i32, ct, 3, 0), rt, args, 3, ""));
    /* int px_infer(px *m, int64_t batch, inputs..., outputs...) */
    int nin = 0;
    for (int i = 0; i < g->nnodes; i++) nin += g->nodes[i].op == PN_OP_INPUT && !(g->nodes[i].flags & PN_NODE_TRAIN);
    int na = 2 + nin + g->noutputs;
    LLVMTypeRef *at = pn_xcalloc((size_t)na, sizeof *at);
    at[0] = c->ptr;
    at[1] = c->i64;
    for (int i = 2; i < na; i++) at[i] = c->ptr;
    fn = begin_fn(c, "_infer", c->i32, at, (unsigned)na);
    LLVMValueRef ins = LLVMBuildArrayAlloca(c->b, c->ptr, cg_i64(c, nin ? nin : 1), "ins");
    LLVMValueRef outs = LLVMBuildArrayAlloca(c->b, c->ptr, cg_i64(c, g->noutputs ? g->noutputs : 1), "outs");
    for (int i = 0; i < nin + g->noutputs; i++) {
        LLVMValueRef idx = cg_i64(c, i < nin ? i : i - nin);
        LLVMValueRef slot = LLVMBuildInBoundsGEP2(c->b, c->ptr, i < nin ? ins : outs, &idx, 1, "");
        LLVMBuildStore(c->b, LLVMGetParam(fn, (unsigned)i + 2), slot);
    }
    LLVMTypeRef it[4] = {c->ptr, c->i64, c->ptr, c->ptr};
    rt = declare(c, "pnetrt_infer", c->i32, it, 4);
    LLVMValueRef iargs[4] = {LLVMGetParam(fn, 0), LLVMGetParam(fn, 1), ins, outs};
    LLVMBuildRet(c->b, LLVMBuildCall2(c->b, LLVMFunctionType(c->i32, it, 4, 0), rt, iargs, 4, ""));
    free(at);
    /* Setters, save and load: each passes its arguments on to the libpnetrt function. */
    LLVMTypeRef pi[2] = {c->ptr, c->i32}, pp[2] = {c->ptr, c->ptr}, ppi[3] = {c->ptr, c->ptr, c->i32};
    forward_to(c, "_set_threads", "pnetrt_set_threads", pi, 2);
    forward_to(c, "_set_replicas", "pnetrt_set_replicas", pi, 2);
    forward_to(c, "_set_microbatches", "pnetrt_set_microbatches", pi, 2);
    forward_to(c, "_set_stage_threads", "pnetrt_set_stage_threads", ppi, 3);
    forward_to(c, "_set_schedule", "pnetrt_set_schedule", pp, 2);
    forward_to(c, "_save", "pnetrt_save_file", pp, 2);
    forward_to(c, "_load", "pnetrt_load_file", pp, 2);
    if (g->tplan.present) {
        /* int px_train_step(px *m, int64_t batch, inputs..., training inputs..., float *loss) */
        int ntr = 0;
        for (int i = 0; i < g->nnodes; i++) ntr += g->nodes[i].op == PN_OP_INPUT && (g->nodes[i].flags & PN_NODE_TRAIN);
        int nt = 2 + nin + ntr + 1;
        LLVMTypeRef *tt = pn_xcalloc((size_t)nt, sizeof *tt);
        tt[0] = c->ptr;
        tt[1] = c->i64;
        for (int i = 2; i < nt; i++) tt[i] = c->ptr;
        fn = begin_fn(c, "_train_step", c->i32, tt, (unsigned)nt);
        LLVMValueRef tins = LLVMBuildArrayAlloca(c->b, c->ptr, cg_i64(c, nin + ntr), "ins");
        for (int i = 0; i < nin + ntr; i++) {
            LLVMValueRef idx = cg_i64(c, i);
            LLVMBuildStore(c->b, LLVMGetParam(fn, (unsigned)i + 2), LLVMBuildInBoundsGEP2(c->b, c->ptr, tins, &idx, 1, ""));
        }
        LLVMTypeRef trt[4] = {c->ptr, c->i64, c->ptr, c->ptr};
        rt = declare(c, "pnetrt_train_step", c->i32, trt, 4);
        LLVMValueRef targs[4] = {LLVMGetParam(fn, 0), LLVMGetParam(fn, 1), tins, LLVMGetParam(fn, (unsigned)nt - 1)};
        LLVMBuildRet(c->b, LLVMBuildCall2(c->b, LLVMFunctionType(c->i32, trt, 4, 0), rt, targs, 4, ""));
        free(tt);
        /* int px_set_lr(px *m, double lr) */
        LLVMTypeRef lt[2] = {c->ptr, LLVMDoubleTypeInContext(c->ctx)};
        fn = begin_fn(c, "_set_lr", c->i32, lt, 2);
        rt = declare(c, "pnetrt_set_lr", c->i32, lt, 2);
        LLVMValueRef largs[2] = {LLVMGetParam(fn, 0), LLVMGetParam(fn, 1)};
        LLVMBuildRet(c->b, LLVMBuildCall2(c->b, LLVMFunctionType(c->i32, lt, 2, 0), rt, largs, 2, ""));
    }
    /* const char *px_last_error(const px *m); void px_destroy(px *m) */
    LLVMTypeRef pt[1] = {c->ptr};
    fn = begin_fn(c, "_last_error", c->ptr, pt, 1);
    rt = declare(c, "pnetrt_last_error", c->ptr, pt, 1);
    LLVMValueRef p0 = LLVMGetParam(fn, 0);
    LLVMBuildRet(c->b, LLVMBuildCall2(c->b, LLVMFunctionType(c->ptr, pt, 1, 0), rt, &p0, 1, ""));
    fn = begin_fn(c, "_destroy", c->vd, pt, 1);
    rt = declare(c, "pnetrt_destroy", c->vd, pt, 1);
    p0 = LLVMGetParam(fn, 0);
    LLVMBuildCall2(c->b, LLVMFunctionType(c->vd, pt, 1, 0), rt, &p0, 1, "");
    LLVMBuildRetVoid(c->b);
    /* const void *px_descriptor(void): for tools built on libpnetrt. */
    fn = begin_fn(c, "_descriptor", c->ptr, NULL, 0);
    LLVMBuildRet(c->b, desc);
}

static void gen_main(cg *c) {
    char *name = pn_xasprintf("%s__desc", c->px);
    LLVMValueRef desc = LLVMGetNamedGlobal(c->mod, name);
    free(name);
    LLVMTypeRef mt[2] = {c->i32, c->ptr};
    c->fn = LLVMAddFunction(c->mod, "main", LLVMFunctionType(c->i32, mt, 2, 0));
    LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, c->fn, "entry"));
    LLVMTypeRef rt_t[3] = {c->ptr, c->i32, c->ptr};
    LLVMValueRef rt = declare(c, "pnetrt_main", c->i32, rt_t, 3);
    LLVMValueRef args[3] = {desc, LLVMGetParam(c->fn, 0), LLVMGetParam(c->fn, 1)};
    LLVMBuildRet(c->b, LLVMBuildCall2(c->b, LLVMFunctionType(c->i32, rt_t, 3, 0), rt, args, 3, ""));
}

/* ---- target, passes, output --------------------------------------------------------------- */

static bool cpu_has_avx512(const char *cpu, const char *features) {
    if (features && strstr(features, "+avx512f")) return true;
    static const char *const names[] = {"x86-64-v4", "skylake-avx512", "cascadelake", "cooperlake", "cannonlake",
                                        "icelake-client", "icelake-server", "tigerlake", "rocketlake", "sapphirerapids",
                                        "emeraldrapids", "graniterapids", "graniterapids-d", "znver4", "znver5", "knl", "knm"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (cpu && strcmp(cpu, names[i]) == 0) return true;
    return false;
}

bool pn_codegen(const pn_graph *g, const pn_cg_options *opt, cg *c, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    c->err_node = -1;
    LLVMInitializeAllTargetInfos();
    LLVMInitializeAllTargets();
    LLVMInitializeAllTargetMCs();
    LLVMInitializeAllAsmPrinters();
    char *triple = opt->triple ? LLVMNormalizeTargetTriple(opt->triple) : LLVMGetDefaultTargetTriple();
    bool host = !opt->triple || strcmp(opt->triple, LLVMGetDefaultTargetTriple()) == 0;
    /* --cpu native: the host's CPU and features, as when no CPU is named. */
    bool native = opt->cpu && strcmp(opt->cpu, "native") == 0;
    const char *named = native ? NULL : opt->cpu;
    if (native && !host) {
        snprintf(err, errlen, "--cpu native needs the host's target, not '%s'", triple);
        LLVMDisposeMessage(triple);
        return false;
    }
    char *cpu = named ? strdup(named) : host ? LLVMGetHostCPUName() : strdup("generic");
    char *features = !named && host ? LLVMGetHostCPUFeatures() : strdup("");
    LLVMTargetRef target;
    char *msg = NULL;
    bool bad = LLVMGetTargetFromTriple(triple, &target, &msg);
    if (bad) snprintf(err, errlen, "unknown target '%s': %s", triple, msg ? msg : "");
    else if (named) bad = !pn_target_check_cpu(triple, named, err, errlen);
    if (bad) {
        LLVMDisposeMessage(msg);
        LLVMDisposeMessage(triple);
        free(cpu);
        free(features);
        return false;
    }
    LLVMCodeGenOptLevel lvl = opt->opt_level <= 0 ? LLVMCodeGenLevelNone : opt->opt_level == 1 ? LLVMCodeGenLevelLess
                            : opt->opt_level == 2 ? LLVMCodeGenLevelDefault : LLVMCodeGenLevelAggressive;
    c->tm = LLVMCreateTargetMachine(target, triple, cpu, features, lvl, LLVMRelocPIC, LLVMCodeModelDefault);
    if (!c->tm) {
        snprintf(err, errlen, "cannot create a target machine for '%s' (cpu '%s')", triple, cpu);
        LLVMDisposeMessage(triple);
        free(cpu);
        free(features);
        return false;
    }
    c->g = g;
    c->px = g->name;
    c->wide_vectors = strstr(triple, "x86_64") && cpu_has_avx512(cpu, features);
    c->ctx = LLVMContextCreate();
    c->mod = LLVMModuleCreateWithNameInContext(g->name, c->ctx);
    LLVMSetTarget(c->mod, triple);
    LLVMTargetDataRef td = LLVMCreateTargetDataLayout(c->tm);
    char *layout = LLVMCopyStringRepOfTargetData(td);
    LLVMSetDataLayout(c->mod, layout);
    LLVMDisposeMessage(layout);
    LLVMDisposeTargetData(td);
    c->b = LLVMCreateBuilderInContext(c->ctx);
    c->i1 = LLVMInt1TypeInContext(c->ctx);
    c->i8 = LLVMInt8TypeInContext(c->ctx);
    c->i32 = LLVMInt32TypeInContext(c->ctx);
    c->i64 = LLVMInt64TypeInContext(c->ctx);
    c->f32 = LLVMFloatTypeInContext(c->ctx);
    c->ptr = LLVMPointerTypeInContext(c->ctx, 0);
    c->vd = LLVMVoidTypeInContext(c->ctx);
    c->x86 = strstr(triple, "x86_64") != NULL;
    plan_packing(c);
    LLVMValueRef stages;
    LLVMValueRef forward = gen_forward(c, &stages);
    LLVMValueRef prepare = gen_prepare(c);
    pn_train_fns fns = {0};
    LLVMValueRef segs;
    if (!cg_gen_training(c, &segs, &fns, err, errlen)) {
        LLVMDisposeMessage(triple);
        free(cpu);
        free(features);
        return false;
    }
    char *target_desc = pn_xasprintf("%s %s", triple, cpu);
    gen_desc(c, forward, stages, prepare, opt, target_desc, gen_train_desc(c, &fns));
    free(target_desc);
    gen_api(c);
    if (opt->emit_main) gen_main(c);
    LLVMDisposeMessage(triple);
    free(cpu);
    free(features);
    if (LLVMVerifyModule(c->mod, LLVMReturnStatusAction, &msg)) {
        snprintf(err, errlen, "internal error: invalid LLVM module: %.400s", msg);
        LLVMDisposeMessage(msg);
        return false;
    }
    LLVMDisposeMessage(msg);
    LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
    char passes[32];
    snprintf(passes, sizeof passes, "default<O%d>", opt->opt_level < 0 ? 0 : opt->opt_level > 3 ? 3 : opt->opt_level);
    LLVMErrorRef e = LLVMRunPasses(c->mod, passes, c->tm, po);
    LLVMDisposePassBuilderOptions(po);
    if (e) {
        char *m = LLVMGetErrorMessage(e);
        snprintf(err, errlen, "internal error: optimisation failed: %s", m);
        LLVMDisposeErrorMessage(m);
        return false;
    }
    return true;
}

bool pn_codegen_emit(cg *c, pn_emit_kind kind, const char *path, char *err, size_t errlen) {
    char *msg = NULL;
    if (kind == PN_EMIT_LLVM) {
        if (LLVMPrintModuleToFile(c->mod, path, &msg)) {
            snprintf(err, errlen, "cannot write '%s': %s", path, msg);
            LLVMDisposeMessage(msg);
            return false;
        }
        return true;
    }
    if (LLVMTargetMachineEmitToFile(c->tm, c->mod, path, kind == PN_EMIT_ASM ? LLVMAssemblyFile : LLVMObjectFile, &msg)) {
        snprintf(err, errlen, "cannot write '%s': %s", path, msg);
        LLVMDisposeMessage(msg);
        return false;
    }
    return true;
}

void pn_codegen_free(cg *c) {
    free(c->pack_offset);
    free(c->pack_width);
    free(c->fold_bias);
    if (c->b) LLVMDisposeBuilder(c->b);
    if (c->mod) LLVMDisposeModule(c->mod);
    if (c->ctx) LLVMContextDispose(c->ctx);
    if (c->tm) LLVMDisposeTargetMachine(c->tm);
    memset(c, 0, sizeof *c);
}
