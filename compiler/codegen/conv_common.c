/* Helpers shared by the conv kernels (conv.c, conv_pool.c): the stores of a lane grid into NCHW
 * planes, the constant tables of B's row offsets, and a conv's bias. */
#include "cg.h"
#include "../support/util.h"

#include <stdlib.h>

static int64_t align16(int64_t v) { return (v + 15) / 16 * 16; }

void cg_grid_out_init(cg *c, cg_grid_out *go, LLVMValueRef q0, int64_t G, int64_t ow, int64_t qmax, int NV) {
    int VW, MR, nv;
    cg_gemm_shape(c, &VW, &MR, &nv);
    go->nv = NV, go->vw = VW, go->q0 = q0, go->G = G, go->ow = ow;
    go->rows = (int)((VW + G - 1) / G + 1);
    PN_ASSERT(go->rows <= CG_GRID_MAX_ROWS);
    for (int q = 0; q < NV; q++) {
        LLVMValueRef qs = LLVMBuildAdd(c->b, q0, cg_i64(c, q * VW), "");
        LLVMValueRef qv = LLVMBuildAdd(c->b, cg_splat(c, qs, VW), cg_lane_index(c, VW), "");
        LLVMValueRef rv = LLVMBuildUDiv(c->b, qv, cg_splat(c, cg_i64(c, G), VW), "");
        LLVMValueRef colv = LLVMBuildSub(c->b, qv, LLVMBuildMul(c->b, rv, cg_splat(c, cg_i64(c, G), VW), ""), "");
        LLVMValueRef ok = LLVMBuildAnd(c->b, LLVMBuildICmp(c->b, LLVMIntULT, colv, cg_splat(c, cg_i64(c, ow), VW), ""),
                                       LLVMBuildICmp(c->b, LLVMIntULT, qv, cg_splat(c, cg_i64(c, qmax), VW), ""), "");
        LLVMValueRef r0v = LLVMBuildUDiv(c->b, qs, cg_i64(c, G), "");
        for (int t = 0; t < go->rows; t++) {
            LLVMValueRef rt = LLVMBuildAdd(c->b, r0v, cg_i64(c, t), "");
            go->lanes_row[q][t] = LLVMBuildAnd(c->b, ok, LLVMBuildICmp(c->b, LLVMIntEQ, rv, cg_splat(c, rt, VW), ""), "");
        }
    }
}

/* Stores vector j of the panel into the output plane (rows of ow floats). */
void cg_grid_out_store(cg *c, const cg_grid_out *go, int j, LLVMValueRef v, LLVMValueRef plane) {
    LLVMValueRef qs = LLVMBuildAdd(c->b, go->q0, cg_i64(c, j * go->vw), "");
    LLVMValueRef r0v = LLVMBuildUDiv(c->b, qs, cg_i64(c, go->G), "");
    for (int t = 0; t < go->rows; t++) {
        /* Lanes of row r sit at out[r*ow + (q - r*G)] = out[q - r*(G - ow)]. */
        LLVMValueRef rt = LLVMBuildAdd(c->b, r0v, cg_i64(c, t), "");
        LLVMValueRef at = LLVMBuildSub(c->b, qs, LLVMBuildMul(c->b, rt, cg_i64(c, go->G - go->ow), ""), "");
        LLVMValueRef bits = LLVMBuildBitCast(c->b, go->lanes_row[j][t], LLVMIntTypeInContext(c->ctx, (unsigned)go->vw), "");
        cg_if any;
        cg_if_begin(c, &any, LLVMBuildICmp(c->b, LLVMIntNE, bits, LLVMConstNull(LLVMTypeOf(bits)), ""));
        cg_masked_store(c, v, LLVMBuildGEP2(c->b, c->f32, plane, &at, 1, ""), go->lanes_row[j][t]);
        cg_if_end(c, &any);
    }
}

/* A private constant i64 table of n offsets (of B's rows) for node's kernel; frees ov. */
LLVMValueRef cg_offset_table(cg *c, int node, LLVMValueRef *ov, int64_t n) {
    LLVMValueRef init_tab = LLVMConstArray2(c->i64, ov, (uint64_t)n);
    free(ov);
    char *name = pn_xasprintf("%s__k%d_offsets", c->px, node);
    LLVMValueRef offs = LLVMAddGlobal(c->mod, LLVMTypeOf(init_tab), name);
    free(name);
    LLVMSetInitializer(offs, init_tab);
    LLVMSetGlobalConstant(offs, 1);
    LLVMSetLinkage(offs, LLVMPrivateLinkage);
    return offs;
}

/* The bias of conv node (its own, or a folded batchnorm's), or NULL. */
LLVMValueRef cg_conv_bias(cg *c, int node) {
    const pn_node *nd = &c->g->nodes[node];
    if (cg_folded_bn(c, node) >= 0) /* folded batchnorm: the prepared bias */
        return cg_gep(c, c->params, cg_i64(c, c->fold_bias[node] - c->g->plan.param_offset[node]));
    int64_t K = nd->params[0].shape.d[1] * nd->ia[PN_CONV_KH] * nd->ia[PN_CONV_KW]; /* in_channels / groups */
    return nd->ia[PN_CONV_BIAS] ? cg_gep(c, c->params, cg_i64(c, align16(nd->ia[PN_CONV_OUT] * K))) : NULL;
}
