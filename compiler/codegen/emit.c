/* Builds the module of a network: one kernel per computed node (dispatch.c), the forward
 * function that runs them with barriers between, one per pipeline stage, then the prepare
 * function, the training step, the descriptor and the API (emit.h); verifies, optimises and
 * writes it. */
#include "emit.h"
#include "../support/util.h"

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
    LLVMValueRef total = c->g->plan.mem[src].kind == PN_MEM_CONST ? cg_i64(c, s->rank ? pn_shape_sample_elems(s) : 1) : cg_numel(c, s);
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
 * with a barrier between kernels; output copies run with the last stage. With only >= 0: node
 * only's kernel alone, no copies (a layer's entry for bench --profile). */
static LLVMValueRef emit_forward(cg *c, const kernels *ks, int stage, int only, const char *name) {
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
    LLVMValueRef barrier = cg_declare(c, "pnetrt_barrier", c->vd, NULL, 0);
    LLVMTypeRef barrier_t = LLVMFunctionType(c->vd, NULL, 0, 0);
    bool first = true;
    for (int j = 0; j < g->nnodes; j++) {
        int i = p->order[j];
        if (!ks->kern[i] || (stage >= 0 && g->nodes[i].stage != stage) || (only >= 0 && i != only)) continue;
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
    for (int k = 0; k < ks->ncopy && only < 0 && (stage < 0 || stage == g->nstages - 1); k++) {
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

/* A private constant array of n function pointers (null where fs[k] is NULL). */
static LLVMValueRef fn_table(cg *c, LLVMValueRef *fs, int n, const char *suffix) {
    for (int k = 0; k < n; k++)
        if (!fs[k]) fs[k] = LLVMConstNull(c->ptr);
    LLVMValueRef init = LLVMConstArray2(c->ptr, fs, (uint64_t)n);
    char *name = pn_xasprintf("%s__%s", c->px, suffix);
    LLVMValueRef gv = LLVMAddGlobal(c->mod, LLVMTypeOf(init), name);
    free(name);
    LLVMSetInitializer(gv, init);
    LLVMSetGlobalConstant(gv, 1);
    LLVMSetLinkage(gv, LLVMPrivateLinkage);
    return gv;
}

/* The kernels, then the forward function over all of them, one per pipeline stage (into
 * *stages, an array constant of nstages function pointers) and one per layer of the descriptor
 * (into *layers: every node outside train { }, null where it has no kernel of its own). */
static LLVMValueRef gen_forward(cg *c, LLVMValueRef *stages, LLVMValueRef *layers) {
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
    LLVMValueRef all = emit_forward(c, &ks, -1, -1, name);
    free(name);
    LLVMValueRef *fs = pn_xcalloc((size_t)g->nstages, sizeof *fs);
    for (int s = 0; s < g->nstages; s++) {
        name = pn_xasprintf("%s__forward_stage%d", c->px, s);
        fs[s] = emit_forward(c, &ks, s, -1, name);
        free(name);
    }
    *stages = fn_table(c, fs, g->nstages, "stages");
    free(fs);
    LLVMValueRef *ls = pn_xcalloc((size_t)g->nnodes + 1, sizeof *ls);
    int nl = 0;
    for (int i = 0; i < g->nnodes; i++) {
        if (g->nodes[i].flags & PN_NODE_TRAIN) continue;
        if (ks.kern[i]) {
            name = pn_xasprintf("%s__forward_layer%d", c->px, nl);
            ls[nl] = emit_forward(c, &ks, -1, i, name);
            free(name);
        }
        nl++;
    }
    *layers = fn_table(c, ls, nl, "layer_forward");
    free(ls);
    free(ks.kern);
    return all;
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

bool pn_codegen(const pn_graph *g, const pn_cg_options *opt, cg *c) {
    memset(c, 0, sizeof *c);
    c->error.node = -1;
    c->error.loc = PN_NOLOC;
    LLVMInitializeAllTargetInfos();
    LLVMInitializeAllTargets();
    LLVMInitializeAllTargetMCs();
    LLVMInitializeAllAsmPrinters();
    char *triple = opt->triple ? LLVMNormalizeTargetTriple(opt->triple) : LLVMGetDefaultTargetTriple();
    char *def = LLVMGetDefaultTargetTriple();
    bool host = !opt->triple || strcmp(opt->triple, def) == 0;
    LLVMDisposeMessage(def);
    /* --cpu native: the host's CPU and features, as when no CPU is named. */
    bool native = opt->cpu && strcmp(opt->cpu, "native") == 0;
    const char *named = native ? NULL : opt->cpu;
    if (native && !host) {
        cg_fail(c, -1, "--cpu native needs the host's target, not '%s'", triple);
        LLVMDisposeMessage(triple);
        return false;
    }
    char *cpu = named ? strdup(named) : host ? LLVMGetHostCPUName() : strdup("generic");
    char *features = !named && host ? LLVMGetHostCPUFeatures() : strdup("");
    LLVMTargetRef target;
    char *msg = NULL;
    bool bad = LLVMGetTargetFromTriple(triple, &target, &msg);
    if (bad) cg_fail(c, -1, "unknown target '%s': %s", triple, msg ? msg : "");
    else if (named) bad = !pn_target_check_cpu(triple, named, c->error.msg, sizeof c->error.msg);
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
        cg_fail(c, -1, "cannot create a target machine for '%s' (cpu '%s')", triple, cpu);
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
    cg_plan_packing(c);
    LLVMValueRef stages, layers;
    LLVMValueRef forward = gen_forward(c, &stages, &layers);
    LLVMValueRef prepare = cg_gen_prepare(c);
    pn_train_fns fns = {0};
    LLVMValueRef segs;
    if (!cg_gen_training(c, &segs, &fns)) {
        free(fns.grad_segment);
        LLVMDisposeMessage(triple);
        free(cpu);
        free(features);
        return false;
    }
    char *target_desc = pn_xasprintf("%s %s", triple, cpu);
    cg_gen_desc(c, forward, stages, layers, prepare, opt, target_desc, cg_gen_train_desc(c, &fns));
    free(fns.grad_segment);
    free(target_desc);
    cg_gen_api(c);
    if (opt->emit_main) cg_gen_main(c);
    LLVMDisposeMessage(triple);
    free(cpu);
    free(features);
    if (LLVMVerifyModule(c->mod, LLVMReturnStatusAction, &msg)) {
        cg_fail(c, -1, "internal error: invalid LLVM module: %.400s", msg);
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
        cg_fail(c, -1, "internal error: optimisation failed: %s", m);
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
