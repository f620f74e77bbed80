/* The graph IR: an array of nodes in topological order; inputs refer to nodes by index.
 * A graph owns its arena; pn_graph_free releases everything at once. */
#ifndef PN_GRAPH_H
#define PN_GRAPH_H
#include "../support/arena.h"
#include "../support/diag.h"
#include "pnetrt_abi.h" /* PNETRT_MAX_RANK */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum {
    PN_OPF_INTERNAL = 1,  /* built from syntax, not called by name */
    PN_OPF_ELTWISE = 2,   /* elementwise: fusable into a producer */
    PN_OPF_PARAMS = 4,    /* owns parameters */
    PN_OPF_SHARDABLE = 8, /* @shard(features, K) may split its output features */
    PN_OPF_LOSS = 16,     /* a loss: only inside train { } */
    PN_OPF_EPILOGUE = 32, /* its kernel stores through an epilogue: a fused chain may follow (as may ELTWISE) */
    PN_OPF_VIEW = 64,     /* its value is its input's, reinterpreted: it shares the input's storage */
};

typedef enum {
#define PN_OP(id, name, sig, flags) PN_OP_##id,
#include "../ops.def"
#undef PN_OP
    PN_OP_COUNT
} pn_op;

struct pn_node;
struct pn_graph;
struct pn_shape_err;
struct pn_ref;

/* An op attribute in the text form: kind 'i' integer, 'b' boolean, 'p' pair of integers,
 * 'f' float (in fa[]), 'l' permutation of the node's rank; 'B' a boolean printed only when true
 * (`frozen`), false when absent; 'g' an integer printed only when not 1, 1 when absent (conv2d `groups`). */
typedef struct pn_attr_desc {
    const char *key;
    char kind;
    int slot;
} pn_attr_desc;

/* One row per op, in ir/ops.c: what the op is (from ops.def) and what it does in the IR. */
typedef struct pn_op_info {
    const char *name;
    const char *sig;
    unsigned flags;
    /* The shape rule (ir/shapes.c), run by pn_shape_infer after the arity and type checks. */
    bool (*shape)(struct pn_node *n, const struct pn_node *const *in, int nin, const int64_t *list, int nlist,
                  struct pn_shape_err *e);
    /* FLOPs per sample, given the output's elements per sample. */
    int64_t (*flops)(const struct pn_graph *g, const struct pn_node *n, int64_t out);
    const pn_attr_desc *attrs; /* the attributes of the text form */
    int nattrs;
    unsigned i32_inputs;    /* bit k: tensor input k must be i32 (the others are f32) */
    unsigned nograd_inputs; /* bit k: no gradient flows into tensor input k */
    unsigned any_inputs;    /* bit k: tensor input k may be f32 or i32 (only its shape is read) */
    /* The reference twin (ir/reference.c), in double: computes node i's value from its inputs';
     * false with the run's error set. */
    bool (*ref_forward)(struct pn_ref *r, int i);
    /* Adds node i's contribution to its inputs' and parameters' gradients; NULL: none flows. */
    void (*ref_backward)(struct pn_ref *r, int i);
} pn_op_info;

extern const pn_op_info pn_ops[PN_OP_COUNT];
/* Finds a callable op by name; returns PN_OP_COUNT when there is none. */
pn_op pn_op_lookup(const char *name);

typedef enum { PN_F32, PN_I32 } pn_dtype;
const char *pn_dtype_name(pn_dtype t);

enum { PN_MAX_RANK = PNETRT_MAX_RANK, PN_MAX_PARAMS = 4, PN_MAX_IATTR = 16 };
#define PN_BATCH INT64_C(-1) /* the symbolic batch dimension, only ever d[0] */

typedef struct pn_shape {
    int rank;
    int64_t d[PN_MAX_RANK];
} pn_shape;

static inline bool pn_shape_batched(const pn_shape *s) { return s->rank > 0 && s->d[0] == PN_BATCH; }
/* Elements per sample (the batch axis excluded); -1 on overflow. */
int64_t pn_shape_sample_elems(const pn_shape *s);
/* Writes "f32[batch,64]"-style text; returns buf. */
char *pn_shape_str(pn_dtype t, const pn_shape *s, char *buf, size_t n);

typedef struct pn_param_info {
    const char *suffix; /* "weight", "bias", "running_mean", ... */
    pn_shape shape;
    bool trainable;     /* running statistics are buffers, not trained */
} pn_param_info;

enum {
    PN_NODE_OUTPUT = 1, /* read by the caller */
    PN_NODE_TRAIN = 2,  /* exists only in training (train-only inputs, the loss) */
    PN_NODE_NAMED = 4,  /* named by the user, not generated */
};

/* Attribute slots per op (ia = integer attributes, fa = float attributes). */
enum {
    PN_DENSE_UNITS = 0, PN_DENSE_BIAS = 1, PN_DENSE_FROZEN = 2,
    PN_CONV_OUT = 0, PN_CONV_KH = 1, PN_CONV_KW = 2, PN_CONV_SH = 3, PN_CONV_SW = 4,
    PN_CONV_PH = 5, PN_CONV_PW = 6, PN_CONV_BIAS = 7, PN_CONV_FROZEN = 8,
    PN_CONV_GROUPS = 9, /* conv2d: channel groups, dividing in and out channels (1: dense) */
    PN_POOL_KH = 0, PN_POOL_KW = 1, PN_POOL_SH = 2, PN_POOL_SW = 3, PN_POOL_PH = 4, PN_POOL_PW = 5,
    PN_EMB_VOCAB = 0, PN_EMB_DIM = 1, PN_EMB_FROZEN = 2,
    PN_NORM_FROZEN = 0, /* batchnorm, layernorm (their eps and momentum are in fa[]) */
    PN_PRELU_FROZEN = 0,
    PN_PAD_TOP = 0, PN_PAD_BOTTOM = 1, PN_PAD_LEFT = 2, PN_PAD_RIGHT = 3, /* pad: zeros around axes 2 and 3 */
    PN_AXIS = 0,     /* softmax, log_softmax, concat, slice, positions: non-negative axis; causal_softmax: the last
                      * axis, set by its shape rule */
    PN_SLICE_START = 1, PN_SLICE_END = 2, /* slice (axis in PN_AXIS): 0 <= start < end <= size */
    PN_PERM = 0,     /* transpose: ia[0..rank-1] */
    PN_FA_VALUE = 0, /* const value, leaky_relu slope, elu alpha, dropout p, norm eps */
    PN_FA_MOMENTUM = 1,
};

typedef struct pn_node {
    const char *name; /* unique, PyTorch-style path: "r.a", "y.dense.0" */
    pn_op op;
    pn_dtype dtype;
    pn_shape shape;
    int ninputs;
    int32_t *in;      /* indices of earlier nodes */
    int64_t ia[PN_MAX_IATTR];
    double fa[4];
    int stage;        /* pipeline stage, 0.. */
    int shard;        /* output-feature split K; 1 = none */
    unsigned flags;   /* PN_NODE_* */
    int nparams;
    pn_param_info params[PN_MAX_PARAMS];
    const float *data; /* const of rank >= 1 (`const x : f32[...] = ...;`): its values, in the graph's arena;
                        * NULL for a scalar constant, whose value is fa[PN_FA_VALUE] */
    const char *source_name; /* an input's name in the model file it came from (an ONNX graph input
                              * such as "input.1") where that differs from name, else NULL */
    pn_loc loc;
} pn_node;

typedef struct pn_output {
    const char *name;
    int node;
    pn_loc loc;
    const char *source_name; /* its name in the model file (an ONNX graph output) where that differs, else NULL */
} pn_output;

typedef enum { PN_SCHED_GPIPE, PN_SCHED_1F1B } pn_pipe_schedule;
typedef enum { PN_LOSS_NONE, PN_LOSS_CROSS_ENTROPY, PN_LOSS_MSE } pn_loss_kind;
typedef enum { PN_OPT_SGD, PN_OPT_ADAM } pn_opt_kind;

typedef struct pn_train {
    bool present;
    int loss;         /* node index of the loss */
    pn_opt_kind opt;
    double lr, momentum, weight_decay, beta1, beta2, eps;
    bool nesterov;
    int64_t batch, epochs, seed;
} pn_train;

/* Where a node's values live, decided by passes/plan_memory.c. */
typedef enum {
    PN_MEM_NONE,   /* not computed: dead, training-only, or fused into its producer */
    PN_MEM_INPUT,  /* the caller's input buffer `index` */
    PN_MEM_OUTPUT, /* the caller's output buffer `index` */
    PN_MEM_ARENA,  /* the arena, at chunk * offset (batched) or at the fixed region + offset */
    PN_MEM_ALIAS,  /* the storage of node `index` (reshape, flatten, inference dropout) */
    PN_MEM_CONST,  /* a scalar constant, fa[PN_FA_VALUE] */
} pn_mem_kind;

typedef struct pn_mem {
    pn_mem_kind kind;
    int index;
    bool batched;     /* arena: per-sample region (offset * chunk) or fixed region */
    int64_t offset;   /* arena: bytes per sample (batched) or bytes (fixed) */
    int64_t bytes;    /* arena: bytes per sample (batched) or bytes (fixed) */
} pn_mem;

/* The geometry of a maxpool2d computed inside its conv2d's kernel, as pass_fuse_pool decided it. */
typedef struct pn_pool_grid {
    int64_t fh, fw;     /* phase factors: the pool's stride times the conv's */
    int64_t rows, cols; /* of one phase plane; cols is also the stride of the kernel's lane grid */
    int64_t lanes;      /* lanes of one window position's grid: (pooled rows - 1) * cols + pooled cols */
    int64_t floats;     /* the phase planes of one sample: channels * fh * fw * rows * cols */
} pn_pool_grid;

/* Facts the inference passes attach to a graph, indexed by node. */
typedef struct pn_plan {
    bool *live;            /* computed at inference */
    int *fuse_next;        /* the elementwise consumer applied in this node's epilogue, or -1 */
    bool *fused;           /* this node is an epilogue of its producer */
    pn_pool_grid *pool_grid; /* per conv2d that computes a maxpool2d (fuse_pool): its geometry */
    int64_t *param_offset; /* offset in floats of the node's first parameter in the buffer, or -1 */
    pn_mem *mem;
    int *order;            /* execution order: nodes by (stage, index), a topological order */
    int64_t param_floats;
    int64_t arena_sample_bytes, arena_fixed_bytes;
    int64_t chunk;
} pn_plan;

/* A dense layer's W^T [K, U] in the global area is stored in panels of P = pn_wt_panel(U) columns:
 * element (k, u) at (u / P) * K * P + k * P + u % P, the last panel padded. The forward GEMM then
 * streams a contiguous panel; every target's register tile width (16, 32 or 48 floats; 12 or 24
 * on 128-bit vectors) divides PN_WT_PANEL, so a tile never straddles two. A layer of at most
 * PN_WT_PANEL units is one panel of its own width: plain [K, U], nothing padded. */
#define PN_WT_PANEL 48
static inline int64_t pn_wt_panel(int64_t U) { return U < PN_WT_PANEL ? U : PN_WT_PANEL; }
/* Floats of that W^T [K, U] (its last panel padded), rounded to 16. Where the layer's input takes
 * a gradient, W [U, K] itself follows it in the same layout, in panels of pn_wt_panel(K) columns
 * (pn_wt_floats(K, U) floats; element (u, k) at (k / P) * U * P + u * P + k % P): the B operand of
 * dx = dy W, whose rows as W stores them lie K floats apart, a power of two for most widths,
 * which maps a panel's rows onto a few cache sets. */
static inline int64_t pn_wt_floats(int64_t U, int64_t K) {
    int64_t P = pn_wt_panel(U);
    return ((U + P - 1) / P * P * K + 15) / 16 * 16;
}

/* Facts the training pass attaches to a graph (passes/plan_train.c), indexed by node. A training
 * step runs over chunks of `chunk` samples; per sample, the training arena holds every value the
 * step computes (kept for the backward pass) and every gradient. */
typedef struct pn_tplan {
    bool present;
    bool *live;           /* computed in a training step: the loss and what it needs */
    bool *grad;           /* carries a gradient: reaches the loss and depends on a trained parameter */
    int *act;             /* the node whose storage holds this value (a view's source), or -1 */
    int *gbuf;            /* the node whose gradient buffer receives this node's gradient, or -1 */
    int64_t *act_off;     /* bytes per sample into the training arena, or -1 */
    int64_t *grad_off;    /* bytes per sample into the training arena, or -1 */
    int64_t *stat_off;    /* floats into a chunk's statistics (batchnorm partials: 4 per channel), or -1 */
    int64_t *global_off;  /* floats into the step's global area (batchnorm statistics, dense W^T), or -1 */
    int64_t *wp_off;      /* a dense layer's W in panels (pn_wt_floats) when its input takes a gradient, or -1 */
    bool *fused;          /* a relu that its input's convolution applies as it stores, in its storage */
    bool *pool_bwd;       /* a fused relu whose one consumer, a max-pool, computes its backward too */
    int64_t sample_bytes; /* training arena bytes per sample */
    int64_t stat_floats;  /* statistics per chunk: [0] loss sum, [1] correct count, then partials */
    int64_t global_floats;
    int64_t chunk;        /* samples per chunk: the unit of the fixed gradient reduction */
    int loss;             /* the loss node */
} pn_tplan;

typedef struct pn_graph {
    pn_arena arena;
    const char *name;
    pn_node *nodes;
    int nnodes, capnodes;
    pn_output *outputs;
    int noutputs, capoutputs;
    int nstages;
    int replicas;            /* @shard(batch, R); 1 = none */
    bool has_shard_batch;    /* @shard(batch, R) was given; without it the runtime picks per call */
    int microbatches;        /* @pipeline(microbatches = M); 1 = none */
    pn_pipe_schedule schedule;
    bool has_pipeline;
    pn_train train;
    pn_plan plan; /* filled by the inference passes; zero until then */
    pn_tplan tplan; /* filled by pass_plan_train when the network has a train block */
    int train_chunk;  /* pnetc --train-chunk: samples per gradient chunk; 0 = the default */
    const struct pn_profile *profile; /* measured costs (pnetc --profile, ir/report.h), or NULL; not owned */
    /* The CPUs the report's prediction runs the stages on (pnetc --cores; else the profiled machine's,
     * else this machine's when compiling for it); 0 = a core per stage. cores_from says whose. */
    int cores;
    const char *cores_from;
} pn_graph;

pn_graph *pn_graph_new(const char *name);
void pn_graph_free(pn_graph *g);
/* Appends a node (copied); returns its index. Inputs must refer to earlier nodes. */
int pn_graph_add(pn_graph *g, const pn_node *n, const int32_t *inputs, int ninputs);
void pn_graph_add_output(pn_graph *g, const char *name, int node, pn_loc loc);
/* Number of parameter elements of a node. */
int64_t pn_node_param_count(const pn_node *n);
/* FLOPs per sample of a node (multiply-add = 2). */
int64_t pn_node_flops(const pn_graph *g, const pn_node *n);
/* The geometry of a maxpool2d (pool) over conv's output, as pass_fuse_pool computes it inside
 * the conv's kernel. */
void pn_pool_grid_of(const pn_graph *g, int conv, int pool, pn_pool_grid *out);
/* Whether that kernel can: pool is a maxpool2d whose windows tile its input (kernel = stride, no
 * padding, at most 8 positions), conv a conv2d of one group, and the phase planes fit a cache.
 * The rest of pass_fuse_pool's test (one use, one stage, unsharded f32) is about the chain. */
bool pn_pool_tiles(const pn_graph *g, int conv, int pool);
/* Whether conv2d node n, without a fused max-pool, runs as an implicit GEMM that gathers its
 * patches into a panel (codegen's cg_gen_conv2d): not with stride 1 and no padding in one group
 * (then it reads its input shifted, in place), nor with groups of fewer output channels than mr,
 * the GEMM tile's rows (then by direct taps). */
bool pn_conv_gathers(const pn_node *n, int mr);
/* After pass_fuse: the node whose kernel computes node i (i itself unless it is fused into a
 * producer's epilogue chain). */
int pn_fused_head(const pn_graph *g, int i);

/* The attributes of op in the text form (pn_ops[op].attrs). */
const pn_attr_desc *pn_op_attrs(pn_op op, int *n);

/* Text form: one node per line; see docs/language.md ("Graph IR"). */
void pn_graph_print(const pn_graph *g, FILE *out);
/* Parses the text form back into a graph, re-deriving parameters and checking every shape.
 * Returns NULL and writes "line N: problem" to err on bad input. */
pn_graph *pn_graph_parse(const char *text, size_t len, char *err, size_t errlen);
/* Graphviz form, with one cluster per pipeline stage. */
void pn_graph_print_dot(const pn_graph *g, FILE *out);

#endif
