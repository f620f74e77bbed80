/* Shared state and IR-building helpers of the LLVM code generator. One cg per module; it caches
 * the LLVM types and knows the kernel being built. */
#ifndef PN_CG_H
#define PN_CG_H
#include "../ir/graph.h"

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

typedef struct pn_cg_options {
    const char *triple;     /* NULL: the host */
    const char *cpu;        /* NULL: the host's */
    int opt_level;          /* 0..3 */
    const float *weights;   /* plan.param_floats floats to embed, or NULL */
    bool emit_main;         /* an executable: add main() */
} pn_cg_options;

/* A codegen error, as data: the node it is about (-1: none) and its source range (PN_NOLOC:
 * none), and the message. The driver prints it through support/diag.c like any other error. */
typedef struct pn_cg_error {
    int node;
    pn_loc loc;
    char msg[1024];
} pn_cg_error;

typedef struct cg {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMBuilderRef b;
    LLVMTargetMachineRef tm;
    LLVMTypeRef i1, i8, i32, i64, f32, ptr, vd;
    const pn_graph *g;
    const char *px;         /* symbol prefix: the network's name */
    bool wide_vectors;      /* the target has AVX-512: prefer 512-bit vectors */
    bool x86;               /* an x86-64 target (AVX2 assumed for the GEMM tiles) */
    int64_t *pack_offset;   /* per node: packed weights in the prepared buffer, or -1 */
    int64_t *pack_width;    /* per node with packed weights: columns per panel */
    int64_t *fold_bias;     /* per conv2d with a folded batchnorm: its bias in the prepared buffer */
    int64_t prepared_floats;
    /* The kernel being built. */
    LLVMValueRef fn, n, ith, nth, params, scratch;
    LLVMValueRef tctx;      /* a training kernel's context (train.h) */
    LLVMValueRef call;      /* a step-wide function's call (train.h) */
    int64_t scratch_bytes;  /* the most any kernel needs per thread */
    pn_cg_error error;      /* why pn_codegen failed (cg_fail) */
} cg;

/* A counted loop for (iv = lo; iv < hi; iv += 1), built in place. */
typedef struct cg_loop {
    LLVMBasicBlockRef head, body, exit;
    LLVMValueRef iv;
    LLVMBasicBlockRef pre;
    LLVMValueRef acc[64], next[64]; /* loop-carried values (reductions) */
    int nacc;
    int unroll; /* 0: the optimiser decides; n: unroll by n (1: never), set before cg_loop_end */
    /* Set before cg_loop_end: the loop vectorizer leaves this loop alone. For an outer loop whose
     * inner loop is the vector one: vectorizing the outer loop too turns the inner loop's
     * contiguous rows into gathers and scatters (an add over rows of 16 floats ran 8x slower). */
    bool novec;
} cg_loop;

/* Records why code generation failed, about node (or -1); a later failure replaces it. */
void cg_fail(cg *c, int node, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
LLVMValueRef cg_i64(cg *c, int64_t v);
LLVMValueRef cg_f32(cg *c, double v);
void cg_loop_begin(cg *c, cg_loop *l, LLVMValueRef lo, LLVMValueRef hi, const char *name);
void cg_loop_end(cg *c, cg_loop *l);
/* A loop-carried value: starts as init, becomes `next` (set with cg_loop_next) each iteration;
 * after the loop the returned value holds the final result. */
LLVMValueRef cg_loop_acc(cg *c, cg_loop *l, LLVMValueRef init);
void cg_loop_next(cg_loop *l, LLVMValueRef acc, LLVMValueRef next);
/* if (cond) { ... }: the code built between begin and end runs only when cond holds. */
typedef struct cg_if {
    LLVMBasicBlockRef done;
} cg_if;
void cg_if_begin(cg *c, cg_if *f, LLVMValueRef cond);
void cg_if_end(cg *c, cg_if *f);
/* This thread's share [lo, hi) of total items, in contiguous order. */
void cg_split(cg *c, LLVMValueRef total, LLVMValueRef *lo, LLVMValueRef *hi);
/* Address of float element idx (i64) of p. */
LLVMValueRef cg_gep(cg *c, LLVMValueRef p, LLVMValueRef idx);
LLVMValueRef cg_load(cg *c, LLVMValueRef p, LLVMValueRef idx);
void cg_store(cg *c, LLVMValueRef v, LLVMValueRef p, LLVMValueRef idx);
LLVMValueRef cg_load_i32(cg *c, LLVMValueRef p, LLVMValueRef idx);
/* Float arithmetic, exactly as written: no contraction or reassociation flags, so the vector body
 * and the scalar remainder of a loop round alike and results never depend on how work is split.
 * Fused multiply-adds are explicit (cg_fma). `reduce` is kept for call sites' clarity only. */
LLVMValueRef cg_fadd(cg *c, LLVMValueRef a, LLVMValueRef b, bool reduce);
LLVMValueRef cg_fsub(cg *c, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_fmul(cg *c, LLVMValueRef a, LLVMValueRef b, bool reduce);
LLVMValueRef cg_fdiv(cg *c, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_fma(cg *c, LLVMValueRef a, LLVMValueRef b, LLVMValueRef d);
/* The float constant v in the type of `like` (a float or a vector of floats). */
LLVMValueRef cg_fconst(cg *c, LLVMValueRef like, double v);
LLVMValueRef cg_call1(cg *c, const char *intrinsic, LLVMValueRef x);
LLVMValueRef cg_call2(cg *c, const char *intrinsic, LLVMValueRef x, LLVMValueRef y);
LLVMValueRef cg_max(cg *c, LLVMValueRef a, LLVMValueRef b, bool reduce);
LLVMValueRef cg_min(cg *c, LLVMValueRef a, LLVMValueRef b);
/* Vectorisable elementary functions, accurate to a few ulp (no libm calls). */
LLVMValueRef cg_exp(cg *c, LLVMValueRef x);
LLVMValueRef cg_sigmoid(cg *c, LLVMValueRef x);
LLVMValueRef cg_tanh(cg *c, LLVMValueRef x);
LLVMValueRef cg_gelu(cg *c, LLVMValueRef x);
LLVMValueRef cg_gelu_grad(cg *c, LLVMValueRef x);
LLVMValueRef cg_log(cg *c, LLVMValueRef x);
LLVMValueRef cg_select(cg *c, LLVMValueRef cond, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_smin(cg *c, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_smax(cg *c, LLVMValueRef a, LLVMValueRef b);

/* The function `name` of the module, declared with this type when it is not there yet. */
LLVMValueRef cg_declare(cg *c, const char *name, LLVMTypeRef ret, LLVMTypeRef *args, unsigned n);
/* Starts kernel function px__k<node>_<op>(out, in..., params, scratch, n, ith, nth). */
LLVMValueRef cg_kernel_begin(cg *c, int node, int ninputs);
void cg_kernel_end(cg *c);
/* A helper of node's kernel, NAME__k<node>_<what>(args), internal and never inlined, so that its
 * registers are its own: a GEMM loop keeps its tile in registers only where no other loop of its
 * function keeps vector constants live across it (conv.c). Pointer arguments are noalias. Built
 * between cg_helper_begin and cg_helper_end, which returns the builder to the end of the block it
 * was in. The body uses only the helper's own arguments: c->n, ith, nth, params and scratch are
 * still the kernel's. */
typedef struct cg_helper {
    LLVMValueRef fn;
    LLVMBasicBlockRef at;
} cg_helper;
LLVMValueRef cg_helper_begin(cg *c, int node, const char *what, LLVMTypeRef *args, unsigned n, cg_helper *h);
void cg_helper_end(cg *c, cg_helper *h);
/* Applies node's fused elementwise chain (its fuse_next successors) to v. */
LLVMValueRef cg_epilogue(cg *c, int node, LLVMValueRef v);
/* The maxpool2d whose windows node's kernel computes (pass_fuse_pool), or -1. cg_epilogue
 * stops before it; cg_epilogue(c, pool, v) applies what follows it. */
int cg_fused_pool(const cg *c, int node);
/* The batchnorm folded into node's weights by the prepare function, or -1. */
int cg_folded_bn(const cg *c, int node);
/* Applies one unary elementwise op to v: its row's `unary` column (dispatch.c). */
LLVMValueRef cg_unary(cg *c, const pn_node *op, LLVMValueRef v);

/* One element of an elementwise op's backward (eltwise_grad.c): its input's and its value's
 * arrays, the element's index in them, and the chunk's first element in the batch. */
typedef struct cg_elt {
    LLVMValueRef x, y, idx, base;
} cg_elt;

/* One node's part of a pass of the training step that needs the whole batch (batchnorm's batch
 * statistics): a kernel on every chunk, a step-wide sync that combines the chunks, then a kernel
 * on every chunk again (NULL: none). */
typedef struct cg_pass {
    LLVMValueRef kernel, sync, after;
} cg_pass;

/* One row per op of ops.def (dispatch.c): its kernel generators. */
typedef struct cg_op_row {
    /* The inference kernel of a node, or NULL when it needs none (inputs, views, losses). */
    LLVMValueRef (*kernel)(cg *c, int node);
    /* Its backward kernel (train.h): reads y, dy and the inputs, writes (acc[k]: adds to) the
     * inputs' gradients and its parameter gradients; NULL when it needs none (views, losses)
     * or when `synced` builds it (batchnorm). */
    LLVMValueRef (*backward)(cg *c, int node, const bool *acc);
    /* An elementwise op of one tensor, or + - * by a scalar constant: its value at one element v
     * (a float or a vector), for its own kernel (cg_gen_eltwise) and for the epilogue of the
     * producer it is fused into (pass_fuse); NULL for the other ops. In eltwise.c. */
    LLVMValueRef (*unary)(cg *c, const pn_node *op, LLVMValueRef v);
    /* Its backward at one element: dy times the derivative (cg_bwd_unary); NULL when unary is or
     * when cg_bwd_unary is not its backward. In eltwise_grad.c. */
    LLVMValueRef (*unary_grad)(cg *c, int node, LLVMValueRef dy, const cg_elt *at);
    /* The training step (step.c). `train`: its training forward, a training kernel (train.h),
     * where it differs from the inference kernel (dense keeps what its backward reads, dropout
     * draws its mask); NULL: the inference kernel runs in training too. */
    LLVMValueRef (*train)(cg *c, int node);
    /* Its kernel in the evaluation forward where the training forward's must not serve: the
     * inference-mode kernel over the training layout (dropout's copy, batchnorm's running
     * statistics); NULL: the training forward's own kernel. */
    LLVMValueRef (*eval)(cg *c, int node);
    /* An op whose training forward and backward each wait on the whole batch (batchnorm): the
     * pass, in place of train and backward (acc as for backward; NULL in the forward). Such an
     * op has an eval column. */
    cg_pass (*synced)(cg *c, int node, bool backward, const bool *acc);
} cg_op_row;
const cg_op_row *cg_op(pn_op op);
/* The read-only global holding constant node i's value (dispatch.c), made on first use. */
LLVMValueRef cg_const_global(cg *c, int i);
/* The inference kernel of node i (dispatch.c), or NULL when it needs none (views, inputs). */
LLVMValueRef cg_gen_kernel(cg *c, int i);
/* Kernel generators, one per construct. Each builds px__k<node> and returns it, or NULL when the
 * node needs no kernel. Arguments: out, then one pointer per tensor input, then the params. */
LLVMValueRef cg_gen_dense(cg *c, int node);
/* The register-blocked dense kernel over weights packed by the prepare function; pack_rel is the
 * packed panels' offset from the node's parameters. */
LLVMValueRef cg_gen_dense_packed(cg *c, int node, int64_t pack_rel);
/* GEMM tile shape for the target: vector width, rows per tile, vectors per panel. */
void cg_gemm_shape(const cg *c, int *vw, int *mr, int *nv);
/* Whether a masked load's mask takes a vector register (AVX2, NEON; AVX-512 has mask registers). */
bool cg_masks_take_vregs(const cg *c);
/* The most rows of ncol vectors a micro-tile keeps in registers beside nmask masks. */
int cg_tile_rows_max(const cg *c, int ncol, int nmask);
/* acc[i][j] = init[i][j] + sum over k in [k0, k1) of arow[i][k] * bpanel[k*NR + j*VW ...]. */
void cg_micro_tile(cg *c, LLVMValueRef *arow, int mr, LLVMValueRef bpanel, int64_t NR, LLVMValueRef k0,
                   LLVMValueRef k1, LLVMValueRef init[][8], LLVMValueRef acc[][8]);
/* The same with row k of B at bpanel + boffs[k] (an i64 table) and optional lane masks. */
void cg_micro_tile_ex(cg *c, LLVMValueRef *arow, int mr, LLVMValueRef bpanel, int64_t NR, LLVMValueRef boffs,
                      LLVMValueRef *bmask, LLVMValueRef k0, LLVMValueRef k1, LLVMValueRef init[][8],
                      LLVMValueRef acc[][8]);
/* The same for nwin B operands at once that share A: operand w's row k is bpanel +
 * boffs[w*wstride + k], nv vectors wide, and accumulates into acc[i][w*nv + j] (nv*nwin <= 8). */
void cg_micro_tile_win(cg *c, LLVMValueRef *arow, int mr, int nv, int nwin, int64_t wstride, LLVMValueRef bpanel,
                       int64_t NR, LLVMValueRef boffs, LLVMValueRef *bmask, LLVMValueRef k0, LLVMValueRef k1,
                       LLVMValueRef init[][8], LLVMValueRef acc[][8]);
/* Lines a micro-tile prefetches for writing as it runs, one per k (the last again once done): rows
 * base + r * ld, r < rows, each nv vectors wide. */
typedef struct cg_pf {
    LLVMValueRef base, ld;
    int rows, nv;
} cg_pf;
/* One window of nv vectors (masked by bmask when given) with a_i[k] at arow[i][k * ak]: A read down
 * its columns; with pf, the lines it names prefetched. */
void cg_micro_tile_a(cg *c, LLVMValueRef *arow, int64_t ak, int mr, int nv, LLVMValueRef bpanel, int64_t NR,
                     LLVMValueRef *bmask, LLVMValueRef k0, LLVMValueRef k1, LLVMValueRef init[][8], LLVMValueRef acc[][8],
                     const cg_pf *pf);
LLVMValueRef cg_splat(cg *c, LLVMValueRef s, int vw);
LLVMValueRef cg_mask_const(cg *c, int vw, int valid);
/* The i64 vector <0, 1, ..., vw-1>, and the lane mask base + lane < limit (i64 scalars, signed). */
LLVMValueRef cg_lane_index(cg *c, int vw);
LLVMValueRef cg_lanes_below(cg *c, int vw, LLVMValueRef base, LLVMValueRef limit);
/* The lane masks of a panel's NV vectors: all lanes, or, when is_tail, the first `tail` columns. */
void cg_panel_masks(cg *c, LLVMValueRef is_tail, int tail, LLVMValueRef *mask);
LLVMValueRef cg_masked_load(cg *c, LLVMTypeRef vt, LLVMValueRef p, LLVMValueRef mask);
void cg_masked_store(cg *c, LLVMValueRef v, LLVMValueRef p, LLVMValueRef mask);
/* A hint that the cache line at p will be written (rw 1) or read (0) soon: llvm.prefetch into L1. */
void cg_prefetch(cg *c, LLVMValueRef p, int rw);
LLVMValueRef cg_gen_matmul(cg *c, int node);
LLVMValueRef cg_gen_conv2d(cg *c, int node);
/* conv2d node with its fused maxpool2d pool (conv_pool.c). */
LLVMValueRef cg_gen_conv2d_pooled(cg *c, int node, int pool);
/* The channel panel width of conv node's weights, packed [panel][k][channel] by the prepare
 * function, when its kernel wants them so (lanes over channels), else 0. */
int64_t cg_conv_pack_width(const cg *c, int node);
/* Shared by the conv kernels (conv_common.c): the bias of a conv (its own or a folded batchnorm's) or
 * NULL, and a private constant table of n i64 offsets for node's kernel (frees ov). */
LLVMValueRef cg_conv_bias(cg *c, int node);
LLVMValueRef cg_offset_table(cg *c, int node, LLVMValueRef *ov, int64_t n);
/* Stores of a lane grid: lane l of vector j (of nv) of a panel starting at grid position q0 is
 * output (q / G, q % G) for q = q0 + j*VW + l, so one vector spans a few output rows; columns
 * >= ow and positions >= qmax are dropped. For each row a vector touches, one masked store, skipped
 * when none of its lanes is in that row. */
enum { CG_GRID_MAX_ROWS = 20 };
typedef struct cg_grid_out {
    int nv, vw, rows;
    LLVMValueRef q0;
    int64_t G, ow;
    LLVMValueRef lanes_row[8][CG_GRID_MAX_ROWS];
} cg_grid_out;
void cg_grid_out_init(cg *c, cg_grid_out *go, LLVMValueRef q0, int64_t G, int64_t ow, int64_t qmax, int nv);
/* Stores vector j of the panel into the output plane (rows of ow floats). */
void cg_grid_out_store(cg *c, const cg_grid_out *go, int j, LLVMValueRef v, LLVMValueRef plane);
LLVMValueRef cg_gen_pool(cg *c, int node);
LLVMValueRef cg_gen_global_avgpool(cg *c, int node);
LLVMValueRef cg_gen_eltwise(cg *c, int node);
/* The unary column (eltwise.c): each elementwise op's value at one element. */
LLVMValueRef cg_ew_relu(cg *c, const pn_node *op, LLVMValueRef v);
LLVMValueRef cg_ew_leaky_relu(cg *c, const pn_node *op, LLVMValueRef v);
LLVMValueRef cg_ew_sigmoid(cg *c, const pn_node *op, LLVMValueRef v);
LLVMValueRef cg_ew_tanh(cg *c, const pn_node *op, LLVMValueRef v);
LLVMValueRef cg_ew_gelu(cg *c, const pn_node *op, LLVMValueRef v);
LLVMValueRef cg_ew_silu(cg *c, const pn_node *op, LLVMValueRef v);
LLVMValueRef cg_ew_elu(cg *c, const pn_node *op, LLVMValueRef v);
LLVMValueRef cg_ew_softplus(cg *c, const pn_node *op, LLVMValueRef v);
LLVMValueRef cg_ew_identity(cg *c, const pn_node *op, LLVMValueRef v);
LLVMValueRef cg_ew_const_binary(cg *c, const pn_node *op, LLVMValueRef v);
LLVMValueRef cg_gen_binary(cg *c, int node);
LLVMValueRef cg_gen_softmax(cg *c, int node);
LLVMValueRef cg_gen_layernorm(cg *c, int node);
LLVMValueRef cg_gen_batchnorm(cg *c, int node);
LLVMValueRef cg_gen_transpose(cg *c, int node);
LLVMValueRef cg_gen_concat(cg *c, int node);
LLVMValueRef cg_gen_slice(cg *c, int node);
LLVMValueRef cg_gen_pad(cg *c, int node);
LLVMValueRef cg_gen_prelu(cg *c, int node);
LLVMValueRef cg_gen_positions(cg *c, int node);
LLVMValueRef cg_gen_embedding(cg *c, int node);
LLVMValueRef cg_gen_copy(cg *c, int node);

/* Rows (the batch times any leading dims) of a node's value and its per-row width. */
LLVMValueRef cg_rows(cg *c, const pn_shape *s, int64_t *inner);
/* Number of elements of a shape for the current n. */
LLVMValueRef cg_numel(cg *c, const pn_shape *s);

#endif
