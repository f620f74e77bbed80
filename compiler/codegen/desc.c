/* The descriptor libpnetrt reads (pnetrt_desc in runtime/pnetrt_abi.h): inputs, outputs,
 * parameters, layers, sizes and the entry points, and the training descriptor. */
#include "emit.h"
#include "../support/util.h"
#include "../ir/bounds.h"
#include "../ir/report.h"
#include "pnetrt_abi.h"

#include <stdlib.h>
#include <string.h>

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

/* A constant array of n int64 values, or NULL when n is 0. */
static LLVMValueRef i64_array(cg *c, const int64_t *v, int64_t n, const char *name) {
    LLVMValueRef *items = pn_xcalloc((size_t)n + 1, sizeof *items);
    for (int64_t k = 0; k < n; k++) items[k] = cg_i64(c, v[k]);
    LLVMValueRef gv = const_array(c, c->i64, items, (int)n, name);
    free(items);
    return gv;
}

static LLVMTypeRef tensor_type(cg *c) {
    LLVMTypeRef f[] = {c->ptr, c->i64, c->i64, LLVMArrayType2(c->i64, PNETRT_MAX_RANK),
                       c->i64, c->i64, c->i64, c->i64, c->i64, c->ptr};
    return LLVMStructTypeInContext(c->ctx, f, 10, 0);
}

/* source: the name in the model file (pnetrt_tensor_desc.source_name), or NULL. */
static LLVMValueRef tensor_desc(cg *c, const char *name, pn_dtype dt, const pn_shape *s, int64_t offset, int64_t init,
                                int64_t fan_in, int64_t trainable, int64_t limit, const char *source) {
    LLVMValueRef dims[PNETRT_MAX_RANK];
    for (int i = 0; i < PNETRT_MAX_RANK; i++) dims[i] = cg_i64(c, i < s->rank ? s->d[i] : 0);
    LLVMValueRef f[] = {str(c, name), cg_i64(c, dt == PN_I32), cg_i64(c, s->rank),
                        LLVMConstArray2(c->i64, dims, PNETRT_MAX_RANK),
                        cg_i64(c, offset), cg_i64(c, init), cg_i64(c, fan_in), cg_i64(c, trainable), cg_i64(c, limit),
                        source ? str(c, source) : LLVMConstNull(c->ptr)};
    return LLVMConstNamedStruct(tensor_type(c), f, 10);
}

enum { INIT_KAIMING, INIT_BIAS, INIT_ONES, INIT_ZEROS, INIT_NORMAL, INIT_QUARTER }; /* PNETRT_INIT_* */

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
    case PN_OP_PRELU: *init = INIT_QUARTER; return; /* nn.PReLU's init = 0.25 */
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

/* Whether every kernel that writes a parameter gradient honours the call's grad_add (TK_GADD):
 * dense's backward (gemm_grad.c) does; a network with any other node that has parameters and
 * computes a gradient (a frozen one's too: its kernels still write its slot) says no, and its
 * chunks always write their slots. */
static bool grad_add_ok(const pn_graph *g) {
    for (int i = 0; i < g->nnodes; i++) {
        const pn_node *n = &g->nodes[i];
        if (n->nparams && g->tplan.grad[i] && n->op != PN_OP_DENSE) return false;
    }
    return true;
}

/* The training descriptor, or a null pointer. */
LLVMValueRef cg_gen_train_desc(cg *c, const pn_train_fns *fns) {
    const pn_graph *g = c->g;
    const pn_tplan *t = &g->tplan;
    if (!t->present) return LLVMConstNull(c->ptr);
    LLVMValueRef *ins = pn_xcalloc((size_t)g->nnodes + 1, sizeof *ins);
    int nin = 0;
    for (int i = 0; i < g->nnodes; i++) {
        const pn_node *n = &g->nodes[i];
        if (n->op == PN_OP_INPUT && (n->flags & PN_NODE_TRAIN)) ins[nin++] = tensor_desc(c, n->name, n->dtype, &n->shape, 0, 0, 0, 0, 0, NULL);
    }
    const pn_train *tr = &g->train;
    const pn_node *loss = &g->nodes[t->loss];
    pn_tbounds tb;
    pn_train_bounds(g, &tb);
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
        cg_i64(c, fns->nstages), fns->stage_fwd, fns->stage_bwd,
        i64_array(c, tb.fwd_first, fns->nstages ? fns->nstages + 1 : 0, ".stage_fwd_first"),
        i64_array(c, tb.fwd, fns->nstages ? 2 * tb.fwd_first[fns->nstages] : 0, ".stage_fwd"),
        i64_array(c, tb.bwd_first, fns->nstages ? fns->nstages + 1 : 0, ".stage_bwd_first"),
        i64_array(c, tb.bwd, fns->nstages ? 2 * tb.bwd_first[fns->nstages] : 0, ".stage_bwd"), fns->stage_eval,
        i64_array(c, fns->grad_segment, fns->nparams, ".grad_segment"), cg_i64(c, grad_add_ok(g))};
    pn_tbounds_free(&tb);
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

void cg_gen_desc(cg *c, LLVMValueRef forward, LLVMValueRef stages, LLVMValueRef layers, LLVMValueRef prepare, const pn_cg_options *opt,
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
            ins[nin++] = tensor_desc(c, n->name, n->dtype, &n->shape, 0, 0, 0, 0, id_limit(g, i), n->source_name);
        int64_t off = p->param_offset[i];
        for (int k = 0; k < n->nparams; k++) {
            char *pname = pn_xasprintf("%s.%s", n->name, n->params[k].suffix);
            int64_t init, fan_in;
            param_init(g, n, k, &init, &fan_in);
            prm[np++] = tensor_desc(c, pname, PN_F32, &n->params[k].shape, off, init, fan_in, n->params[k].trainable, 0, NULL);
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
        outs[k] = tensor_desc(c, g->outputs[k].name, n->dtype, &n->shape, 0, 0, 0, 0, 0, g->outputs[k].source_name);
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
    pn_bounds bounds;
    pn_stage_bounds(g, &bounds);
    LLVMValueRef prepare_param, unprepare_param;
    cg_gen_param_fns(c, &prepare_param, &unprepare_param);
    LLVMValueRef f[] = {
        cg_i64(c, PNETRT_ABI), str(c, g->name), cg_i64(c, nin), cg_i64(c, g->noutputs), cg_i64(c, np), cg_i64(c, nl),
        const_array(c, tensor_type(c), ins, nin, ".inputs"), const_array(c, tensor_type(c), outs, g->noutputs, ".outputs"),
        const_array(c, tensor_type(c), prm, np, ".params"), const_array(c, layer_t, lay, nl, ".layers"),
        cg_i64(c, p->param_floats), cg_i64(c, c->prepared_floats), embedded, cg_i64(c, p->arena_sample_bytes),
        cg_i64(c, p->arena_fixed_bytes), cg_i64(c, p->chunk), cg_i64(c, c->scratch_bytes), forward, stages, prepare, cg_i64(c, g->nstages),
        cg_i64(c, g->has_shard_batch ? g->replicas : 0), cg_i64(c, g->microbatches), cg_i64(c, g->schedule), str(c, target), train, str(c, report),
        prepare_param, unprepare_param,
        i64_array(c, bounds.recv_first, g->nstages > 1 ? g->nstages + 1 : 0, ".stage_recv_first"),
        i64_array(c, bounds.recv, g->nstages > 1 ? 3 * bounds.recv_first[g->nstages] : 0, ".stage_recv"),
        i64_array(c, bounds.output_stage, g->nstages > 1 ? g->noutputs : 0, ".output_stage"),
        i64_array(c, bounds.param_stage, g->nstages > 1 ? bounds.nparams : 0, ".param_stage"), layers};
    free(report);
    pn_bounds_free(&bounds);
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
