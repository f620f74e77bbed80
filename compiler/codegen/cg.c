/* IR-building helpers shared by the kernel generators: loops, work splitting, float arithmetic
 * with contraction, vectorisable elementary functions, kernel prologues and fused epilogues. */
#include "cg.h"
#include "../support/util.h"

#include <llvm-c/DebugInfo.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cg_fail(cg *c, int node, const char *fmt, ...) {
    c->error.node = node;
    c->error.loc = node >= 0 ? c->g->nodes[node].loc : PN_NOLOC;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error.msg, sizeof c->error.msg, fmt, ap);
    va_end(ap);
}

LLVMValueRef cg_i64(cg *c, int64_t v) { return LLVMConstInt(c->i64, (unsigned long long)v, 1); }
LLVMValueRef cg_f32(cg *c, double v) { return LLVMConstReal(c->f32, v); }

/* A float constant of like's type: scalar, or splatted across like's vector. */
static LLVMValueRef fc(cg *c, LLVMValueRef like, double v) {
    LLVMTypeRef t = LLVMTypeOf(like);
    if (LLVMGetTypeKind(t) != LLVMVectorTypeKind) return LLVMConstReal(t, v);
    unsigned n = LLVMGetVectorSize(t);
    LLVMValueRef e[64];
    for (unsigned i = 0; i < n && i < 64; i++) e[i] = LLVMConstReal(c->f32, v);
    return LLVMConstVector(e, n);
}

/* The i32 type with like's shape. */
static LLVMTypeRef i32_like(cg *c, LLVMValueRef like) {
    LLVMTypeRef t = LLVMTypeOf(like);
    return LLVMGetTypeKind(t) == LLVMVectorTypeKind ? LLVMVectorType(c->i32, LLVMGetVectorSize(t)) : c->i32;
}

static LLVMValueRef ic(cg *c, LLVMValueRef like, int v) {
    LLVMTypeRef t = i32_like(c, like);
    if (LLVMGetTypeKind(t) != LLVMVectorTypeKind) return LLVMConstInt(t, (unsigned long long)v, 1);
    unsigned n = LLVMGetVectorSize(t);
    LLVMValueRef e[64];
    for (unsigned i = 0; i < n && i < 64; i++) e[i] = LLVMConstInt(c->i32, (unsigned long long)v, 1);
    return LLVMConstVector(e, n);
}

void cg_loop_begin(cg *c, cg_loop *l, LLVMValueRef lo, LLVMValueRef hi, const char *name) {
    l->pre = LLVMGetInsertBlock(c->b);
    l->nacc = 0;
    l->unroll = 0;
    l->novec = false;
    l->head = LLVMAppendBasicBlockInContext(c->ctx, c->fn, name);
    l->body = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "body");
    l->exit = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "exit");
    LLVMBuildBr(c->b, l->head);
    LLVMPositionBuilderAtEnd(c->b, l->head);
    l->iv = LLVMBuildPhi(c->b, c->i64, name);
    LLVMAddIncoming(l->iv, &lo, &l->pre, 1);
    LLVMValueRef cond = LLVMBuildICmp(c->b, LLVMIntSLT, l->iv, hi, "");
    LLVMBuildCondBr(c->b, cond, l->body, l->exit);
    LLVMPositionBuilderAtEnd(c->b, l->body);
}

LLVMValueRef cg_loop_acc(cg *c, cg_loop *l, LLVMValueRef init) {
    LLVMBasicBlockRef cur = LLVMGetInsertBlock(c->b);
    LLVMPositionBuilder(c->b, l->head, LLVMGetNextInstruction(l->iv));
    LLVMValueRef phi = LLVMBuildPhi(c->b, LLVMTypeOf(init), "acc");
    LLVMAddIncoming(phi, &init, &l->pre, 1);
    LLVMPositionBuilderAtEnd(c->b, cur);
    PN_ASSERT(l->nacc < 64);
    l->acc[l->nacc] = phi;
    l->next[l->nacc++] = NULL;
    return phi;
}

void cg_loop_next(cg_loop *l, LLVMValueRef acc, LLVMValueRef next) {
    for (int i = 0; i < l->nacc; i++)
        if (l->acc[i] == acc) l->next[i] = next;
}

void cg_loop_end(cg *c, cg_loop *l) {
    LLVMValueRef next = LLVMBuildNSWAdd(c->b, l->iv, cg_i64(c, 1), "");
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(c->b);
    LLVMAddIncoming(l->iv, &next, &latch, 1);
    for (int i = 0; i < l->nacc; i++) {
        PN_ASSERT(l->next[i]);
        LLVMAddIncoming(l->acc[i], &l->next[i], &latch, 1);
    }
    LLVMValueRef br = LLVMBuildBr(c->b, l->head);
    /* !llvm.loop !{self, hints...}: !{"llvm.loop.unroll.count", i32 n} (n = 1: never unrolled) and
     * !{"llvm.loop.vectorize.enable", i1 false}. */
    LLVMMetadataRef ops[3];
    int nops = 1;
    if (l->unroll > 0) {
        static const char key[] = "llvm.loop.unroll.count";
        LLVMMetadataRef hint[2] = {LLVMMDStringInContext2(c->ctx, key, sizeof key - 1),
                                   LLVMValueAsMetadata(LLVMConstInt(c->i32, (unsigned long long)l->unroll, 0))};
        ops[nops++] = LLVMMDNodeInContext2(c->ctx, hint, 2);
    }
    if (l->novec) {
        static const char key[] = "llvm.loop.vectorize.enable";
        LLVMMetadataRef hint[2] = {LLVMMDStringInContext2(c->ctx, key, sizeof key - 1),
                                   LLVMValueAsMetadata(LLVMConstInt(LLVMInt1TypeInContext(c->ctx), 0, 0))};
        ops[nops++] = LLVMMDNodeInContext2(c->ctx, hint, 2);
    }
    if (nops > 1) {
        LLVMMetadataRef self = LLVMTemporaryMDNode(c->ctx, NULL, 0);
        ops[0] = self;
        LLVMMetadataRef loop = LLVMMDNodeInContext2(c->ctx, ops, (size_t)nops);
        LLVMMetadataReplaceAllUsesWith(self, loop);
        LLVMSetMetadata(br, LLVMGetMDKindIDInContext(c->ctx, "llvm.loop", 9), LLVMMetadataAsValue(c->ctx, loop));
    }
    LLVMPositionBuilderAtEnd(c->b, l->exit);
}

void cg_if_begin(cg *c, cg_if *f, LLVMValueRef cond) {
    LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "then");
    f->done = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "endif");
    LLVMBuildCondBr(c->b, cond, then, f->done);
    LLVMPositionBuilderAtEnd(c->b, then);
}

void cg_if_end(cg *c, cg_if *f) {
    LLVMBuildBr(c->b, f->done);
    LLVMPositionBuilderAtEnd(c->b, f->done);
}

void cg_split(cg *c, LLVMValueRef total, LLVMValueRef *lo, LLVMValueRef *hi) {
    LLVMValueRef a = LLVMBuildMul(c->b, total, c->ith, "");
    LLVMValueRef ip1 = LLVMBuildAdd(c->b, c->ith, cg_i64(c, 1), "");
    LLVMValueRef b = LLVMBuildMul(c->b, total, ip1, "");
    *lo = LLVMBuildSDiv(c->b, a, c->nth, "lo");
    *hi = LLVMBuildSDiv(c->b, b, c->nth, "hi");
}

LLVMValueRef cg_gep(cg *c, LLVMValueRef p, LLVMValueRef idx) {
    return LLVMBuildInBoundsGEP2(c->b, c->f32, p, &idx, 1, "");
}

LLVMValueRef cg_load(cg *c, LLVMValueRef p, LLVMValueRef idx) { return LLVMBuildLoad2(c->b, c->f32, cg_gep(c, p, idx), ""); }

void cg_store(cg *c, LLVMValueRef v, LLVMValueRef p, LLVMValueRef idx) { LLVMBuildStore(c->b, v, cg_gep(c, p, idx)); }

LLVMValueRef cg_load_i32(cg *c, LLVMValueRef p, LLVMValueRef idx) {
    LLVMValueRef a = LLVMBuildInBoundsGEP2(c->b, c->i32, p, &idx, 1, "");
    return LLVMBuildLoad2(c->b, c->i32, a, "");
}

static LLVMValueRef fm(LLVMValueRef v, bool reduce) {
    (void)reduce;
    return v;
}

LLVMValueRef cg_fadd(cg *c, LLVMValueRef a, LLVMValueRef b, bool reduce) { return fm(LLVMBuildFAdd(c->b, a, b, ""), reduce); }
LLVMValueRef cg_fsub(cg *c, LLVMValueRef a, LLVMValueRef b) { return fm(LLVMBuildFSub(c->b, a, b, ""), false); }
LLVMValueRef cg_fmul(cg *c, LLVMValueRef a, LLVMValueRef b, bool reduce) { return fm(LLVMBuildFMul(c->b, a, b, ""), reduce); }
LLVMValueRef cg_fdiv(cg *c, LLVMValueRef a, LLVMValueRef b) { return fm(LLVMBuildFDiv(c->b, a, b, ""), false); }

static LLVMValueRef intrinsic(cg *c, const char *name, LLVMTypeRef t, LLVMValueRef *args, unsigned n) {
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    PN_ASSERT(id != 0);
    LLVMValueRef f = LLVMGetIntrinsicDeclaration(c->mod, id, &t, 1);
    LLVMTypeRef ft = LLVMIntrinsicGetType(c->ctx, id, &t, 1);
    return LLVMBuildCall2(c->b, ft, f, args, n, "");
}

LLVMValueRef cg_call1(cg *c, const char *name, LLVMValueRef x) { return intrinsic(c, name, LLVMTypeOf(x), &x, 1); }
LLVMValueRef cg_call2(cg *c, const char *name, LLVMValueRef x, LLVMValueRef y) {
    LLVMValueRef a[2] = {x, y};
    return intrinsic(c, name, LLVMTypeOf(x), a, 2);
}

LLVMValueRef cg_select(cg *c, LLVMValueRef cond, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildSelect(c->b, cond, a, b, ""); }

LLVMValueRef cg_max(cg *c, LLVMValueRef a, LLVMValueRef b, bool reduce) {
    /* a > b ? a : b keeps NaN from b; as a reduction it may be reordered. */
    LLVMValueRef cmp = fm(LLVMBuildFCmp(c->b, LLVMRealOGT, a, b, ""), false);
    (void)reduce;
    return cg_select(c, cmp, a, b);
}

LLVMValueRef cg_min(cg *c, LLVMValueRef a, LLVMValueRef b) {
    return cg_select(c, LLVMBuildFCmp(c->b, LLVMRealOLT, a, b, ""), a, b);
}

LLVMValueRef cg_smin(cg *c, LLVMValueRef a, LLVMValueRef b) { return cg_select(c, LLVMBuildICmp(c->b, LLVMIntSLT, a, b, ""), a, b); }
LLVMValueRef cg_smax(cg *c, LLVMValueRef a, LLVMValueRef b) { return cg_select(c, LLVMBuildICmp(c->b, LLVMIntSGT, a, b, ""), a, b); }

static LLVMValueRef fma3(cg *c, LLVMValueRef a, LLVMValueRef b, LLVMValueRef d) {
    LLVMValueRef args[3] = {a, b, d};
    return intrinsic(c, "llvm.fma", LLVMTypeOf(a), args, 3);
}

LLVMValueRef cg_fma(cg *c, LLVMValueRef a, LLVMValueRef b, LLVMValueRef d) { return fma3(c, a, b, d); }

LLVMValueRef cg_fconst(cg *c, LLVMValueRef like, double v) { return fc(c, like, v); }

/* exp(x): Cephes expf. n = round(x log2 e), r = x - n ln 2 in two parts, a degree-6 polynomial,
 * then scaled by 2^n through the exponent bits. */
LLVMValueRef cg_exp(cg *c, LLVMValueRef x) {
    LLVMValueRef xc = cg_min(c, cg_max(c, x, fc(c, x, -87.33654475), false), fc(c, x, 88.7228391));
    LLVMValueRef fx = cg_call1(c, "llvm.rint", cg_fmul(c, xc, fc(c, x, 1.44269504088896341), false));
    LLVMValueRef r = fma3(c, fx, fc(c, x, -0.693359375), xc);
    r = fma3(c, fx, fc(c, x, 2.12194440e-4), r);
    static const double p[] = {1.9875691500E-4, 1.3981999507E-3, 8.3334519073E-3, 4.1665795894E-2, 1.6666665459E-1,
                               5.0000001201E-1};
    LLVMValueRef y = fc(c, x, p[0]);
    for (int i = 1; i < 6; i++) y = fma3(c, y, r, fc(c, x, p[i]));
    LLVMValueRef z = cg_fmul(c, r, r, false);
    y = fma3(c, y, z, cg_fadd(c, r, fc(c, x, 1.0), false));
    LLVMValueRef ni = LLVMBuildFPToSI(c->b, fx, i32_like(c, x), "");
    ni = LLVMBuildShl(c->b, LLVMBuildAdd(c->b, ni, ic(c, x, 127), ""), ic(c, x, 23), "");
    LLVMValueRef scale = LLVMBuildBitCast(c->b, ni, LLVMTypeOf(x), "");
    y = cg_fmul(c, y, scale, false);
    /* Beyond the range: 0 below, +inf above (and NaN stays NaN through the comparisons). */
    y = cg_select(c, LLVMBuildFCmp(c->b, LLVMRealOLT, x, fc(c, x, -87.33654475), ""), fc(c, x, 0.0), y);
    y = cg_select(c, LLVMBuildFCmp(c->b, LLVMRealOGT, x, fc(c, x, 88.7228391), ""), fc(c, x, __builtin_inff()), y);
    return cg_select(c, LLVMBuildFCmp(c->b, LLVMRealUNO, x, x, ""), x, y);
}

LLVMValueRef cg_log(cg *c, LLVMValueRef x) { return cg_call1(c, "llvm.log", x); }

LLVMValueRef cg_sigmoid(cg *c, LLVMValueRef x) {
    LLVMValueRef e = cg_exp(c, LLVMBuildFNeg(c->b, x, ""));
    return cg_fdiv(c, fc(c, x, 1.0), cg_fadd(c, fc(c, x, 1.0), e, false));
}

/* tanh: odd Taylor polynomial below |x| = 0.3, else 1 - 2 / (exp(2|x|) + 1), with the sign. */
LLVMValueRef cg_tanh(cg *c, LLVMValueRef x) {
    LLVMValueRef ax = cg_call1(c, "llvm.fabs", x);
    LLVMValueRef e = cg_exp(c, cg_fmul(c, ax, fc(c, x, 2.0), false));
    LLVMValueRef big = cg_fsub(c, fc(c, x, 1.0), cg_fdiv(c, fc(c, x, 2.0), cg_fadd(c, e, fc(c, x, 1.0), false)));
    big = cg_call2(c, "llvm.copysign", big, x);
    LLVMValueRef x2 = cg_fmul(c, x, x, false);
    static const double p[] = {62.0 / 2835.0, -17.0 / 315.0, 2.0 / 15.0, -1.0 / 3.0, 1.0};
    LLVMValueRef y = fc(c, x, p[0]);
    for (int i = 1; i < 5; i++) y = fma3(c, y, x2, fc(c, x, p[i]));
    LLVMValueRef small = cg_fmul(c, y, x, false);
    return cg_select(c, LLVMBuildFCmp(c->b, LLVMRealOLT, ax, fc(c, x, 0.3), ""), small, big);
}

/* gelu(x) = x/2 * erfc(-x/sqrt 2), erfc from Numerical Recipes' erfcc (relative error < 1.2e-7). */
static LLVMValueRef erfc_scaled(cg *c, LLVMValueRef x) {
    LLVMValueRef u = cg_fmul(c, x, fc(c, x, -0.70710678118654752), false);
    LLVMValueRef z = cg_call1(c, "llvm.fabs", u);
    LLVMValueRef t = cg_fdiv(c, fc(c, x, 1.0), fma3(c, z, fc(c, x, 0.5), fc(c, x, 1.0)));
    static const double p[] = {0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807,
                               -0.18628806, 0.09678418, 0.37409196, 1.00002368, -1.26551223};
    LLVMValueRef y = fc(c, x, p[0]);
    for (int i = 1; i < 10; i++) y = fma3(c, y, t, fc(c, x, p[i]));
    LLVMValueRef arg = cg_fsub(c, y, cg_fmul(c, z, z, false));
    LLVMValueRef ans = cg_fmul(c, t, cg_exp(c, arg), false);
    return cg_select(c, LLVMBuildFCmp(c->b, LLVMRealOGE, u, fc(c, x, 0.0), ""), ans, cg_fsub(c, fc(c, x, 2.0), ans));
}

LLVMValueRef cg_gelu(cg *c, LLVMValueRef x) {
    return cg_fmul(c, cg_fmul(c, x, fc(c, x, 0.5), false), erfc_scaled(c, x), false);
}

/* gelu'(x) = Phi(x) + x phi(x), Phi(x) = erfc(-x/sqrt 2)/2, phi(x) = exp(-x^2/2)/sqrt(2 pi). */
LLVMValueRef cg_gelu_grad(cg *c, LLVMValueRef x) {
    LLVMValueRef Phi = cg_fmul(c, erfc_scaled(c, x), fc(c, x, 0.5), false);
    LLVMValueRef phi = cg_fmul(c, cg_exp(c, cg_fmul(c, cg_fmul(c, x, x, false), fc(c, x, -0.5), false)),
                               fc(c, x, 0.39894228040143268), false);
    return fma3(c, x, phi, Phi);
}

LLVMValueRef cg_epilogue(cg *c, int node, LLVMValueRef v) {
    for (int e = c->g->plan.fuse_next[node]; e >= 0; e = c->g->plan.fuse_next[e]) {
        if (c->g->nodes[e].op == PN_OP_MAXPOOL2D) break; /* a pooled conv: the kernel applies the rest */
        if (c->g->nodes[e].op != PN_OP_BATCHNORM) v = cg_unary(c, &c->g->nodes[e], v); /* folded: identity */
    }
    return v;
}

int cg_fused_pool(const cg *c, int node) {
    for (int e = c->g->plan.fuse_next[node]; e >= 0; e = c->g->plan.fuse_next[e])
        if (c->g->nodes[e].op == PN_OP_MAXPOOL2D) return e;
    return -1;
}

int cg_folded_bn(const cg *c, int node) {
    int e = c->g->plan.fuse_next[node];
    return e >= 0 && c->g->nodes[e].op == PN_OP_BATCHNORM ? e : -1;
}

static void add_fn_attr(cg *c, LLVMValueRef fn, const char *k, const char *v) {
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                               LLVMCreateStringAttribute(c->ctx, k, (unsigned)strlen(k), v, (unsigned)strlen(v)));
}

static void add_enum_attr(cg *c, LLVMValueRef fn, unsigned idx, const char *name) {
    unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
    LLVMAddAttributeAtIndex(fn, idx, LLVMCreateEnumAttribute(c->ctx, kind, 0));
}

LLVMValueRef cg_kernel_begin(cg *c, int node, int ninputs) {
    const pn_node *n = &c->g->nodes[node];
    int np = 1 + ninputs + 2; /* out, inputs, params, scratch */
    LLVMTypeRef args[70];
    PN_ASSERT(np + 3 <= 70);
    for (int i = 0; i < np; i++) args[i] = c->ptr;
    args[np] = args[np + 1] = args[np + 2] = c->i64;
    LLVMTypeRef ft = LLVMFunctionType(c->vd, args, (unsigned)np + 3, 0);
    char *name = pn_xasprintf("%s__k%d_%s", c->px, node, pn_ops[n->op].name);
    c->fn = LLVMAddFunction(c->mod, name, ft);
    free(name);
    LLVMSetLinkage(c->fn, LLVMInternalLinkage);
    add_enum_attr(c, c->fn, LLVMAttributeFunctionIndex, "nounwind");
    add_enum_attr(c, c->fn, LLVMAttributeFunctionIndex, "noinline"); /* one call per kernel; readable profiles */
    for (int i = 0; i < np; i++) {
        add_enum_attr(c, c->fn, (unsigned)i + 1, "noalias");
        add_enum_attr(c, c->fn, (unsigned)i + 1, "nocapture");
        if (i > 0 && i < np - 1) add_enum_attr(c, c->fn, (unsigned)i + 1, "readonly");
    }
    if (c->wide_vectors) add_fn_attr(c, c->fn, "prefer-vector-width", "512");
    /* Short copies stay inline loops rather than becoming memcpy calls. */
    add_fn_attr(c, c->fn, "no-builtins", "");
    c->params = LLVMGetParam(c->fn, (unsigned)np - 2);
    c->scratch = LLVMGetParam(c->fn, (unsigned)np - 1);
    c->n = LLVMGetParam(c->fn, (unsigned)np);
    c->ith = LLVMGetParam(c->fn, (unsigned)np + 1);
    c->nth = LLVMGetParam(c->fn, (unsigned)np + 2);
    LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "entry");
    LLVMPositionBuilderAtEnd(c->b, entry);
    return c->fn;
}

void cg_kernel_end(cg *c) { LLVMBuildRetVoid(c->b); }

LLVMValueRef cg_helper_begin(cg *c, int node, const char *what, LLVMTypeRef *args, unsigned n, cg_helper *h) {
    h->fn = c->fn;
    h->at = LLVMGetInsertBlock(c->b);
    char *name = pn_xasprintf("%s__k%d_%s", c->px, node, what);
    c->fn = LLVMAddFunction(c->mod, name, LLVMFunctionType(c->vd, args, n, 0));
    free(name);
    LLVMSetLinkage(c->fn, LLVMInternalLinkage);
    add_enum_attr(c, c->fn, LLVMAttributeFunctionIndex, "nounwind");
    add_enum_attr(c, c->fn, LLVMAttributeFunctionIndex, "noinline");
    for (unsigned i = 0; i < n; i++)
        if (args[i] == c->ptr) add_enum_attr(c, c->fn, i + 1, "noalias"), add_enum_attr(c, c->fn, i + 1, "nocapture");
    if (c->wide_vectors) add_fn_attr(c, c->fn, "prefer-vector-width", "512");
    add_fn_attr(c, c->fn, "no-builtins", "");
    LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, c->fn, "entry"));
    return c->fn;
}

void cg_helper_end(cg *c, cg_helper *h) {
    LLVMBuildRetVoid(c->b);
    c->fn = h->fn;
    if (h->at) LLVMPositionBuilderAtEnd(c->b, h->at);
}

LLVMValueRef cg_rows(cg *c, const pn_shape *s, int64_t *inner) {
    *inner = s->rank ? s->d[s->rank - 1] : 1;
    int64_t rest = 1;
    bool batched = pn_shape_batched(s);
    for (int i = batched ? 1 : 0; i < s->rank - 1; i++) rest *= s->d[i];
    if (batched && s->rank == 1) *inner = 1;
    return batched ? LLVMBuildMul(c->b, c->n, cg_i64(c, rest), "rows") : cg_i64(c, rest);
}

LLVMValueRef cg_numel(cg *c, const pn_shape *s) {
    int64_t e = pn_shape_sample_elems(s);
    return pn_shape_batched(s) ? LLVMBuildMul(c->b, c->n, cg_i64(c, e), "numel") : cg_i64(c, e);
}

LLVMValueRef cg_declare(cg *c, const char *name, LLVMTypeRef ret, LLVMTypeRef *args, unsigned n) {
    LLVMValueRef f = LLVMGetNamedFunction(c->mod, name);
    if (!f) f = LLVMAddFunction(c->mod, name, LLVMFunctionType(ret, args, n, 0));
    return f;
}
