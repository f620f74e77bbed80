/* The generated embedding API: NET_create, NET_infer, the setters, NET_train_step, ...: thin
 * wrappers over libpnetrt under the network's prefix; and main() for executables. */
#include "emit.h"
#include "../support/util.h"

#include <stdlib.h>

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
    LLVMValueRef rt = cg_declare(c, target, c->i32, args, n), vals[8];
    for (unsigned i = 0; i < n; i++) vals[i] = LLVMGetParam(fn, i);
    LLVMBuildRet(c->b, LLVMBuildCall2(c->b, LLVMFunctionType(c->i32, args, n, 0), rt, vals, n, ""));
}

void cg_gen_api(cg *c) {
    char *name = pn_xasprintf("%s__desc", c->px);
    LLVMValueRef desc = LLVMGetNamedGlobal(c->mod, name);
    free(name);
    const pn_graph *g = c->g;
    /* int px_create(px **out, const char *weights) */
    LLVMTypeRef a2[2] = {c->ptr, c->ptr};
    LLVMValueRef fn = begin_fn(c, "_create", c->i32, a2, 2);
    LLVMTypeRef ct[3] = {c->ptr, c->ptr, c->ptr};
    LLVMValueRef rt = cg_declare(c, "pnetrt_create", c->i32, ct, 3);
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
    rt = cg_declare(c, "pnetrt_infer", c->i32, it, 4);
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
        rt = cg_declare(c, "pnetrt_train_step", c->i32, trt, 4);
        LLVMValueRef targs[4] = {LLVMGetParam(fn, 0), LLVMGetParam(fn, 1), tins, LLVMGetParam(fn, (unsigned)nt - 1)};
        LLVMBuildRet(c->b, LLVMBuildCall2(c->b, LLVMFunctionType(c->i32, trt, 4, 0), rt, targs, 4, ""));
        free(tt);
        /* int px_set_lr(px *m, double lr) */
        LLVMTypeRef lt[2] = {c->ptr, LLVMDoubleTypeInContext(c->ctx)};
        fn = begin_fn(c, "_set_lr", c->i32, lt, 2);
        rt = cg_declare(c, "pnetrt_set_lr", c->i32, lt, 2);
        LLVMValueRef largs[2] = {LLVMGetParam(fn, 0), LLVMGetParam(fn, 1)};
        LLVMBuildRet(c->b, LLVMBuildCall2(c->b, LLVMFunctionType(c->i32, lt, 2, 0), rt, largs, 2, ""));
    }
    /* const char *px_last_error(const px *m); void px_destroy(px *m) */
    LLVMTypeRef pt[1] = {c->ptr};
    fn = begin_fn(c, "_last_error", c->ptr, pt, 1);
    rt = cg_declare(c, "pnetrt_last_error", c->ptr, pt, 1);
    LLVMValueRef p0 = LLVMGetParam(fn, 0);
    LLVMBuildRet(c->b, LLVMBuildCall2(c->b, LLVMFunctionType(c->ptr, pt, 1, 0), rt, &p0, 1, ""));
    fn = begin_fn(c, "_destroy", c->vd, pt, 1);
    rt = cg_declare(c, "pnetrt_destroy", c->vd, pt, 1);
    p0 = LLVMGetParam(fn, 0);
    LLVMBuildCall2(c->b, LLVMFunctionType(c->vd, pt, 1, 0), rt, &p0, 1, "");
    LLVMBuildRetVoid(c->b);
    /* const void *px_descriptor(void): for tools built on libpnetrt. */
    fn = begin_fn(c, "_descriptor", c->ptr, NULL, 0);
    LLVMBuildRet(c->b, desc);
}

void cg_gen_main(cg *c) {
    char *name = pn_xasprintf("%s__desc", c->px);
    LLVMValueRef desc = LLVMGetNamedGlobal(c->mod, name);
    free(name);
    LLVMTypeRef mt[2] = {c->i32, c->ptr};
    c->fn = LLVMAddFunction(c->mod, "main", LLVMFunctionType(c->i32, mt, 2, 0));
    LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, c->fn, "entry"));
    LLVMTypeRef rt_t[3] = {c->ptr, c->i32, c->ptr};
    LLVMValueRef rt = cg_declare(c, "pnetrt_main", c->i32, rt_t, 3);
    LLVMValueRef args[3] = {desc, LLVMGetParam(c->fn, 0), LLVMGetParam(c->fn, 1)};
    LLVMBuildRet(c->b, LLVMBuildCall2(c->b, LLVMFunctionType(c->i32, rt_t, 3, 0), rt, args, 3, ""));
}
