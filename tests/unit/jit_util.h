/* Test helper shared by the unit tests that run generated code: compiles .pnet source text
 * in-process through the compiler core and loads the object with LLVM's ORC JIT, which resolves
 * libpnetrt's symbols in the test process (link it whole-archive, with ENABLE_EXPORTS). Include
 * after <cmocka.h>; every function is static, so each test has its own random stream. */
#ifndef PNET_TESTS_JIT_UTIL_H
#define PNET_TESTS_JIT_UTIL_H

#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check/check.h"
#include "codegen/codegen.h"
#include "parse/parse.h"
#include "passes/passes.h"
#include "rt.h"

static uint64_t rng = 88172645463325252ull;
static double rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

typedef struct compiled {
    LLVMOrcLLJITRef jit;
    const pnetrt_desc *desc;
    pn_graph *g;
    float *weights; /* embedded weights, or NULL */
} compiled;

static pn_graph *check_source(const char *src) {
    pn_diags d;
    pn_diags_init(&d, stderr);
    pn_program prog;
    pn_program_init(&prog, &d);
    pn_graph *g = NULL;
    pn_module *m = pn_program_load(&prog, "kernel.pnet", src, strlen(src));
    if (m && !d.nerrors) pn_check(&prog, NULL, &g);
    pn_diags_flush(&d);
    pn_program_free(&prog);
    pn_diags_free(&d);
    return g;
}

/* Compiles src and loads it into a JIT; with embed, random weights are embedded (running
 * variances positive), else the network starts from libpnetrt's default initialisation. */
static void compile_net(const char *src, bool embed, int opt_level, compiled *out) {
    memset(out, 0, sizeof *out);
    out->g = check_source(src);
    assert_non_null(out->g);
    for (int i = 0; i < pn_npasses; i++) pn_passes[i].run(out->g);
    if (embed) {
        int64_t np = out->g->plan.param_floats;
        out->weights = calloc((size_t)(np ? np : 1), sizeof(float));
        for (int i = 0; i < out->g->nnodes; i++) {
            const pn_node *n = &out->g->nodes[i];
            int64_t off = out->g->plan.param_offset[i];
            for (int k = 0; k < n->nparams; k++) {
                int64_t e = pn_shape_sample_elems(&n->params[k].shape);
                bool positive = strcmp(n->params[k].suffix, "running_var") == 0;
                for (int64_t j = 0; j < e; j++) out->weights[off + j] = (float)(positive ? 0.5 + rnd() : rnd() - 0.5);
                off += (e + 15) / 16 * 16;
            }
        }
    }
    pn_cg_options opt = {.opt_level = opt_level, .weights = out->weights};
    cg c;
    if (!pn_codegen(out->g, &opt, &c)) fail_msg("codegen: %s", c.error.msg);
    LLVMMemoryBufferRef buf;
    char *msg = NULL;
    assert_false(LLVMTargetMachineEmitToMemoryBuffer(c.tm, c.mod, LLVMObjectFile, &msg, &buf));
    pn_codegen_free(&c);
    assert_null(LLVMOrcCreateLLJIT(&out->jit, NULL));
    LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(out->jit);
    LLVMOrcDefinitionGeneratorRef gen;
    assert_null(LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(out->jit), NULL, NULL));
    LLVMOrcJITDylibAddGenerator(jd, gen);
    assert_null(LLVMOrcLLJITAddObjectFile(out->jit, jd, buf));
    char sym[160];
    snprintf(sym, sizeof sym, "%s_descriptor", out->g->name);
    LLVMOrcExecutorAddress addr = 0;
    assert_null(LLVMOrcLLJITLookup(out->jit, &addr, sym));
    const pnetrt_desc *(*get)(void) = (const pnetrt_desc *(*)(void))(uintptr_t)addr;
    out->desc = get();
}

static void release(compiled *c) {
    LLVMOrcDisposeLLJIT(c->jit);
    pn_graph_free(c->g);
    free(c->weights);
}

#endif
