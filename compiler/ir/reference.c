/* The reference twin of every generated kernel, forward and backward: one plain interpreter of
 * the graph in double precision, one obvious loop nest per op, with PyTorch's semantics. Each
 * op's forward and backward are its row of the op table (ops.c). The inference run rounds every
 * value to float like the generated code stores it; the training run keeps doubles, computes the
 * training-mode forward (batchnorm on batch statistics, dropout with the generated code's mask),
 * the loss, then the reverse pass on the forward's values. Tests compare the generated kernels
 * with it on odd sizes. Slow on purpose: no tiling, no threads. */
#include "ops.h"
#include "reference.h"
#include "../support/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pn_ref {
    const pn_graph *g;
    int64_t batch;
    bool train;       /* training mode: batch statistics, dropout masks, ids checked */
    const float *params;
    double *gparams;  /* training: the parameters' gradients */
    double **v;       /* each node's value, NULL when not computed */
    double **d;       /* training: each node's gradient (d loss / d value) */
    int64_t *n;       /* each node's element count */
    uint64_t seed;
    int64_t step;
    const void *const *inputs;
    const int *input_index; /* node -> index into inputs */
    char *err;
    size_t errlen;
};

static void dims(const pn_shape *s, int64_t batch, int64_t *d) {
    for (int i = 0; i < s->rank; i++)
        d[i] = s->d[i] == PN_BATCH ? batch : s->d[i];
}

static int64_t numel(const pn_shape *s, int64_t batch) {
    int64_t n = 1;
    for (int i = 0; i < s->rank; i++)
        n *= s->d[i] == PN_BATCH ? batch : s->d[i];
    return n;
}

static int64_t al16(int64_t v) {
    return (v + 15) / 16 * 16;
}

static void unravel(int64_t flat, const int64_t *d, int r, int64_t *idx) {
    for (int k = r - 1; k >= 0; k--) {
        idx[k] = d[k] ? flat % d[k] : 0;
        flat = d[k] ? flat / d[k] : 0;
    }
}

/* Offset of multi-index idx (over the output's dims) in an operand broadcast to the output. */
static int64_t bcast_off(const int64_t *idx, int orank, const int64_t *ind, int irank) {
    int64_t off = 0, stride = 1;
    for (int d = irank - 1; d >= 0; d--) {
        off += (ind[d] == 1 ? 0 : idx[d + orank - irank]) * stride;
        stride *= ind[d];
    }
    return off;
}

/* codegen/eltwise_grad.c's dropout_keep: a counter-based hash of (seed, step, node, element in the batch). */
static bool dropout_keep(uint64_t seed, int64_t step, int node, int64_t gidx, double p) {
    uint64_t h = (seed * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)(step + (int64_t)node * 65537) * 0xBF58476D1CE4E5B9ull);
    h += (uint64_t)gidx * 0x94D049BB133111EBull;
    h ^= h >> 30;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 27;
    h *= 0x94D049BB133111EBull;
    h ^= h >> 31;
    return (int64_t)(h >> 40) >= (int64_t)(p * 16777216.0 + 0.5);
}

/* Convolution and pooling geometry, from the input [N, C, H, W] and the output [N, O, OH, OW]. */
typedef struct geom {
    int64_t N, C, H, W, O, OH, OW, KH, KW, SH, SW, PH, PW;
} geom;

static geom geometry(const pn_ref *r, const pn_node *nd) {
    int64_t xd[4], od[4];
    dims(&r->g->nodes[nd->in[0]].shape, r->batch, xd);
    dims(&nd->shape, r->batch, od);
    geom q = {xd[0], xd[1], xd[2], xd[3], od[1], od[2], od[3], 0, 0, 0, 0, 0, 0};
    if (nd->op == PN_OP_CONV2D) {
        q.KH = nd->ia[PN_CONV_KH], q.KW = nd->ia[PN_CONV_KW], q.SH = nd->ia[PN_CONV_SH], q.SW = nd->ia[PN_CONV_SW];
        q.PH = nd->ia[PN_CONV_PH], q.PW = nd->ia[PN_CONV_PW];
    } else {
        q.KH = nd->ia[PN_POOL_KH], q.KW = nd->ia[PN_POOL_KW], q.SH = nd->ia[PN_POOL_SH], q.SW = nd->ia[PN_POOL_SW];
        q.PH = nd->ia[PN_POOL_PH], q.PW = nd->ia[PN_POOL_PW];
    }
    return q;
}

/* The window element (kh, kw) of output (oh, ow): its input index in the plane, or -1 outside. */
static int64_t window_at(const geom *q, int64_t oh, int64_t ow, int64_t kh, int64_t kw) {
    int64_t ih = oh * q->SH + kh - q->PH, iw = ow * q->SW + kw - q->PW;
    return ih < 0 || ih >= q->H || iw < 0 || iw >= q->W ? -1 : ih * q->W + iw;
}

/* The first maximum of a pooling window in window order (strictly greater replaces), or -1. */
static int64_t window_argmax(const geom *q, const double *plane, int64_t oh, int64_t ow) {
    int64_t best = -1;
    for (int64_t kh = 0; kh < q->KH; kh++)
        for (int64_t kw = 0; kw < q->KW; kw++) {
            int64_t at = window_at(q, oh, ow, kh, kw);
            if (at >= 0 && (best < 0 || plane[at] > plane[best])) best = at;
        }
    return best;
}

/* Batchnorm: channel axis 1, statistics over the batch and every later axis (biased variance). */
static void bn_stats(const pn_ref *r, const pn_node *nd, const double *x, int64_t c, double *mean, double *rstd) {
    int64_t N = r->batch, C = nd->shape.d[1], S = pn_shape_sample_elems(&nd->shape) / C;
    double m = 0, v = 0;
    for (int64_t s = 0; s < N; s++)
        for (int64_t e = 0; e < S; e++)
            m += x[(s * C + c) * S + e];
    m /= (double)(N * S);
    for (int64_t s = 0; s < N; s++)
        for (int64_t e = 0; e < S; e++)
            v += (x[(s * C + c) * S + e] - m) * (x[(s * C + c) * S + e] - m);
    v /= (double)(N * S);
    *mean = m;
    *rstd = 1.0 / sqrt(v + nd->fa[PN_FA_VALUE]);
}

static void row_stats(const double *x, int64_t D, double eps, double *mean, double *rstd) {
    double m = 0, v = 0;
    for (int64_t k = 0; k < D; k++)
        m += x[k];
    m /= (double)D;
    for (int64_t k = 0; k < D; k++)
        v += (x[k] - m) * (x[k] - m);
    *mean = m;
    *rstd = 1.0 / sqrt(v / (double)D + eps);
}

/* Softmax lines: `line` of cnt / A lines along axis of length A with stride inner. */
static int64_t line_base(int64_t line, int64_t A, int64_t inner) {
    return (line / inner) * A * inner + line % inner;
}

static void axis_dims(const pn_node *nd, int64_t batch, int ax, int64_t *A, int64_t *inner) {
    int64_t od[PN_MAX_RANK];
    dims(&nd->shape, batch, od);
    *A = od[ax];
    *inner = 1;
    for (int d = ax + 1; d < nd->shape.rank; d++)
        *inner *= od[d];
}

/* matmul geometry: a [.., N, K] times b [.., K, M] with broadcast batch dims; a rank-1 a is
 * [1, K], a rank-1 b is [K, 1]. For output element e: the offsets of its a and b matrices. */
typedef struct mm {
    int64_t N, K, M, fd[PN_MAX_RANK + 2], ad[PN_MAX_RANK + 1], bd[PN_MAX_RANK + 1];
    int ar, br, nb;
} mm;

static mm mm_geometry(const pn_ref *r, const pn_node *nd) {
    mm q;
    memset(&q, 0, sizeof q);
    const pn_shape *as = &r->g->nodes[nd->in[0]].shape, *bs = &r->g->nodes[nd->in[1]].shape;
    dims(as, r->batch, q.ad);
    dims(bs, r->batch, q.bd);
    q.ar = as->rank, q.br = bs->rank;
    if (q.ar == 1) {
        q.ad[1] = q.ad[0];
        q.ad[0] = 1;
        q.ar = 2;
    }
    if (q.br == 1) {
        q.bd[1] = 1;
        q.br = 2;
    }
    q.N = q.ad[q.ar - 2], q.K = q.ad[q.ar - 1], q.M = q.bd[q.br - 1];
    q.nb = (q.ar > q.br ? q.ar : q.br) - 2;
    for (int d = 0; d < q.nb; d++) {
        int da = d - (q.nb - (q.ar - 2)), db = d - (q.nb - (q.br - 2));
        int64_t xa = da >= 0 ? q.ad[da] : 1, xb = db >= 0 ? q.bd[db] : 1;
        q.fd[d] = xa == 1 ? xb : xa;
    }
    q.fd[q.nb] = q.N;
    q.fd[q.nb + 1] = q.M;
    return q;
}

static void mm_offsets(const mm *q, const int64_t *idx, int64_t *aoff, int64_t *boff) {
    int64_t sa = q->N * q->K, sb = q->K * q->M;
    *aoff = *boff = 0;
    for (int d = q->nb - 1; d >= 0; d--) {
        int da = d - (q->nb - (q->ar - 2)), db = d - (q->nb - (q->br - 2));
        if (da >= 0) {
            *aoff += (q->ad[da] == 1 ? 0 : idx[d]) * sa;
            sa *= q->ad[da];
        }
        if (db >= 0) {
            *boff += (q->bd[db] == 1 ? 0 : idx[d]) * sb;
            sb *= q->bd[db];
        }
    }
}

/* concat: for output element e (multi-index idx), the input k and its offset. */
static int concat_src(const pn_ref *r, const pn_node *nd, const int64_t *idx, int64_t *off) {
    int ax = (int)nd->ia[PN_AXIS], R = nd->shape.rank;
    int64_t a = idx[ax];
    for (int k = 0; k < nd->ninputs; k++) {
        int64_t kd[PN_MAX_RANK];
        dims(&r->g->nodes[nd->in[k]].shape, r->batch, kd);
        if (a < kd[ax]) {
            *off = 0;
            for (int d = 0; d < R; d++)
                *off = *off * kd[d] + (d == ax ? a : idx[d]);
            return k;
        }
        a -= kd[ax];
    }
    return -1;
}

/* transpose: the input offset of output multi-index idx. */
static int64_t transpose_src(const pn_ref *r, const pn_node *nd, const int64_t *idx) {
    int R = nd->shape.rank;
    int64_t xd[PN_MAX_RANK], src[PN_MAX_RANK], off = 0;
    dims(&r->g->nodes[nd->in[0]].shape, r->batch, xd);
    for (int d = 0; d < R; d++)
        src[nd->ia[PN_PERM + d]] = idx[d];
    for (int d = 0; d < R; d++)
        off = off * xd[d] + src[d];
    return off;
}

static double gelu_grad(double x) {
    return 0.5 * erfc(-x / sqrt(2.0)) + x * exp(-0.5 * x * x) * 0.39894228040143268;
}


/* The node's parameters in the planned layout, NULL without any (the inference run of a graph
 * planned without them reads from the buffer's start, as its kernels would never run). */
static const float *param(const pn_ref *r, int i) {
    const int64_t *off = r->g->plan.param_offset;
    if (off && off[i] >= 0) return r->params + off[i];
    return r->train ? NULL : r->params;
}

static double *gparam(const pn_ref *r, int i) {
    int64_t off = r->g->plan.param_offset[i];
    return off >= 0 ? r->gparams + off : NULL;
}

/* The names every op function starts with. */
#define NODE                                                                                        \
    const pn_graph *g = r->g;                                                                       \
    const pn_node *nd = &g->nodes[i];                                                               \
    const double *x = nd->ninputs ? r->v[nd->in[0]] : NULL;                                         \
    int64_t cnt = r->n[i], od[PN_MAX_RANK], idx[PN_MAX_RANK + 2];                                   \
    dims(&nd->shape, r->batch, od);                                                                 \
    int R = nd->shape.rank;                                                                         \
    (void)g, (void)x, (void)cnt, (void)idx, (void)R

/* ---- input and constant ------------------------------------------------------------------------ */
bool pn_ref_input(pn_ref *r, int i) {
    NODE;
    double *y = r->v[i];
    const void *in = r->inputs[r->input_index[i]];
    for (int64_t e = 0; e < cnt; e++)
        y[e] = nd->dtype == PN_I32 ? (double)((const int32_t *)in)[e] : (double)((const float *)in)[e];
    return true;
}

bool pn_ref_const(pn_ref *r, int i) {
    const pn_node *nd = &r->g->nodes[i];
    if (!nd->data) r->v[i][0] = nd->fa[PN_FA_VALUE];
    for (int64_t e = 0; nd->data && e < pn_shape_sample_elems(&nd->shape); e++) r->v[i][e] = nd->data[e];
    return true;
}

/* ---- + - * / with NumPy broadcasting ------------------------------------------------------------- */
bool pn_ref_binary(pn_ref *r, int i) {
    NODE;
    double *y = r->v[i];
    const pn_shape *as = &g->nodes[nd->in[0]].shape, *bs = &g->nodes[nd->in[1]].shape;
    int64_t ad[PN_MAX_RANK], bd[PN_MAX_RANK];
    dims(as, r->batch, ad);
    dims(bs, r->batch, bd);
    for (int64_t e = 0; e < cnt; e++) {
        unravel(e, od, R, idx);
        double a = r->v[nd->in[0]][bcast_off(idx, R, ad, as->rank)], b = r->v[nd->in[1]][bcast_off(idx, R, bd, bs->rank)];
        y[e] = nd->op == PN_OP_ADD ? a + b : nd->op == PN_OP_SUB ? a - b : nd->op == PN_OP_MUL ? a * b : a / b;
    }
    return true;
}

void pn_ref_binary_grad(pn_ref *r, int i) {
    NODE;
    const double *dy = r->d[i];
    const pn_shape *as = &g->nodes[nd->in[0]].shape, *bs = &g->nodes[nd->in[1]].shape;
    int64_t ad[PN_MAX_RANK], bd[PN_MAX_RANK];
    dims(as, r->batch, ad);
    dims(bs, r->batch, bd);
    const double *a = r->v[nd->in[0]], *b = r->v[nd->in[1]];
    double *da = r->d[nd->in[0]], *db = r->d[nd->in[1]];
    for (int64_t e = 0; e < cnt; e++) {
        unravel(e, od, R, idx);
        int64_t ao = bcast_off(idx, R, ad, as->rank), bo = bcast_off(idx, R, bd, bs->rank);
        if (nd->op == PN_OP_DIV) { /* d(a/b) = da/b - a db/b^2 */
            da[ao] += dy[e] / b[bo];
            db[bo] -= dy[e] * a[ao] / (b[bo] * b[bo]);
            continue;
        }
        da[ao] += nd->op == PN_OP_MUL ? dy[e] * b[bo] : dy[e];
        db[bo] += nd->op == PN_OP_MUL ? dy[e] * a[ao] : nd->op == PN_OP_SUB ? -dy[e] : dy[e];
    }
}

/* ---- dense ----------------------------------------------------------------------------------- */
bool pn_ref_dense(pn_ref *r, int i) {
    NODE;
    double *y = r->v[i];
    const float *p = param(r, i);
    const pn_shape *xs = &g->nodes[nd->in[0]].shape;
    int64_t U = nd->ia[PN_DENSE_UNITS], K = xs->d[xs->rank - 1];
    const float *bias = nd->ia[PN_DENSE_BIAS] ? p + al16(U * K) : NULL;
    for (int64_t row = 0; row < cnt / U; row++)
        for (int64_t u = 0; u < U; u++) {
            double s = bias ? bias[u] : 0;
            for (int64_t k = 0; k < K; k++)
                s += x[row * K + k] * p[u * K + k];
            y[row * U + u] = s;
        }
    return true;
}

void pn_ref_dense_grad(pn_ref *r, int i) {
    NODE;
    const double *dy = r->d[i];
    double *dx = r->d[nd->in[0]], *gp = gparam(r, i);
    const float *p = param(r, i);
    const pn_shape *xs = &g->nodes[nd->in[0]].shape;
    int64_t U = nd->ia[PN_DENSE_UNITS], rows = cnt / U, K = xs->d[xs->rank - 1];
    for (int64_t row = 0; row < rows; row++)
        for (int64_t u = 0; u < U; u++)
            for (int64_t k = 0; k < K; k++) {
                gp[u * K + k] += dy[row * U + u] * x[row * K + k];
                dx[row * K + k] += dy[row * U + u] * p[u * K + k];
            }
    if (nd->ia[PN_DENSE_BIAS])
        for (int64_t row = 0; row < rows; row++)
            for (int64_t u = 0; u < U; u++)
                gp[al16(U * K) + u] += dy[row * U + u];
}

/* ---- conv2d ---------------------------------------------------------------------------------- */
/* With groups G, output channel o reads the Cg = C / G input channels of its group o / (O / G);
 * its weights are [o][Cg][KH][KW]. */
bool pn_ref_conv2d(pn_ref *r, int i) {
    NODE;
    double *y = r->v[i];
    const float *p = param(r, i);
    geom q = geometry(r, nd);
    int64_t G = nd->ia[PN_CONV_GROUPS], Cg = q.C / G, Og = q.O / G;
    const float *bias = nd->ia[PN_CONV_BIAS] ? p + al16(q.O * Cg * q.KH * q.KW) : NULL;
    for (int64_t s = 0; s < q.N; s++)
        for (int64_t o = 0; o < q.O; o++)
            for (int64_t oh = 0; oh < q.OH; oh++)
                for (int64_t ow = 0; ow < q.OW; ow++) {
                    double acc = bias ? bias[o] : 0;
                    for (int64_t c = 0; c < Cg; c++)
                        for (int64_t kh = 0; kh < q.KH; kh++)
                            for (int64_t kw = 0; kw < q.KW; kw++) {
                                int64_t at = window_at(&q, oh, ow, kh, kw), ci = o / Og * Cg + c;
                                if (at >= 0)
                                    acc += x[(s * q.C + ci) * q.H * q.W + at] * p[((o * Cg + c) * q.KH + kh) * q.KW + kw];
                            }
                    y[((s * q.O + o) * q.OH + oh) * q.OW + ow] = acc;
                }
    return true;
}

void pn_ref_conv2d_grad(pn_ref *r, int i) {
    NODE;
    const double *dy = r->d[i];
    double *dx = r->d[nd->in[0]], *gp = gparam(r, i);
    const float *p = param(r, i);
    geom q = geometry(r, nd);
    int64_t G = nd->ia[PN_CONV_GROUPS], Cg = q.C / G, Og = q.O / G;
    for (int64_t s = 0; s < q.N; s++)
        for (int64_t o = 0; o < q.O; o++)
            for (int64_t oh = 0; oh < q.OH; oh++)
                for (int64_t ow = 0; ow < q.OW; ow++) {
                    double d = dy[((s * q.O + o) * q.OH + oh) * q.OW + ow];
                    if (nd->ia[PN_CONV_BIAS]) gp[al16(q.O * Cg * q.KH * q.KW) + o] += d;
                    for (int64_t c = 0; c < Cg; c++)
                        for (int64_t kh = 0; kh < q.KH; kh++)
                            for (int64_t kw = 0; kw < q.KW; kw++) {
                                int64_t at = window_at(&q, oh, ow, kh, kw), w = ((o * Cg + c) * q.KH + kh) * q.KW + kw;
                                int64_t ci = o / Og * Cg + c;
                                if (at < 0) continue;
                                gp[w] += d * x[(s * q.C + ci) * q.H * q.W + at];
                                dx[(s * q.C + ci) * q.H * q.W + at] += d * p[w];
                            }
                }
}

/* ---- pools ----------------------------------------------------------------------------------- */
bool pn_ref_pool(pn_ref *r, int i) {
    NODE;
    double *y = r->v[i];
    geom q = geometry(r, nd);
    for (int64_t pl = 0; pl < q.N * q.C; pl++)
        for (int64_t oh = 0; oh < q.OH; oh++)
            for (int64_t ow = 0; ow < q.OW; ow++) {
                const double *plane = x + pl * q.H * q.W;
                double acc = 0;
                if (nd->op == PN_OP_MAXPOOL2D) {
                    int64_t at = window_argmax(&q, plane, oh, ow);
                    acc = at >= 0 ? plane[at] : -INFINITY;
                } else {
                    for (int64_t kh = 0; kh < q.KH; kh++)
                        for (int64_t kw = 0; kw < q.KW; kw++) {
                            int64_t at = window_at(&q, oh, ow, kh, kw);
                            if (at >= 0) acc += plane[at];
                        }
                    acc /= (double)(q.KH * q.KW); /* count_include_pad */
                }
                y[(pl * q.OH + oh) * q.OW + ow] = acc;
            }
    return true;
}

void pn_ref_pool_grad(pn_ref *r, int i) {
    NODE;
    const double *dy = r->d[i];
    double *dx = r->d[nd->in[0]];
    geom q = geometry(r, nd);
    for (int64_t pl = 0; pl < q.N * q.C; pl++)
        for (int64_t oh = 0; oh < q.OH; oh++)
            for (int64_t ow = 0; ow < q.OW; ow++) {
                double d = dy[(pl * q.OH + oh) * q.OW + ow];
                double *dplane = dx + pl * q.H * q.W;
                if (nd->op == PN_OP_MAXPOOL2D) {
                    int64_t at = window_argmax(&q, x + pl * q.H * q.W, oh, ow);
                    if (at >= 0) dplane[at] += d;
                    continue;
                }
                for (int64_t kh = 0; kh < q.KH; kh++)
                    for (int64_t kw = 0; kw < q.KW; kw++) {
                        int64_t at = window_at(&q, oh, ow, kh, kw);
                        if (at >= 0) dplane[at] += d / (double)(q.KH * q.KW);
                    }
            }
}

bool pn_ref_global_avgpool(pn_ref *r, int i) {
    NODE;
    double *y = r->v[i];
    int64_t HW = g->nodes[nd->in[0]].shape.d[2] * g->nodes[nd->in[0]].shape.d[3];
    for (int64_t pl = 0; pl < cnt; pl++) {
        double s = 0;
        for (int64_t k = 0; k < HW; k++)
            s += x[pl * HW + k];
        y[pl] = s / (double)HW;
    }
    return true;
}

void pn_ref_global_avgpool_grad(pn_ref *r, int i) {
    NODE;
    const double *dy = r->d[i];
    double *dx = r->d[nd->in[0]];
    int64_t HW = g->nodes[nd->in[0]].shape.d[2] * g->nodes[nd->in[0]].shape.d[3];
    for (int64_t pl = 0; pl < cnt; pl++)
        for (int64_t k = 0; k < HW; k++)
            dx[pl * HW + k] += dy[pl] / (double)HW;
}

/* ---- norms ----------------------------------------------------------------------------------- */
/* Training: statistics of the batch; inference: the running statistics (parameters 2 and 3). */
bool pn_ref_batchnorm(pn_ref *r, int i) {
    NODE;
    double *y = r->v[i];
    const float *p = param(r, i);
    int64_t C = od[1], S = cnt / (r->batch * C), a = al16(C);
    for (int64_t c = 0; c < C; c++) {
        double mean, rstd;
        if (r->train) bn_stats(r, nd, x, c, &mean, &rstd);
        else mean = p[2 * a + c], rstd = 1.0 / sqrt((double)p[3 * a + c] + nd->fa[PN_FA_VALUE]);
        for (int64_t s = 0; s < r->batch; s++)
            for (int64_t e = 0; e < S; e++) {
                int64_t at = (s * C + c) * S + e;
                y[at] = (x[at] - mean) * rstd * p[c] + p[a + c];
            }
    }
    return true;
}

void pn_ref_batchnorm_grad(pn_ref *r, int i) {
    NODE;
    const double *dy = r->d[i];
    double *dx = r->d[nd->in[0]], *gp = gparam(r, i);
    const float *p = param(r, i);
    int64_t N = r->batch, C = od[1], S = cnt / (N * C), a = al16(C);
    for (int64_t c = 0; c < C; c++) {
        double mean, rstd, sdy = 0, sdyx = 0;
        bn_stats(r, nd, x, c, &mean, &rstd);
        for (int64_t s = 0; s < N; s++)
            for (int64_t e = 0; e < S; e++) {
                int64_t at = (s * C + c) * S + e;
                sdy += dy[at];
                sdyx += dy[at] * (x[at] - mean) * rstd;
            }
        gp[c] += sdyx;
        gp[a + c] += sdy;
        double M = (double)(N * S);
        for (int64_t s = 0; s < N; s++)
            for (int64_t e = 0; e < S; e++) {
                int64_t at = (s * C + c) * S + e;
                dx[at] += p[c] * rstd * (dy[at] - sdy / M - (x[at] - mean) * rstd * sdyx / M);
            }
    }
}

bool pn_ref_layernorm(pn_ref *r, int i) {
    NODE;
    double *y = r->v[i];
    const float *p = param(r, i);
    int64_t D = od[R - 1], a = al16(D);
    for (int64_t row = 0; row < cnt / D; row++) {
        double mean, rstd;
        row_stats(x + row * D, D, nd->fa[PN_FA_VALUE], &mean, &rstd);
        for (int64_t k = 0; k < D; k++)
            y[row * D + k] = (x[row * D + k] - mean) * rstd * p[k] + p[a + k];
    }
    return true;
}

void pn_ref_layernorm_grad(pn_ref *r, int i) {
    NODE;
    const double *dy = r->d[i];
    double *dx = r->d[nd->in[0]], *gp = gparam(r, i);
    const float *p = param(r, i);
    int64_t D = od[R - 1], a = al16(D);
    for (int64_t row = 0; row < cnt / D; row++) {
        const double *xr = x + row * D, *dr = dy + row * D;
        double mean, rstd, m1 = 0, m2 = 0;
        row_stats(xr, D, nd->fa[PN_FA_VALUE], &mean, &rstd);
        for (int64_t k = 0; k < D; k++) {
            double xh = (xr[k] - mean) * rstd;
            gp[k] += dr[k] * xh;
            gp[a + k] += dr[k];
            m1 += dr[k] * p[k];
            m2 += dr[k] * p[k] * xh;
        }
        m1 /= (double)D;
        m2 /= (double)D;
        for (int64_t k = 0; k < D; k++)
            dx[row * D + k] += rstd * (dr[k] * p[k] - m1 - (xr[k] - mean) * rstd * m2);
    }
}

/* ---- embedding: an id outside the vocabulary is an error in training, clamped at inference ---- */
bool pn_ref_embedding(pn_ref *r, int i) {
    NODE;
    double *y = r->v[i];
    const float *p = param(r, i);
    int64_t D = nd->ia[PN_EMB_DIM], V = nd->ia[PN_EMB_VOCAB];
    for (int64_t row = 0; row < cnt / D; row++) {
        int64_t id = (int64_t)x[row];
        if (id < 0 || id >= V) {
            if (!r->train) {
                id = id < 0 ? 0 : V - 1;
            } else {
                snprintf(r->err, r->errlen, "'%s': id %lld out of range", nd->name, (long long)id);
                return false;
            }
        }
        for (int64_t k = 0; k < D; k++)
            y[row * D + k] = p[id * D + k];
    }
    return true;
}

void pn_ref_embedding_grad(pn_ref *r, int i) {
    NODE;
    const double *dy = r->d[i];
    double *gp = gparam(r, i);
    int64_t D = nd->ia[PN_EMB_DIM];
    for (int64_t row = 0; row < cnt / D; row++)
        for (int64_t k = 0; k < D; k++)
            gp[(int64_t)x[row] * D + k] += dy[row * D + k];
}

/* ---- activations: y = f(x), dx = dy * f'(x) (from x and y) ------------------------------------ */
static bool unary(pn_ref *r, int i, double (*f)(double x, double k)) {
    NODE;
    double *y = r->v[i], k = nd->fa[PN_FA_VALUE];
    for (int64_t e = 0; e < cnt; e++)
        y[e] = f(x[e], k);
    return true;
}

static void unary_grad(pn_ref *r, int i, double (*df)(double x, double y, double k)) {
    NODE;
    const double *y = r->v[i], *dy = r->d[i];
    double *dx = r->d[nd->in[0]], k = nd->fa[PN_FA_VALUE];
    for (int64_t e = 0; e < cnt; e++)
        dx[e] += dy[e] * df(x[e], y[e], k);
}

static double relu(double x, double k) { return x > 0 ? x : 0; }
static double relu_d(double x, double y, double k) { return x > 0 ? 1 : 0; }
static double leaky_relu(double x, double k) { return x > 0 ? x : x * k; }
static double leaky_relu_d(double x, double y, double k) { return x > 0 ? 1 : k; }
static double sigmoid(double x, double k) { return 1.0 / (1.0 + exp(-x)); }
static double sigmoid_d(double x, double y, double k) { return y * (1 - y); }
static double tanh_f(double x, double k) { return tanh(x); }
static double tanh_d(double x, double y, double k) { return 1 - y * y; }
static double gelu(double x, double k) { return 0.5 * x * erfc(-x / sqrt(2.0)); }
static double gelu_d(double x, double y, double k) { return gelu_grad(x); }
/* silu(x) = x sigmoid(x); silu'(x) = s (1 + x (1 - s)). */
static double silu(double x, double k) { return x / (1.0 + exp(-x)); }
static double silu_d(double x, double y, double k) {
    double s = 1.0 / (1.0 + exp(-x));
    return s * (1 + x * (1 - s));
}

/* elu(x) = x > 0 ? x : alpha (exp(x) - 1); elu'(x) = alpha exp(x) below 0. */
static double elu(double x, double k) { return x > 0 ? x : k * expm1(x); }
static double elu_d(double x, double y, double k) { return x > 0 ? 1 : k * exp(x); }
/* softplus(x) = log(1 + exp(x)), x past PyTorch's threshold 20; its derivative sigmoid(x). */
static double softplus(double x, double k) { return x > 20 ? x : log1p(exp(x)); }
static double softplus_d(double x, double y, double k) { return x > 20 ? 1 : 1.0 / (1.0 + exp(-x)); }

bool pn_ref_relu(pn_ref *r, int i) { return unary(r, i, relu); }
void pn_ref_relu_grad(pn_ref *r, int i) { unary_grad(r, i, relu_d); }
bool pn_ref_leaky_relu(pn_ref *r, int i) { return unary(r, i, leaky_relu); }
void pn_ref_leaky_relu_grad(pn_ref *r, int i) { unary_grad(r, i, leaky_relu_d); }
bool pn_ref_sigmoid(pn_ref *r, int i) { return unary(r, i, sigmoid); }
void pn_ref_sigmoid_grad(pn_ref *r, int i) { unary_grad(r, i, sigmoid_d); }
bool pn_ref_tanh(pn_ref *r, int i) { return unary(r, i, tanh_f); }
void pn_ref_tanh_grad(pn_ref *r, int i) { unary_grad(r, i, tanh_d); }
bool pn_ref_gelu(pn_ref *r, int i) { return unary(r, i, gelu); }
void pn_ref_gelu_grad(pn_ref *r, int i) { unary_grad(r, i, gelu_d); }
bool pn_ref_silu(pn_ref *r, int i) { return unary(r, i, silu); }
void pn_ref_silu_grad(pn_ref *r, int i) { unary_grad(r, i, silu_d); }
bool pn_ref_elu(pn_ref *r, int i) { return unary(r, i, elu); }
void pn_ref_elu_grad(pn_ref *r, int i) { unary_grad(r, i, elu_d); }
bool pn_ref_softplus(pn_ref *r, int i) { return unary(r, i, softplus); }
void pn_ref_softplus_grad(pn_ref *r, int i) { unary_grad(r, i, softplus_d); }

/* prelu: y = x > 0 ? x : w[c] x along channel axis 1; dw[c] sums dy x over x <= 0. */
static int64_t prelu_channel(const pn_node *nd, const int64_t *od, int64_t e) {
    int64_t inner = 1;
    for (int d = 2; d < nd->shape.rank; d++) inner *= od[d];
    return e / inner % od[1];
}

bool pn_ref_prelu(pn_ref *r, int i) {
    NODE;
    double *y = r->v[i];
    const float *p = param(r, i);
    for (int64_t e = 0; e < cnt; e++)
        y[e] = x[e] > 0 ? x[e] : p[prelu_channel(nd, od, e)] * x[e];
    return true;
}

void pn_ref_prelu_grad(pn_ref *r, int i) {
    NODE;
    const double *dy = r->d[i];
    double *dx = r->d[nd->in[0]], *gp = gparam(r, i);
    const float *p = param(r, i);
    for (int64_t e = 0; e < cnt; e++) {
        int64_t ch = prelu_channel(nd, od, e);
        dx[e] += x[e] > 0 ? dy[e] : dy[e] * p[ch];
        if (x[e] <= 0) gp[ch] += dy[e] * x[e];
    }
}

/* Dropout: the identity at inference; in training, the generated code's mask, scaled by 1/(1-p). */
bool pn_ref_dropout(pn_ref *r, int i) {
    NODE;
    double *y = r->v[i], k = nd->fa[PN_FA_VALUE];
    for (int64_t e = 0; e < cnt; e++)
        y[e] = !r->train ? x[e] : dropout_keep(r->seed, r->step, i, e, k) ? (k < 1 ? x[e] / (1.0 - k) : 0) : 0;
    return true;
}

void pn_ref_dropout_grad(pn_ref *r, int i) {
    NODE;
    const double *dy = r->d[i];
    double *dx = r->d[nd->in[0]], k = nd->fa[PN_FA_VALUE];
    for (int64_t e = 0; e < cnt; e++)
        dx[e] += dy[e] * (dropout_keep(r->seed, r->step, i, e, k) && k < 1 ? 1.0 / (1.0 - k) : 0);
}

/* ---- softmax, log_softmax and causal_softmax along an axis -------------------------------------- */
/* causal_softmax (the last axis, inner = 1): line `line` is row line % T of its [T, S] matrix and
 * keeps columns 0..row; the rest are 0. */
bool pn_ref_softmax(pn_ref *r, int i) {
    NODE;
    double *y = r->v[i];
    int64_t A, inner;
    axis_dims(nd, r->batch, (int)nd->ia[PN_AXIS], &A, &inner);
    bool causal = nd->op == PN_OP_CAUSAL_SOFTMAX;
    for (int64_t line = 0; line < cnt / A; line++) {
        int64_t base = line_base(line, A, inner);
        int64_t keep = causal && line % od[R - 2] + 1 < A ? line % od[R - 2] + 1 : A;
        double m = -INFINITY, s = 0;
        for (int64_t a = 0; a < keep; a++)
            m = fmax(m, x[base + a * inner]);
        for (int64_t a = 0; a < keep; a++)
            s += exp(x[base + a * inner] - m);
        for (int64_t a = 0; a < A; a++) {
            double v = x[base + a * inner] - m;
            y[base + a * inner] = a >= keep ? 0 : nd->op == PN_OP_LOG_SOFTMAX ? v - log(s) : exp(v) / s;
        }
    }
    return true;
}

void pn_ref_softmax_grad(pn_ref *r, int i) {
    NODE;
    const double *y = r->v[i], *dy = r->d[i];
    double *dx = r->d[nd->in[0]];
    int64_t A, inner;
    axis_dims(nd, r->batch, (int)nd->ia[PN_AXIS], &A, &inner);
    for (int64_t line = 0; line < cnt / A; line++) {
        int64_t base = line_base(line, A, inner);
        double s = 0;
        for (int64_t a = 0; a < A; a++)
            s += nd->op != PN_OP_LOG_SOFTMAX ? dy[base + a * inner] * y[base + a * inner] : dy[base + a * inner];
        for (int64_t a = 0; a < A; a++) {
            int64_t at = base + a * inner;
            /* causal_softmax as softmax: its masked y are 0, so their dx is too */
            dx[at] += nd->op != PN_OP_LOG_SOFTMAX ? y[at] * (dy[at] - s) : dy[at] - exp(y[at]) * s;
        }
    }
}

/* ---- views and data movement ------------------------------------------------------------------ */
bool pn_ref_view(pn_ref *r, int i) {
    memcpy(r->v[i], r->v[r->g->nodes[i].in[0]], sizeof(double) * (size_t)r->n[i]);
    return true;
}

void pn_ref_view_grad(pn_ref *r, int i) {
    NODE;
    const double *dy = r->d[i];
    double *dx = r->d[nd->in[0]];
    for (int64_t e = 0; e < cnt; e++)
        dx[e] += dy[e];
}

bool pn_ref_transpose(pn_ref *r, int i) {
    NODE;
    double *y = r->v[i];
    for (int64_t e = 0; e < cnt; e++) {
        unravel(e, od, R, idx);
        y[e] = x[transpose_src(r, nd, idx)];
    }
    return true;
}

void pn_ref_transpose_grad(pn_ref *r, int i) {
    NODE;
    const double *dy = r->d[i];
    double *dx = r->d[nd->in[0]];
    for (int64_t e = 0; e < cnt; e++) {
        unravel(e, od, R, idx);
        dx[transpose_src(r, nd, idx)] += dy[e];
    }
}

/* slice: output element idx is input element idx with start added along the axis. */
static int64_t slice_src(const pn_ref *r, const pn_node *nd, int64_t *idx) {
    int64_t xd[PN_MAX_RANK], off = 0;
    dims(&r->g->nodes[nd->in[0]].shape, r->batch, xd);
    idx[nd->ia[PN_AXIS]] += nd->ia[PN_SLICE_START];
    for (int d = 0; d < nd->shape.rank; d++)
        off = off * xd[d] + idx[d];
    return off;
}

/* pad: output element idx reads input (h - top, w - left), or is 0 outside; -1 there. */
static int64_t pad_src(const pn_ref *r, const pn_node *nd, const int64_t *idx) {
    int64_t xd[PN_MAX_RANK];
    dims(&r->g->nodes[nd->in[0]].shape, r->batch, xd);
    int64_t h = idx[2] - nd->ia[PN_PAD_TOP], w = idx[3] - nd->ia[PN_PAD_LEFT];
    if (h < 0 || h >= xd[2] || w < 0 || w >= xd[3]) return -1;
    return ((idx[0] * xd[1] + idx[1]) * xd[2] + h) * xd[3] + w;
}

bool pn_ref_pad(pn_ref *r, int i) {
    NODE;
    double *y = r->v[i];
    for (int64_t e = 0; e < cnt; e++) {
        unravel(e, od, R, idx);
        int64_t at = pad_src(r, nd, idx);
        y[e] = at >= 0 ? x[at] : 0;
    }
    return true;
}

void pn_ref_pad_grad(pn_ref *r, int i) {
    NODE;
    const double *dy = r->d[i];
    double *dx = r->d[nd->in[0]];
    for (int64_t e = 0; e < cnt; e++) {
        unravel(e, od, R, idx);
        int64_t at = pad_src(r, nd, idx);
        if (at >= 0) dx[at] += dy[e];
    }
}

bool pn_ref_slice(pn_ref *r, int i) {
    NODE;
    double *y = r->v[i];
    for (int64_t e = 0; e < cnt; e++) {
        unravel(e, od, R, idx);
        y[e] = x[slice_src(r, nd, idx)];
    }
    return true;
}

void pn_ref_slice_grad(pn_ref *r, int i) {
    NODE;
    const double *dy = r->d[i];
    double *dx = r->d[nd->in[0]];
    for (int64_t e = 0; e < cnt; e++) {
        unravel(e, od, R, idx);
        dx[slice_src(r, nd, idx)] += dy[e];
    }
}

/* positions: element e is e % T, T the last axis's length; no gradient flows into x. */
bool pn_ref_positions(pn_ref *r, int i) {
    NODE;
    for (int64_t e = 0; e < cnt; e++)
        r->v[i][e] = (double)(e % od[R - 1]);
    return true;
}

bool pn_ref_concat(pn_ref *r, int i) {
    NODE;
    double *y = r->v[i];
    for (int64_t e = 0; e < cnt; e++) {
        int64_t off;
        unravel(e, od, R, idx);
        int k = concat_src(r, nd, idx, &off);
        y[e] = r->v[nd->in[k]][off];
    }
    return true;
}

void pn_ref_concat_grad(pn_ref *r, int i) {
    NODE;
    const double *dy = r->d[i];
    for (int64_t e = 0; e < cnt; e++) {
        int64_t off;
        unravel(e, od, R, idx);
        int k = concat_src(r, nd, idx, &off);
        r->d[nd->in[k]][off] += dy[e];
    }
}

/* ---- matmul ------------------------------------------------------------------------------------ */
bool pn_ref_matmul(pn_ref *r, int i) {
    NODE;
    double *y = r->v[i];
    mm q = mm_geometry(r, nd);
    for (int64_t e = 0; e < cnt; e++) {
        int64_t ao, bo;
        unravel(e, q.fd, q.nb + 2, idx);
        mm_offsets(&q, idx, &ao, &bo);
        double s = 0;
        for (int64_t k = 0; k < q.K; k++)
            s += r->v[nd->in[0]][ao + idx[q.nb] * q.K + k] * r->v[nd->in[1]][bo + k * q.M + idx[q.nb + 1]];
        y[e] = s;
    }
    return true;
}

void pn_ref_matmul_grad(pn_ref *r, int i) {
    NODE;
    const double *dy = r->d[i];
    mm q = mm_geometry(r, nd);
    const double *a = r->v[nd->in[0]], *b = r->v[nd->in[1]];
    double *da = r->d[nd->in[0]], *db = r->d[nd->in[1]];
    for (int64_t e = 0; e < cnt; e++) {
        int64_t ao, bo;
        unravel(e, q.fd, q.nb + 2, idx);
        mm_offsets(&q, idx, &ao, &bo);
        int64_t row = idx[q.nb], col = idx[q.nb + 1];
        for (int64_t k = 0; k < q.K; k++) {
            da[ao + row * q.K + k] += dy[e] * b[bo + k * q.M + col];
            db[bo + k * q.M + col] += dy[e] * a[ao + row * q.K + k];
        }
    }
}

/* ---- losses: the batch's mean ------------------------------------------------------------------- */
bool pn_ref_cross_entropy(pn_ref *r, int i) {
    NODE;
    int64_t N = r->batch, K = r->n[nd->in[0]] / N;
    const double *lab = r->v[nd->in[1]];
    double sum = 0;
    for (int64_t s = 0; s < N; s++) {
        double m = -INFINITY, z = 0;
        for (int64_t k = 0; k < K; k++)
            m = fmax(m, x[s * K + k]);
        for (int64_t k = 0; k < K; k++)
            z += exp(x[s * K + k] - m);
        sum += m + log(z) - x[s * K + (int64_t)lab[s]];
    }
    r->v[i][0] = sum / (double)N;
    return true;
}

void pn_ref_cross_entropy_grad(pn_ref *r, int i) {
    NODE;
    const double *dy = r->d[i];
    double *dx = r->d[nd->in[0]];
    int64_t N = r->batch, K = r->n[nd->in[0]] / N;
    const double *lab = r->v[nd->in[1]];
    for (int64_t s = 0; s < N; s++) {
        double m = -INFINITY, z = 0;
        for (int64_t k = 0; k < K; k++)
            m = fmax(m, x[s * K + k]);
        for (int64_t k = 0; k < K; k++)
            z += exp(x[s * K + k] - m);
        for (int64_t k = 0; k < K; k++)
            dx[s * K + k] += dy[0] * (exp(x[s * K + k] - m) / z - (k == (int64_t)lab[s] ? 1 : 0)) / (double)N;
    }
}

bool pn_ref_mse(pn_ref *r, int i) {
    NODE;
    int64_t E = r->n[nd->in[0]];
    const double *t = r->v[nd->in[1]];
    double sum = 0;
    for (int64_t e = 0; e < E; e++)
        sum += (x[e] - t[e]) * (x[e] - t[e]);
    r->v[i][0] = sum / (double)E;
    return true;
}

void pn_ref_mse_grad(pn_ref *r, int i) {
    NODE;
    const double *dy = r->d[i];
    double *dx = r->d[nd->in[0]];
    int64_t E = r->n[nd->in[0]];
    const double *t = r->v[nd->in[1]];
    for (int64_t e = 0; e < E; e++)
        dx[e] += dy[0] * 2 * (x[e] - t[e]) / (double)E;
}

/* ---- the two runs ------------------------------------------------------------------------------ */
/* Allocates node i's value (and in training its gradient) and runs its forward. */
static bool run_node(pn_ref *r, int i) {
    r->n[i] = numel(&r->g->nodes[i].shape, r->batch);
    r->v[i] = pn_xcalloc((size_t)r->n[i] + 1, sizeof(double));
    if (r->train) r->d[i] = pn_xcalloc((size_t)r->n[i] + 1, sizeof(double));
    return r->v[i] && (!r->train || r->d[i]) && pn_ops[r->g->nodes[i].op].ref_forward(r, i);
}

static void ref_free(pn_ref *r) {
    for (int i = 0; i < r->g->nnodes; i++) {
        if (r->v) free(r->v[i]);
        if (r->d) free(r->d[i]);
    }
    free(r->v);
    free(r->d);
    free(r->n);
}

int pn_reference_run(const pn_graph *g, const float *params, int64_t batch, const void *const *inputs,
                     void *const *outputs) {
    int n = g->nnodes;
    char err[1];
    pn_ref r = {.g = g, .batch = batch, .params = params, .inputs = inputs, .err = err, .errlen = sizeof err};
    r.v = pn_xcalloc((size_t)n + 1, sizeof(double *));
    r.n = pn_xcalloc((size_t)n + 1, sizeof(int64_t));
    int *input_index = pn_xcalloc((size_t)n + 1, sizeof(int));
    r.input_index = input_index;
    bool ok = r.v && r.n && input_index;
    int nin = 0;
    for (int i = 0; i < n && ok; i++) {
        const pn_node *nd = &g->nodes[i];
        if ((nd->flags & PN_NODE_TRAIN) || (pn_ops[nd->op].flags & PN_OPF_LOSS)) continue;
        if (nd->op == PN_OP_INPUT) input_index[i] = nin++;
        ok = run_node(&r, i);
        /* Every value is stored as float, as the generated code stores it. */
        for (int64_t e = 0; ok && nd->dtype == PN_F32 && e < r.n[i]; e++) r.v[i][e] = (float)r.v[i][e];
    }
    for (int k = 0; k < g->noutputs && ok; k++) {
        int o = g->outputs[k].node;
        for (int64_t e = 0; e < r.n[o]; e++) {
            if (g->nodes[o].dtype == PN_I32) ((int32_t *)outputs[k])[e] = (int32_t)r.v[o][e];
            else ((float *)outputs[k])[e] = (float)r.v[o][e];
        }
    }
    ref_free(&r);
    free(input_index);
    return ok ? 0 : 1;
}

bool pn_reference_train_grad(const pn_graph *g, int64_t batch, const void *const *inputs, const float *params,
                             uint64_t seed, int64_t step, double *loss, double *grad, char *err, size_t errlen) {
    if (!g->tplan.present) {
        snprintf(err, errlen, "network '%s' has no train { } block", g->name);
        return false;
    }
    if (errlen) err[0] = '\0';
    int n = g->nnodes;
    pn_ref r = {.g = g, .batch = batch, .train = true, .params = params, .gparams = grad, .seed = seed, .step = step,
                .inputs = inputs, .err = err, .errlen = errlen};
    r.v = pn_xcalloc((size_t)n + 1, sizeof(double *));
    r.d = pn_xcalloc((size_t)n + 1, sizeof(double *));
    r.n = pn_xcalloc((size_t)n + 1, sizeof(int64_t));
    int *input_index = pn_xcalloc((size_t)n + 1, sizeof(int));
    r.input_index = input_index;
    bool ok = r.v && r.d && r.n && input_index;
    memset(grad, 0, sizeof(double) * (size_t)g->plan.param_floats);
    /* Inputs: the network's, then the training inputs, each in node order. */
    int nin = 0;
    for (int pass = 0; pass < 2 && ok; pass++)
        for (int i = 0; i < n; i++)
            if (g->nodes[i].op == PN_OP_INPUT && !(g->nodes[i].flags & PN_NODE_TRAIN) == !pass) input_index[i] = nin++;
    for (int i = 0; i < n && ok; i++)
        if (g->tplan.live[i]) ok = run_node(&r, i);
    if (ok) {
        int L = g->tplan.loss;
        *loss = r.v[L][0];
        r.d[L][0] = 1;
        for (int i = L; i >= 0; i--)
            if (g->tplan.live[i] && pn_ops[g->nodes[i].op].ref_backward) pn_ops[g->nodes[i].op].ref_backward(&r, i);
    } else if (errlen && !err[0]) {
        snprintf(err, errlen, "out of memory");
    }
    /* Only trained parameters carry a gradient (running statistics are buffers). */
    for (int i = 0; i < n; i++) {
        const pn_node *nd = &g->nodes[i];
        int64_t off = g->plan.param_offset[i];
        for (int k = 0; k < nd->nparams && off >= 0; k++) {
            int64_t e = pn_shape_sample_elems(&nd->params[k].shape);
            if (!nd->params[k].trainable) memset(grad + off, 0, sizeof(double) * (size_t)e);
            off += al16(e);
        }
    }
    ref_free(&r);
    free(input_index);
    return ok;
}
