/* conv2d with a maxpool2d computed in the same kernel (pass_fuse_pool): the conv's outputs under
 * every position of a pooling window are accumulated at once and only their maximum is stored.
 * Two layouts of the register tile: lanes over pooled pixels, reading the input rearranged into
 * phase planes, or lanes over output channels, over weights packed by the prepare function. */
#include "cg.h"
#include "../support/util.h"

#include <stdlib.h>

/* The layout and tile of a pooled conv. Lanes over pooled pixels (the grid of phase planes):
 * mr channels by nv vectors of lanes. Lanes over channels: px pooled pixels by nv vectors of
 * channels. Either way every window position is accumulated at once, so the tile holds
 * rows x nv x nwin accumulators, and each broadcast is shared by the nwin positions (pixel
 * lanes) or each weight vector by all rows (channel lanes). */
typedef struct pool_tile {
    bool channel_lanes;
    int nv, mr, px;
} pool_tile;

/* Scratch a channel-lane kernel may use for its pooled outputs before they are transposed. */
enum { CHANNEL_LANES_MAX_FLOATS = 16 * 1024 };

/* Estimated cycles of one tile's k step: the slowest of FMA issue (2 per cycle), FMA latency
 * (4 cycles per chain) and loads (about 2.5 per cycle). */
static double step_cycles(int nacc, int nloads) {
    double t = nacc / 2.0;
    if (t < 4) t = 4;
    if (t < nloads / 2.5) t = nloads / 2.5;
    return t;
}

/* Picks the layout and tile by estimated cycles per sample: the k steps of every tile, its
 * epilogue (bias, activation and maximum per window position, and its stores) and, for channel
 * lanes, the transposition into NCHW. Ties go to the larger tile. */
static pool_tile pool_tile_of(const cg *c, int node, int pool) {
    const pn_node *nd = &c->g->nodes[node], *pl = &c->g->nodes[pool];
    pn_pool_grid pg = c->g->plan.pool_grid[node]; /* as pass_fuse_pool decided */
    int VW, MR, NV;
    cg_gemm_shape(c, &VW, &MR, &NV);
    int64_t OC = nd->ia[PN_CONV_OUT], K = c->g->nodes[nd->in[0]].shape.d[1] * nd->ia[PN_CONV_KH] * nd->ia[PN_CONV_KW];
    int64_t PIX = pl->shape.d[2] * pl->shape.d[3];
    int nwin = (int)(pl->ia[PN_POOL_SH] * pl->ia[PN_POOL_SW]);
    int budget = c->x86 && !c->wide_vectors ? 12 : 24; /* accumulators, of 16 or 32 vector registers */
    int rows_per_vec = (int)((VW + pg.cols - 1) / pg.cols + 1);
    pool_tile best = {0};
    double best_cost = -1;
    for (int nv = 1; nv * nwin <= 8; nv++)
        for (int mr = 1; mr * nv * nwin <= budget && mr <= 16; mr++) {
            /* Where masks take vector registers (AVX2: 16 in all), they count too (spill_test.py). */
            if (cg_masks_take_vregs(c) && mr > cg_tile_rows_max(c, nv * nwin, nv)) break;
            double tiles = (double)((pg.lanes + nv * VW - 1) / (nv * VW)) * (double)((OC + mr - 1) / mr);
            double cost = tiles * ((double)K * step_cycles(mr * nv * nwin, mr + nv * nwin) + mr * nv * (3.0 * nwin + rows_per_vec) / 2);
            if (best_cost < 0 || cost < best_cost * (1 - 1e-9) || (cost <= best_cost * (1 + 1e-9) && mr * nv > best.mr * best.nv))
                best_cost = cost, best = (pool_tile){false, nv, mr, 0};
        }
    /* Channel lanes read the input directly: no padding, and the pooled block must fit the
     * scratch. */
    if (nd->ia[PN_CONV_PH] != 0 || nd->ia[PN_CONV_PW] != 0) return best;
    for (int nv = 1; nv <= 8; nv++)
        for (int px = 1; px * nwin * nv <= budget && px * nwin <= 16; px++) {
            int64_t ntile = (PIX + px - 1) / px, ocp = (OC + nv * VW - 1) / (nv * VW) * nv * VW;
            if (ntile * px * ocp > CHANNEL_LANES_MAX_FLOATS) continue;
            double tiles = (double)ntile * (double)(ocp / (nv * VW));
            double cost = tiles * ((double)K * step_cycles(px * nwin * nv, px * nwin + nv) + px * nv * (3.0 * nwin + 1) / 2) +
                          (double)(PIX * OC);
            if (cost < best_cost * (1 - 1e-9) || (cost <= best_cost * (1 + 1e-9) && px * nv > best.mr * best.nv))
                best_cost = cost, best = (pool_tile){true, nv, px, px};
        }
    return best;
}

int64_t cg_conv_pack_width(const cg *c, int node) {
    int pool = cg_fused_pool(c, node);
    if (pool < 0) return 0;
    pool_tile t = pool_tile_of(c, node, pool);
    int VW, MR, NV;
    cg_gemm_shape(c, &VW, &MR, &NV);
    return t.channel_lanes ? (int64_t)t.nv * VW : 0;
}

/* The phase planes of one sample x [C][H][W] into dst: plane (ch, a, b) holds the padded input's
 * rows fh*i + a and columns fw*j + b for i < rows, j < cols (zero outside the image). For fw = 2
 * a row is two masked vector loads and an even/odd shuffle per VW columns; otherwise scalar. */
static void gen_phase_planes(cg *c, int node, const pn_pool_grid *pg, LLVMValueRef x, LLVMValueRef dst) {
    const pn_node *nd = &c->g->nodes[node];
    const pn_shape *xs = &c->g->nodes[nd->in[0]].shape;
    int64_t C = xs->d[1], H = xs->d[2], W = xs->d[3], PH = nd->ia[PN_CONV_PH], PW = nd->ia[PN_CONV_PW];
    int64_t F = pg->fh, Fw = pg->fw, R = pg->rows, G = pg->cols, PL = R * G;
    int VW, MR, NV;
    cg_gemm_shape(c, &VW, &MR, &NV);
    LLVMTypeRef vt = LLVMVectorType(c->f32, (unsigned)VW);
    cg_loop lch;
    cg_loop_begin(c, &lch, cg_i64(c, 0), cg_i64(c, C * F), "ch_a");
    LLVMValueRef ch = LLVMBuildSDiv(c->b, lch.iv, cg_i64(c, F), ""), a = LLVMBuildSRem(c->b, lch.iv, cg_i64(c, F), "");
    LLVMValueRef plane0 = cg_gep(c, dst, LLVMBuildMul(c->b, lch.iv, cg_i64(c, Fw * PL), "")); /* plane (ch, a, 0) */
    cg_loop li;
    cg_loop_begin(c, &li, cg_i64(c, 0), cg_i64(c, R), "i");
    LLVMValueRef r = LLVMBuildSub(c->b, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, li.iv, cg_i64(c, F), ""), a, ""), cg_i64(c, PH), "");
    LLVMValueRef row_ok = LLVMBuildICmp(c->b, LLVMIntULT, r, cg_i64(c, H), "");
    LLVMValueRef rc = cg_smin(c, cg_smax(c, r, cg_i64(c, 0)), cg_i64(c, H - 1));
    LLVMValueRef xrow = cg_gep(c, x, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, ch, cg_i64(c, H * W), ""), LLVMBuildMul(c->b, rc, cg_i64(c, W), ""), ""));
    LLVMValueRef drow = cg_gep(c, plane0, LLVMBuildMul(c->b, li.iv, cg_i64(c, G), ""));
    if (Fw == 2) {
        LLVMValueRef even[64], odd[64];
        for (int l = 0; l < VW; l++) {
            even[l] = LLVMConstInt(c->i32, (unsigned long long)(2 * l), 0);
            odd[l] = LLVMConstInt(c->i32, (unsigned long long)(2 * l + 1), 0);
        }
        LLVMValueRef iv = cg_lane_index(c, VW), okv = cg_splat(c, row_ok, VW);
        cg_loop lj;
        cg_loop_begin(c, &lj, cg_i64(c, 0), cg_i64(c, (G + VW - 1) / VW), "j");
        LLVMValueRef j0 = LLVMBuildMul(c->b, lj.iv, cg_i64(c, VW), "");
        LLVMValueRef col0 = LLVMBuildSub(c->b, LLVMBuildMul(c->b, j0, cg_i64(c, 2), ""), cg_i64(c, PW), "");
        LLVMValueRef half[2];
        for (int h = 0; h < 2; h++) {
            LLVMValueRef col = LLVMBuildAdd(c->b, col0, cg_i64(c, h * VW), "");
            LLVMValueRef m = LLVMBuildAnd(c->b, okv, LLVMBuildICmp(c->b, LLVMIntULT, LLVMBuildAdd(c->b, cg_splat(c, col, VW), iv, ""),
                                                              cg_splat(c, cg_i64(c, W), VW), ""), "");
            half[h] = cg_masked_load(c, vt, LLVMBuildGEP2(c->b, c->f32, xrow, &col, 1, ""), m);
        }
        LLVMValueRef sm = cg_lanes_below(c, VW, j0, cg_i64(c, G));
        for (int b = 0; b < 2; b++) {
            LLVMValueRef v = LLVMBuildShuffleVector(c->b, half[0], half[1], LLVMConstVector(b ? odd : even, (unsigned)VW), "");
            cg_masked_store(c, v, cg_gep(c, drow, LLVMBuildAdd(c->b, cg_i64(c, b * PL), j0, "")), sm);
        }
        cg_loop_end(c, &lj);
    } else {
        cg_loop lj;
        cg_loop_begin(c, &lj, cg_i64(c, 0), cg_i64(c, G), "j");
        for (int64_t b = 0; b < Fw; b++) {
            LLVMValueRef col = LLVMBuildSub(c->b, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, lj.iv, cg_i64(c, Fw), ""), cg_i64(c, b), ""), cg_i64(c, PW), "");
            LLVMValueRef ok = LLVMBuildAnd(c->b, row_ok, LLVMBuildICmp(c->b, LLVMIntULT, col, cg_i64(c, W), ""), "");
            LLVMValueRef v = cg_load(c, xrow, cg_smin(c, cg_smax(c, col, cg_i64(c, 0)), cg_i64(c, W - 1)));
            cg_store(c, cg_select(c, ok, v, cg_f32(c, 0.0)), drow, LLVMBuildAdd(c->b, cg_i64(c, b * PL), lj.iv, ""));
        }
        cg_loop_end(c, &lj);
    }
    cg_loop_end(c, &li);
    cg_loop_end(c, &lch);
}

/* Starts the loop over this thread's work units (sample, group), where a sample's ngroups items
 * (tiles) are split into groups only when there are fewer samples than threads. Sets the unit's
 * sample and its items [lo, hi). */
static void sample_units(cg *c, LLVMValueRef N, int64_t items, cg_loop *u, LLVMValueRef *smp, LLVMValueRef *lo,
                         LLVMValueRef *hi) {
    LLVMValueRef N1 = cg_smax(c, N, cg_i64(c, 1));
    LLVMValueRef KG = LLVMBuildSDiv(c->b, LLVMBuildAdd(c->b, c->nth, LLVMBuildSub(c->b, N1, cg_i64(c, 1), ""), ""), N1, "");
    KG = cg_smin(c, cg_smax(c, KG, cg_i64(c, 1)), cg_i64(c, items));
    LLVMValueRef ulo, uhi;
    cg_split(c, LLVMBuildMul(c->b, N, KG, ""), &ulo, &uhi);
    cg_loop_begin(c, u, ulo, uhi, "unit");
    *smp = LLVMBuildSDiv(c->b, u->iv, KG, "s");
    LLVMValueRef kg = LLVMBuildSRem(c->b, u->iv, KG, "kg");
    *lo = LLVMBuildSDiv(c->b, LLVMBuildMul(c->b, kg, cg_i64(c, items), ""), KG, "");
    *hi = LLVMBuildSDiv(c->b, LLVMBuildMul(c->b, LLVMBuildAdd(c->b, kg, cg_i64(c, 1), ""), cg_i64(c, items), ""), KG, "");
}

/* Lanes over output channels: a tile is px pooled pixels (each nwin conv outputs, one per window
 * position) by nv vectors of channels. Row r's input is x + (its pixel's offset) + koff[k] with
 * koff[k] = ch*H*W + kh*W + kw, broadcast; the weights come packed as panels of nv*VW channels,
 * [k][channel] (the prepare function). The maxima go to the thread's scratch as [pixel][channel]
 * and are transposed into the NCHW output once the unit's pixels are done. */
static LLVMValueRef gen_channel_lanes(cg *c, int node, int pool, pool_tile tile) {
    const pn_node *nd = &c->g->nodes[node], *pl = &c->g->nodes[pool];
    const pn_shape *xs = &c->g->nodes[nd->in[0]].shape;
    int64_t C = xs->d[1], H = xs->d[2], W = xs->d[3];
    int64_t OC = nd->ia[PN_CONV_OUT], KH = nd->ia[PN_CONV_KH], KW = nd->ia[PN_CONV_KW];
    int64_t SH = nd->ia[PN_CONV_SH], SW = nd->ia[PN_CONV_SW], K = C * KH * KW;
    int64_t SPH = pl->ia[PN_POOL_SH], SPW = pl->ia[PN_POOL_SW], POW = pl->shape.d[3], PIX = pl->shape.d[2] * POW;
    int nwin = (int)(SPH * SPW), nv = tile.nv, px = tile.px, rows = px * nwin;
    int VW, MR, NV;
    cg_gemm_shape(c, &VW, &MR, &NV);
    int64_t NRc = (int64_t)nv * VW, NPc = (OC + NRc - 1) / NRc, OCp = NPc * NRc, NT = (PIX + px - 1) / px;
    LLVMValueRef *ov = pn_xmalloc(sizeof(LLVMValueRef) * (size_t)K);
    for (int64_t ch = 0, k = 0; ch < C; ch++)
        for (int64_t kh = 0; kh < KH; kh++)
            for (int64_t kw = 0; kw < KW; kw++) ov[k++] = cg_i64(c, ch * H * W + kh * W + kw);
    LLVMValueRef koffs = cg_offset_table(c, node, ov, K);
    int64_t need = NT * px * OCp * 4;
    if (need > c->scratch_bytes) c->scratch_bytes = need;
    LLVMTypeRef vt = LLVMVectorType(c->f32, (unsigned)VW);
    LLVMValueRef fn = cg_kernel_begin(c, node, 1);
    LLVMValueRef out = LLVMGetParam(fn, 0), in = LLVMGetParam(fn, 1), tmp = c->scratch;
    LLVMValueRef packed = cg_gep(c, c->params, cg_i64(c, c->pack_offset[node] - c->g->plan.param_offset[node]));
    LLVMValueRef bias = cg_conv_bias(c, node);
    LLVMValueRef N = pn_shape_batched(xs) ? c->n : cg_i64(c, xs->d[0]);
    cg_loop u;
    LLVMValueRef smp, t_lo, t_hi;
    sample_units(c, N, NT, &u, &smp, &t_lo, &t_hi); /* groups of pixel tiles */
    LLVMValueRef xs0 = cg_gep(c, in, LLVMBuildMul(c->b, smp, cg_i64(c, C * H * W), ""));
    cg_loop t;
    cg_loop_begin(c, &t, t_lo, t_hi, "tile");
    /* Row r = (pixel i, window position w): the input under its (kh, kw) = (0, 0) tap. */
    LLVMValueRef xrow[16];
    for (int i = 0; i < px; i++) {
        LLVMValueRef pix = cg_smin(c, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, t.iv, cg_i64(c, px), ""), cg_i64(c, i), ""), cg_i64(c, PIX - 1));
        LLVMValueRef ph = LLVMBuildSDiv(c->b, pix, cg_i64(c, POW), ""), pw = LLVMBuildSRem(c->b, pix, cg_i64(c, POW), "");
        for (int w = 0; w < nwin; w++) {
            LLVMValueRef oh = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, ph, cg_i64(c, SPH), ""), cg_i64(c, w / SPW), "");
            LLVMValueRef ow = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, pw, cg_i64(c, SPW), ""), cg_i64(c, w % SPW), "");
            xrow[i * nwin + w] = cg_gep(c, xs0, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, oh, cg_i64(c, SH * W), ""),
                                                             LLVMBuildMul(c->b, ow, cg_i64(c, SW), ""), ""));
        }
    }
    cg_loop p;
    cg_loop_begin(c, &p, cg_i64(c, 0), cg_i64(c, NPc), "panel");
    LLVMValueRef panel = cg_gep(c, packed, LLVMBuildMul(c->b, p.iv, cg_i64(c, K * NRc), ""));
    LLVMValueRef acc[16][8];
    cg_loop k;
    cg_loop_begin(c, &k, cg_i64(c, 0), cg_i64(c, K), "k");
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < nv; j++) acc[r][j] = cg_loop_acc(c, &k, LLVMConstNull(vt));
    LLVMValueRef koff = LLVMBuildLoad2(c->b, c->i64, LLVMBuildInBoundsGEP2(c->b, c->i64, koffs, &k.iv, 1, ""), "");
    LLVMValueRef brow = cg_gep(c, panel, LLVMBuildMul(c->b, k.iv, cg_i64(c, NRc), ""));
    LLVMValueRef b[8];
    for (int j = 0; j < nv; j++) {
        b[j] = LLVMBuildLoad2(c->b, vt, cg_gep(c, brow, cg_i64(c, j * VW)), "");
        LLVMSetAlignment(b[j], (unsigned)(VW * 4 < 64 ? VW * 4 : 64));
    }
    for (int r = 0; r < rows; r++) {
        LLVMValueRef a = cg_splat(c, cg_load(c, xrow[r], koff), VW);
        for (int j = 0; j < nv; j++) cg_loop_next(&k, acc[r][j], cg_fma(c, a, b[j], acc[r][j]));
    }
    k.unroll = 2;
    cg_loop_end(c, &k);
    /* Bias, epilogue, the maximum over window positions (in the pool kernel's order), then what
     * follows the pool; stored as [pixel][channel]. */
    LLVMValueRef oc0 = LLVMBuildMul(c->b, p.iv, cg_i64(c, NRc), "");
    for (int j = 0; j < nv; j++) {
        LLVMValueRef ocj = LLVMBuildAdd(c->b, oc0, cg_i64(c, j * VW), "");
        LLVMValueRef bv = LLVMConstNull(vt);
        if (bias) {
            bv = cg_masked_load(c, vt, LLVMBuildGEP2(c->b, c->f32, bias, &ocj, 1, ""), cg_lanes_below(c, VW, ocj, cg_i64(c, OC)));
        }
        for (int i = 0; i < px; i++) {
            LLVMValueRef mx = NULL;
            for (int w = 0; w < nwin; w++) {
                LLVMValueRef v = cg_epilogue(c, node, cg_fadd(c, acc[i * nwin + w][j], bv, false));
                mx = w == 0 ? v : cg_max(c, v, mx, false);
            }
            LLVMValueRef pix = LLVMBuildAdd(c->b, LLVMBuildMul(c->b, t.iv, cg_i64(c, px), ""), cg_i64(c, i), "");
            LLVMValueRef st = LLVMBuildStore(c->b, cg_epilogue(c, pool, mx),
                                             cg_gep(c, tmp, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, pix, cg_i64(c, OCp), ""), ocj, "")));
            LLVMSetAlignment(st, (unsigned)(VW * 4 < 64 ? VW * 4 : 64));
        }
    }
    cg_loop_end(c, &p);
    cg_loop_end(c, &t);
    /* out[s][oc][pix] for this unit's pixels. */
    LLVMValueRef pix_lo = LLVMBuildMul(c->b, t_lo, cg_i64(c, px), "");
    LLVMValueRef pix_hi = cg_smin(c, LLVMBuildMul(c->b, t_hi, cg_i64(c, px), ""), cg_i64(c, PIX));
    LLVMValueRef os = cg_gep(c, out, LLVMBuildMul(c->b, smp, cg_i64(c, OC * PIX), ""));
    cg_loop oc;
    cg_loop_begin(c, &oc, cg_i64(c, 0), cg_i64(c, OC), "oc");
    LLVMValueRef orow = cg_gep(c, os, LLVMBuildMul(c->b, oc.iv, cg_i64(c, PIX), ""));
    cg_loop q;
    cg_loop_begin(c, &q, pix_lo, pix_hi, "pix");
    cg_store(c, cg_load(c, tmp, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, q.iv, cg_i64(c, OCp), ""), oc.iv, "")), orow, q.iv);
    cg_loop_end(c, &q);
    cg_loop_end(c, &oc);
    cg_loop_end(c, &u);
    cg_kernel_end(c);
    return fn;
}

/* conv2d, its epilogue and a maxpool2d with kernel = stride (pass_fuse_pool) in one kernel, with
 * the layout pool_tile_of picks. Lanes over pooled pixels: per sample the input is rearranged into phase planes (gen_phase_planes); on the lane grid
 * q = ph*cols + pw of pooled outputs, the conv output under window position (dy, dx) is then a
 * GEMM whose row k = (ch, kh, kw) of B is a phase plane shifted by a constant, as in the shifted
 * kernel. Each window position's tile is computed, biased and passed through the epilogue, and
 * the maximum over positions (in the pool kernel's order) is kept in registers; what follows the
 * pool in the chain applies before the masked stores. Each output sums its taps in the same order
 * as the other conv kernels, whatever the split. */
LLVMValueRef cg_gen_conv2d_pooled(cg *c, int node, int pool) {
    const pn_node *nd = &c->g->nodes[node], *pl = &c->g->nodes[pool];
    const pn_shape *xs = &c->g->nodes[nd->in[0]].shape;
    int64_t C = xs->d[1], H = xs->d[2], W = xs->d[3];
    int64_t OC = nd->ia[PN_CONV_OUT], KH = nd->ia[PN_CONV_KH], KW = nd->ia[PN_CONV_KW];
    int64_t SH = nd->ia[PN_CONV_SH], SW = nd->ia[PN_CONV_SW], K = C * KH * KW;
    int64_t SPH = pl->ia[PN_POOL_SH], SPW = pl->ia[PN_POOL_SW], POH = pl->shape.d[2], POW = pl->shape.d[3];
    int64_t NWIN = SPH * SPW;
    pn_pool_grid pg = c->g->plan.pool_grid[node]; /* as pass_fuse_pool decided */
    int64_t F = pg.fh, Fw = pg.fw, G = pg.cols, PL = pg.rows * G, Q = pg.lanes;
    int VW, MR, NV;
    cg_gemm_shape(c, &VW, &MR, &NV);
    pool_tile tile = pool_tile_of(c, node, pool);
    if (tile.channel_lanes) return gen_channel_lanes(c, node, pool, tile);
    int nv = tile.nv, mr = tile.mr;
    PN_ASSERT(nv > 0); /* pass_fuse_pool allows at most 8 window positions */
    int64_t NR = (int64_t)VW * nv, NPQ = (Q + NR - 1) / NR, NOT = (OC + mr - 1) / mr;
    /* B's row offsets, per window position (dy, dx) then k = (ch, kh, kw). */
    LLVMValueRef *ov = pn_xmalloc(sizeof(LLVMValueRef) * (size_t)(NWIN * K));
    for (int64_t w = 0, k = 0; w < NWIN; w++)
        for (int64_t ch = 0; ch < C; ch++)
            for (int64_t kh = 0; kh < KH; kh++)
                for (int64_t kw = 0; kw < KW; kw++) {
                    int64_t t = (w / SPW) * SH + kh, u = (w % SPW) * SW + kw;
                    ov[k++] = cg_i64(c, ((ch * F + t % F) * Fw + u % Fw) * PL + (t / F) * G + u / Fw);
                }
    LLVMValueRef offs = cg_offset_table(c, node, ov, NWIN * K);
    int64_t need = (pg.floats * 4 + 63) / 64 * 64;
    if (need > c->scratch_bytes) c->scratch_bytes = need;
    LLVMTypeRef vt = LLVMVectorType(c->f32, (unsigned)VW);
    LLVMValueRef fn = cg_kernel_begin(c, node, 1);
    LLVMValueRef out = LLVMGetParam(fn, 0), in = LLVMGetParam(fn, 1);
    LLVMValueRef wts = c->params, bias = cg_conv_bias(c, node), planes = c->scratch;
    LLVMValueRef N = pn_shape_batched(xs) ? c->n : cg_i64(c, xs->d[0]);
    cg_loop u;
    LLVMValueRef smp, ot_lo, ot_hi;
    sample_units(c, N, NOT, &u, &smp, &ot_lo, &ot_hi); /* groups of channel tiles; each builds the planes */
    gen_phase_planes(c, node, &pg, cg_gep(c, in, LLVMBuildMul(c->b, smp, cg_i64(c, C * H * W), "")), planes);
    cg_loop pp;
    cg_loop_begin(c, &pp, cg_i64(c, 0), cg_i64(c, NPQ), "pp");
    LLVMValueRef q0 = LLVMBuildMul(c->b, pp.iv, cg_i64(c, NR), "q0");
    LLVMValueRef base = cg_gep(c, planes, q0);
    /* The last panel loads only the lanes it needs: never past the planes. */
    LLVMValueRef is_last = LLVMBuildICmp(c->b, LLVMIntEQ, pp.iv, cg_i64(c, NPQ - 1), "");
    int64_t last_valid = Q - (NPQ - 1) * NR;
    LLVMValueRef mask[8];
    for (int j = 0; j < nv; j++) {
        int64_t valid = last_valid - j * VW;
        valid = valid < 0 ? 0 : valid > VW ? VW : valid;
        mask[j] = cg_select(c, is_last, cg_mask_const(c, VW, (int)valid), cg_mask_const(c, VW, VW));
    }
    cg_grid_out go;
    cg_grid_out_init(c, &go, q0, G, POW, Q, nv);
    cg_loop ot;
    cg_loop_begin(c, &ot, ot_lo, ot_hi, "ot");
    LLVMValueRef oc0 = LLVMBuildMul(c->b, ot.iv, cg_i64(c, mr), "");
    LLVMValueRef arow[16], zero[16][8], acc[16][8], mx[16][8];
    for (int i = 0; i < mr; i++) {
        LLVMValueRef oci = cg_smin(c, LLVMBuildAdd(c->b, oc0, cg_i64(c, i), ""), cg_i64(c, OC - 1));
        arow[i] = cg_gep(c, wts, LLVMBuildMul(c->b, oci, cg_i64(c, K), ""));
        for (int j = 0; j < nv * NWIN; j++) zero[i][j] = LLVMConstNull(vt);
    }
    cg_micro_tile_win(c, arow, mr, nv, (int)NWIN, K, base, NR, offs, mask, cg_i64(c, 0), cg_i64(c, K), zero, acc);
    for (int i = 0; i < mr; i++) {
        LLVMValueRef oci = cg_smin(c, LLVMBuildAdd(c->b, oc0, cg_i64(c, i), ""), cg_i64(c, OC - 1));
        LLVMValueRef bv = bias ? cg_splat(c, cg_load(c, bias, oci), VW) : LLVMConstNull(vt);
        for (int j = 0; j < nv; j++)
            for (int64_t w = 0; w < NWIN; w++) {
                LLVMValueRef v = cg_epilogue(c, node, cg_fadd(c, acc[i][w * nv + j], bv, false));
                mx[i][j] = w == 0 ? v : cg_max(c, v, mx[i][j], false); /* as the pool kernel */
            }
    }
    for (int i = 0; i < mr; i++) {
        LLVMValueRef oc = LLVMBuildAdd(c->b, oc0, cg_i64(c, i), "");
        cg_if st;
        cg_if_begin(c, &st, LLVMBuildICmp(c->b, LLVMIntSLT, oc, cg_i64(c, OC), ""));
        LLVMValueRef oplane = cg_gep(c, out, LLVMBuildMul(c->b, LLVMBuildAdd(c->b, LLVMBuildMul(c->b, smp, cg_i64(c, OC), ""), oc, ""),
                                                          cg_i64(c, POH * POW), ""));
        for (int j = 0; j < nv; j++) cg_grid_out_store(c, &go, j, cg_epilogue(c, pool, mx[i][j]), oplane);
        cg_if_end(c, &st);
    }
    cg_loop_end(c, &ot);
    cg_loop_end(c, &pp);
    cg_loop_end(c, &u);
    cg_kernel_end(c);
    return fn;
}

