/* The reference twin of every generated kernel: a plain interpreter of the inference graph, in
 * double precision per output element, with the loops written the obvious way. Tests compare
 * compiled networks with it on odd sizes. */
#include "reference.h"
#include "../support/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int64_t numel(const pn_shape *s, int64_t batch) {
    int64_t n = 1;
    for (int i = 0; i < s->rank; i++) n *= s->d[i] == PN_BATCH ? batch : s->d[i];
    return n;
}

static void dims(const pn_shape *s, int64_t batch, int64_t *d) {
    for (int i = 0; i < s->rank; i++) d[i] = s->d[i] == PN_BATCH ? batch : s->d[i];
}

static double unary(const pn_node *n, double x) {
    switch (n->op) {
    case PN_OP_RELU: return x < 0 ? 0 : x;
    case PN_OP_LEAKY_RELU: return x < 0 ? x * n->fa[PN_FA_VALUE] : x;
    case PN_OP_SIGMOID: return 1.0 / (1.0 + exp(-x));
    case PN_OP_TANH: return tanh(x);
    case PN_OP_GELU: return 0.5 * x * erfc(-x / sqrt(2.0));
    default: return x; /* dropout: identity at inference */
    }
}

/* Offset of multi-index idx (over out's dims) in an operand broadcast to out. */
static int64_t bcast_off(const int64_t *idx, int orank, const int64_t *ind, int irank) {
    int64_t off = 0, stride = 1;
    for (int d = irank - 1; d >= 0; d--) {
        int od = d + orank - irank;
        int64_t i = ind[d] == 1 ? 0 : idx[od];
        off += i * stride;
        stride *= ind[d];
    }
    return off;
}

static void unravel(int64_t flat, const int64_t *d, int r, int64_t *idx) {
    for (int k = r - 1; k >= 0; k--) {
        idx[k] = d[k] ? flat % d[k] : 0;
        flat = d[k] ? flat / d[k] : 0;
    }
}

int pn_reference_run(const pn_graph *g, const float *params, int64_t batch, const void *const *inputs,
                     void *const *outputs) {
    int n = g->nnodes;
    float **val = pn_xcalloc((size_t)n + 1, sizeof *val);
    if (!val) return 1;
    int nin = 0;
    for (int i = 0; i < n; i++) {
        const pn_node *nd = &g->nodes[i];
        if (nd->flags & PN_NODE_TRAIN) continue;
        int64_t cnt = numel(&nd->shape, batch);
        float *out = pn_xcalloc((size_t)(cnt ? cnt : 1), sizeof(float));
        val[i] = out;
        const float *p = params + (g->plan.param_offset && g->plan.param_offset[i] >= 0 ? g->plan.param_offset[i] : 0);
        const float *x = nd->ninputs ? val[nd->in[0]] : NULL;
        int64_t od[PN_MAX_RANK], xd[PN_MAX_RANK] = {0}, idx[PN_MAX_RANK + 2] = {0};
        dims(&nd->shape, batch, od);
        const pn_shape *xs = nd->ninputs ? &g->nodes[nd->in[0]].shape : NULL;
        if (xs) dims(xs, batch, xd);
        int r = nd->shape.rank;
        switch (nd->op) {
        case PN_OP_INPUT: memcpy(out, inputs[nin++], (size_t)cnt * 4); break;
        case PN_OP_CONST: out[0] = (float)nd->fa[PN_FA_VALUE]; break;
        case PN_OP_ADD:
        case PN_OP_SUB:
        case PN_OP_MUL: {
            const pn_shape *as = &g->nodes[nd->in[0]].shape, *bs = &g->nodes[nd->in[1]].shape;
            int64_t ad[PN_MAX_RANK], bd[PN_MAX_RANK];
            dims(as, batch, ad);
            dims(bs, batch, bd);
            const float *a = val[nd->in[0]], *b = val[nd->in[1]];
            for (int64_t e = 0; e < cnt; e++) {
                unravel(e, od, r, idx);
                double u = a[bcast_off(idx, r, ad, as->rank)], v = b[bcast_off(idx, r, bd, bs->rank)];
                out[e] = (float)(nd->op == PN_OP_ADD ? u + v : nd->op == PN_OP_SUB ? u - v : u * v);
            }
            break;
        }
        case PN_OP_DENSE: {
            int64_t K = xd[xs->rank - 1], U = nd->ia[PN_DENSE_UNITS], rows = cnt / U;
            const float *bias = nd->ia[PN_DENSE_BIAS] ? p + (U * K + 15) / 16 * 16 : NULL;
            for (int64_t row = 0; row < rows; row++)
                for (int64_t u = 0; u < U; u++) {
                    double s = bias ? bias[u] : 0;
                    for (int64_t k = 0; k < K; k++) s += (double)x[row * K + k] * p[u * K + k];
                    out[row * U + u] = (float)s;
                }
            break;
        }
        case PN_OP_CONV2D: {
            int64_t N = xd[0], C = xd[1], H = xd[2], W = xd[3], OC = od[1], OH = od[2], OW = od[3];
            int64_t KH = nd->ia[PN_CONV_KH], KW = nd->ia[PN_CONV_KW], SH = nd->ia[PN_CONV_SH], SW = nd->ia[PN_CONV_SW];
            int64_t PH = nd->ia[PN_CONV_PH], PW = nd->ia[PN_CONV_PW];
            const float *bias = nd->ia[PN_CONV_BIAS] ? p + (OC * C * KH * KW + 15) / 16 * 16 : NULL;
            for (int64_t s = 0; s < N; s++)
                for (int64_t oc = 0; oc < OC; oc++)
                    for (int64_t oh = 0; oh < OH; oh++)
                        for (int64_t ow = 0; ow < OW; ow++) {
                            double acc = bias ? bias[oc] : 0;
                            for (int64_t c = 0; c < C; c++)
                                for (int64_t kh = 0; kh < KH; kh++)
                                    for (int64_t kw = 0; kw < KW; kw++) {
                                        int64_t ih = oh * SH + kh - PH, iw = ow * SW + kw - PW;
                                        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                        acc += (double)x[((s * C + c) * H + ih) * W + iw] * p[((oc * C + c) * KH + kh) * KW + kw];
                                    }
                            out[((s * OC + oc) * OH + oh) * OW + ow] = (float)acc;
                        }
            break;
        }
        case PN_OP_MAXPOOL2D:
        case PN_OP_AVGPOOL2D: {
            int64_t N = xd[0], C = xd[1], H = xd[2], W = xd[3], OH = od[2], OW = od[3];
            int64_t KH = nd->ia[PN_POOL_KH], KW = nd->ia[PN_POOL_KW], SH = nd->ia[PN_POOL_SH], SW = nd->ia[PN_POOL_SW];
            int64_t PH = nd->ia[PN_POOL_PH], PW = nd->ia[PN_POOL_PW];
            for (int64_t pl = 0; pl < N * C; pl++)
                for (int64_t oh = 0; oh < OH; oh++)
                    for (int64_t ow = 0; ow < OW; ow++) {
                        double acc = nd->op == PN_OP_MAXPOOL2D ? -INFINITY : 0;
                        for (int64_t kh = 0; kh < KH; kh++)
                            for (int64_t kw = 0; kw < KW; kw++) {
                                int64_t ih = oh * SH + kh - PH, iw = ow * SW + kw - PW;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                double v = x[(pl * H + ih) * W + iw];
                                acc = nd->op == PN_OP_MAXPOOL2D ? (v > acc ? v : acc) : acc + v;
                            }
                        if (nd->op == PN_OP_AVGPOOL2D) acc /= (double)(KH * KW);
                        out[(pl * OH + oh) * OW + ow] = (float)acc;
                    }
            break;
        }
        case PN_OP_GLOBAL_AVGPOOL: {
            int64_t HW = xd[2] * xd[3];
            for (int64_t pl = 0; pl < xd[0] * xd[1]; pl++) {
                double s = 0;
                for (int64_t k = 0; k < HW; k++) s += x[pl * HW + k];
                out[pl] = (float)(s / (double)HW);
            }
            break;
        }
        case PN_OP_BATCHNORM: {
            int64_t C = xd[1], S = cnt / (xd[0] * C), a = (C + 15) / 16 * 16;
            for (int64_t e = 0; e < cnt; e++) {
                int64_t c = (e / S) % C;
                double y = (x[e] - p[2 * a + c]) / sqrt((double)p[3 * a + c] + nd->fa[PN_FA_VALUE]);
                out[e] = (float)(y * p[c] + p[a + c]);
            }
            break;
        }
        case PN_OP_LAYERNORM: {
            int64_t D = od[r - 1], a = (D + 15) / 16 * 16;
            for (int64_t row = 0; row < cnt / D; row++) {
                double m = 0, v = 0;
                for (int64_t k = 0; k < D; k++) m += x[row * D + k];
                m /= (double)D;
                for (int64_t k = 0; k < D; k++) v += (x[row * D + k] - m) * (x[row * D + k] - m);
                v /= (double)D;
                for (int64_t k = 0; k < D; k++)
                    out[row * D + k] = (float)((x[row * D + k] - m) / sqrt(v + nd->fa[PN_FA_VALUE]) * p[k] + p[a + k]);
            }
            break;
        }
        case PN_OP_EMBEDDING: {
            const int32_t *ids = (const int32_t *)val[nd->in[0]];
            int64_t D = nd->ia[PN_EMB_DIM], V = nd->ia[PN_EMB_VOCAB];
            for (int64_t row = 0; row < cnt / D; row++) {
                int64_t id = ids[row] < 0 ? 0 : ids[row] >= V ? V - 1 : ids[row];
                memcpy(out + row * D, p + id * D, (size_t)D * 4);
            }
            break;
        }
        case PN_OP_RELU:
        case PN_OP_LEAKY_RELU:
        case PN_OP_SIGMOID:
        case PN_OP_TANH:
        case PN_OP_GELU:
        case PN_OP_DROPOUT:
            for (int64_t e = 0; e < cnt; e++) out[e] = (float)unary(nd, x[e]);
            break;
        case PN_OP_SOFTMAX:
        case PN_OP_LOG_SOFTMAX: {
            int ax = (int)nd->ia[PN_AXIS];
            int64_t A = od[ax], inner = 1;
            for (int d = ax + 1; d < r; d++) inner *= od[d];
            for (int64_t line = 0; line < cnt / A; line++) {
                int64_t base = (line / inner) * A * inner + line % inner;
                double m = -INFINITY, s = 0;
                for (int64_t a = 0; a < A; a++) m = fmax(m, x[base + a * inner]);
                for (int64_t a = 0; a < A; a++) s += exp(x[base + a * inner] - m);
                for (int64_t a = 0; a < A; a++) {
                    double v = x[base + a * inner] - m;
                    out[base + a * inner] = (float)(nd->op == PN_OP_SOFTMAX ? exp(v) / s : v - log(s));
                }
            }
            break;
        }
        case PN_OP_FLATTEN:
        case PN_OP_RESHAPE: memcpy(out, x, (size_t)cnt * 4); break;
        case PN_OP_TRANSPOSE:
            for (int64_t e = 0; e < cnt; e++) {
                unravel(e, od, r, idx);
                int64_t src[PN_MAX_RANK];
                for (int d = 0; d < r; d++) src[nd->ia[PN_PERM + d]] = idx[d];
                int64_t off = 0;
                for (int d = 0; d < r; d++) off = off * xd[d] + src[d];
                out[e] = x[off];
            }
            break;
        case PN_OP_CONCAT: {
            int ax = (int)nd->ia[PN_AXIS];
            for (int64_t e = 0; e < cnt; e++) {
                unravel(e, od, r, idx);
                int64_t a = idx[ax];
                for (int k = 0; k < nd->ninputs; k++) {
                    int64_t kd[PN_MAX_RANK];
                    dims(&g->nodes[nd->in[k]].shape, batch, kd);
                    if (a < kd[ax]) {
                        int64_t off = 0;
                        for (int d = 0; d < r; d++) off = off * kd[d] + (d == ax ? a : idx[d]);
                        out[e] = val[nd->in[k]][off];
                        break;
                    }
                    a -= kd[ax];
                }
            }
            break;
        }
        case PN_OP_MATMUL: {
            pn_shape as = g->nodes[nd->in[0]].shape, bs = g->nodes[nd->in[1]].shape;
            int64_t ad[PN_MAX_RANK + 1], bd[PN_MAX_RANK + 1];
            dims(&as, batch, ad);
            dims(&bs, batch, bd);
            int ar = as.rank, br = bs.rank;
            if (ar == 1) { ad[1] = ad[0]; ad[0] = 1; ar = 2; }
            if (br == 1) { bd[1] = 1; br = 2; }
            int64_t N = ad[ar - 2], K = ad[ar - 1], M = bd[br - 1];
            /* The output with both matrix axes kept. */
            int nb = (ar > br ? ar : br) - 2;
            int64_t fd[PN_MAX_RANK + 2];
            for (int d = 0; d < nb; d++) {
                int da = d - (nb - (ar - 2)), db = d - (nb - (br - 2));
                int64_t xa = da >= 0 ? ad[da] : 1, xb = db >= 0 ? bd[db] : 1;
                fd[d] = xa == 1 ? xb : xa;
            }
            fd[nb] = N;
            fd[nb + 1] = M;
            for (int64_t e = 0; e < cnt; e++) {
                unravel(e, fd, nb + 2, idx);
                int64_t aoff = 0, boff = 0, sa = N * K, sb = K * M;
                for (int d = nb - 1; d >= 0; d--) {
                    int da = d - (nb - (ar - 2)), db = d - (nb - (br - 2));
                    if (da >= 0) { aoff += (ad[da] == 1 ? 0 : idx[d]) * sa; sa *= ad[da]; }
                    if (db >= 0) { boff += (bd[db] == 1 ? 0 : idx[d]) * sb; sb *= bd[db]; }
                }
                const float *a = val[nd->in[0]] + aoff, *b = val[nd->in[1]] + boff;
                double s = 0;
                for (int64_t k = 0; k < K; k++) s += (double)a[idx[nb] * K + k] * b[k * M + idx[nb + 1]];
                out[e] = (float)s;
            }
            break;
        }
        case PN_OP_CROSS_ENTROPY:
        case PN_OP_MSE:
        case PN_OP_COUNT: break;
        }
    }
    for (int k = 0; k < g->noutputs; k++) {
        const pn_node *nd = &g->nodes[g->outputs[k].node];
        memcpy(outputs[k], val[g->outputs[k].node], (size_t)numel(&nd->shape, batch) * 4);
    }
    for (int i = 0; i < n; i++) free(val[i]);
    free(val);
    return 0;
}
