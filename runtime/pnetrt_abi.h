/* The contract between code that pnetc generates and libpnetrt. pnetc emits one pnetrt_desc per
 * network; every field of these structs is 8 bytes wide, so the compiler lays them out as LLVM
 * structs of i64 and ptr with no padding rules to mirror. Bump PNETRT_ABI on any change. Private:
 * not installed; users see pnetrt_desc only as the opaque type of pnet.h. */
#ifndef PNETRT_ABI_H
#define PNETRT_ABI_H
#include <stdint.h>

#define PNETRT_ABI 13

/* The most dimensions of a tensor: the one definition (pnetc's PN_MAX_RANK is this). */
#define PNETRT_MAX_RANK 8

/* Limits that pnetc checks and libpnetrt relies on: pipeline stages, and a network's inputs and
 * outputs (each call keeps a pointer per input and output on its threads' stacks). */
enum { PNETRT_MAX_STAGES = 64, PNETRT_MAX_IO = 4096 };
/* The most partial sums of the gradient that a step's update adds (pnetrt_train_call's sums). */
enum { PNETRT_MAX_SUMS = 8 };

/* How a parameter starts when no weights are given: PyTorch's default initialisation. */
enum {
    PNETRT_INIT_KAIMING = 0, /* U(-b, b), b = 1/sqrt(fan_in): kaiming_uniform(a=sqrt(5)) */
    PNETRT_INIT_BIAS = 1,    /* U(-b, b), b = 1/sqrt(fan_in) of the layer's weight */
    PNETRT_INIT_ONES = 2,
    PNETRT_INIT_ZEROS = 3,
    PNETRT_INIT_NORMAL = 4,  /* N(0, 1): embedding */
    PNETRT_INIT_QUARTER = 5, /* 0.25: prelu's slopes */
};

typedef struct pnetrt_tensor_desc {
    const char *name;
    int64_t dtype;                   /* 0 f32, 1 i32 */
    int64_t rank;
    int64_t shape[PNETRT_MAX_RANK];  /* shape[0] == -1: the batch */
    int64_t offset;                  /* params: offset in floats into the parameter buffer */
    int64_t init;                    /* params: PNETRT_INIT_* */
    int64_t fan_in;                  /* params: fan-in for the default initialisation */
    int64_t trainable;               /* params: 0 for buffers such as running statistics */
    int64_t limit;                   /* i32 inputs read as ids: values must lie in [0, limit); else 0 */
    /* Inputs and outputs: the name the model file gave it where that is not `name` (an ONNX graph's
     * "input.1" or "0", whose identifier is input_1 or v0), else NULL. Either finds it. */
    const char *source_name;
} pnetrt_tensor_desc;

typedef struct pnetrt_layer_desc {
    const char *name;
    const char *op;
    const char *type;    /* "f32[batch,128]" */
    const char *inputs;  /* "x, fc1" */
    int64_t params;      /* parameter elements */
    int64_t flops;       /* per sample */
    int64_t stage;
    int64_t shard;
    int64_t offset;      /* bytes per sample into the arena, or -1 (no buffer of its own) */
    int64_t bytes;       /* bytes per sample */
} pnetrt_layer_desc;

/* One call of the generated forward function over n <= chunk samples. */
typedef struct pnetrt_call {
    int64_t n;
    const void *const *inputs; /* one pointer per network input, at the first sample */
    void *const *outputs;      /* one pointer per network output */
    const float *params;       /* the parameter buffer (prepared: batchnorm folded) */
    char *arena;               /* activations: arena_sample_bytes * cap + arena_fixed_bytes */
    char *scratch;             /* scratch_bytes per thread, thread ith's at ith * scratch_bytes */
    int64_t cap;               /* samples the arena holds (>= n): a chunk, or a micro-batch slot */
} pnetrt_call;

typedef void (*pnetrt_forward_fn)(const pnetrt_call *call, int64_t ith, int64_t nth);
/* Derives the prepared parameters (for example batchnorm folded into a conv) from the raw ones. */
typedef void (*pnetrt_prepare_fn)(const float *raw, float *prepared);
/* Parameter p's rows [row0, row0 + nrows) (its first axis; a scalar is one row), held alone in
 * `rows`, into a zeroed prepared buffer, and back out of it. */
typedef void (*pnetrt_prepare_param_fn)(int64_t p, int64_t row0, int64_t nrows, const float *rows, float *prepared);
typedef void (*pnetrt_unprepare_param_fn)(int64_t p, int64_t row0, int64_t nrows, const float *prepared, float *rows);

/* One training step's shared state (all 8-byte fields). The batch is split into chunks of
 * train->chunk samples; chunk k's parameter gradients go to slots + k * param_floats and its
 * statistics (loss sum, correct count, batchnorm partials) to stats + k * stat_floats. */
typedef struct pnetrt_train_call {
    const void *const *inputs; /* the network's inputs, then its training inputs, at sample 0 */
    float *params;             /* raw parameters: read, and updated by the update function */
    float *slots;
    float *stats;
    float *global;             /* global_floats: batch statistics, transposed weights */
    float *opt;                /* optimizer state: opt_floats */
    int64_t batch, nchunks;
    int64_t step;              /* 1 for the first step */
    int64_t seed;              /* dropout masks */
    double lr;
    double adam_step_size;     /* lr / (1 - beta1^step) */
    double adam_bc2_sqrt;      /* sqrt(1 - beta2^step) */
    /* The parameter elements the update function updates: [elem_lo, elem_hi) of the buffer (0 and
     * param_floats: every one). Data-parallel ranks each update their slice, then all-gather. */
    int64_t elem_lo, elem_hi;
    /* Floats from one optimizer state vector to the next (adam's exp_avg, then exp_avg_sq at
     * opt + opt_stride): param_floats, or a stage rank's stage's elements. */
    int64_t opt_stride;
    /* With the gradient tree folded (runtime gradtree.h): the tree's partial sums left at the
     * update, addressed by element index, which the update adds from the right, sums[0] +
     * (sums[1] + (... + sums[nsums - 1])), as the tree would; nsums <= PNETRT_MAX_SUMS. 0: the
     * update sums the chunks' slots by the tree instead. */
    float *const *sums;
    int64_t nsums;
    /* 1: the chunk's kernels add its parameter gradients to what its slot holds (the left
     * sibling's gradient, fl(slot + chunk's) as the tree's addition), rather than write them; only
     * where the descriptor's grad_add says every writer can (runtime gradtree.h, train_fold.c). */
    int64_t grad_add;
} pnetrt_train_call;

/* A segment: the training kernels of one chunk between two syncs. The arena holds `cap` samples
 * starting at sample `base` of the batch; scratch is this thread's. */
typedef void (*pnetrt_segment_fn)(const pnetrt_train_call *call, int64_t chunk, char *arena, int64_t cap, int64_t base,
                                  char *scratch, int64_t ith, int64_t nth);
/* Step-wide work split over all threads: syncs (batch statistics), prep, update. */
typedef void (*pnetrt_step_fn)(const pnetrt_train_call *call, int64_t ith, int64_t nth);

enum { PNETRT_OPT_SGD = 0, PNETRT_OPT_ADAM = 1 };
enum { PNETRT_LOSS_CROSS_ENTROPY = 1, PNETRT_LOSS_MSE = 2 };

typedef struct pnetrt_train_desc {
    int64_t ntrain_inputs;
    const pnetrt_tensor_desc *train_inputs; /* labels (i32) or targets (f32) */
    int64_t chunk;
    int64_t nsegments;
    const pnetrt_segment_fn *segments;
    const pnetrt_step_fn *syncs;            /* nsegments - 1: after segment k, before k + 1 */
    pnetrt_step_fn prep;                    /* before the first segment */
    pnetrt_step_fn update;                  /* after the last: gradient tree and optimizer */
    pnetrt_segment_fn eval;                 /* inference-mode forward and loss, one segment */
    int64_t sample_bytes;                   /* training arena bytes per sample */
    int64_t stat_floats, global_floats, opt_floats;
    int64_t optimizer;                      /* PNETRT_OPT_* */
    double lr, momentum, weight_decay, beta1, beta2, eps;
    int64_t nesterov;
    int64_t batch, epochs, seed;
    int64_t loss;                           /* PNETRT_LOSS_* */
    int64_t classes;                        /* cross_entropy: logits per sample */
    /* Pipeline training (a network with stages and no batchnorm): stage s's forward (with the
     * loss, in its stage) and backward on one chunk; 0 and NULL when unavailable. */
    int64_t nstages;
    const pnetrt_segment_fn *stage_forward;
    const pnetrt_segment_fn *stage_backward;
    /* Pipeline training with one stage per rank: before its forward of a micro-batch, stage s
     * receives from stage s - 1 the values stage_fwd[2 * j ..] for j in [stage_fwd_first[s],
     * stage_fwd_first[s + 1]); before its backward, from stage s + 1 the gradients
     * stage_bwd[2 * j ..] for j in [stage_bwd_first[s], stage_bwd_first[s + 1]). Each is an
     * (offset, bytes) pair of the training arena's per-sample layout: at slot + offset * cap, bytes
     * per sample. NULL when nstages is 0. */
    const int64_t *stage_fwd_first, *stage_fwd, *stage_bwd_first, *stage_bwd;
    /* Evaluation with one stage per rank: stage s's part of eval (its inference-mode forward
     * kernels, and the loss in its stage), over the training arena's layout, receiving and sending
     * stage_fwd's values as the training forward does. NULL when nstages is 0. */
    const pnetrt_segment_fn *stage_eval;
    /* nparams (pnetrt_desc's params, in order): the segment whose kernels write each parameter's
     * gradient into its chunk's slot, -1 for none (a buffer such as a running statistic), -2 for
     * several. Where none is -2, a step of several segments folds the gradient tree as one segment
     * does (gradtree.h): segment k folds the elements its kernels wrote. */
    const int64_t *grad_segment;
    /* 1 when every kernel that writes a parameter gradient honours the call's grad_add (a network
     * whose trained parameters are all dense layers'), so that a chunk whose left sibling in the
     * tree is the chunk just before it adds its gradients into that chunk's slot: the tree's first
     * level without a pass of its own. */
    int64_t grad_add;
} pnetrt_train_desc;

typedef struct pnetrt_desc {
    int64_t abi;
    const char *name;
    int64_t ninputs, noutputs, nparams, nlayers;
    const pnetrt_tensor_desc *inputs;
    const pnetrt_tensor_desc *outputs;
    const pnetrt_tensor_desc *params;
    const pnetrt_layer_desc *layers;
    int64_t param_floats;          /* raw parameter buffer, in floats */
    int64_t prepared_floats;       /* prepared parameter buffer, in floats */
    const float *embedded;         /* param_floats embedded weights, or NULL */
    int64_t arena_sample_bytes;    /* activation bytes per sample */
    int64_t arena_fixed_bytes;     /* activation bytes independent of the batch */
    int64_t chunk;                 /* largest n of one forward call */
    int64_t scratch_bytes;         /* private working memory per thread (im2col panels) */
    pnetrt_forward_fn forward;     /* every kernel, stage after stage */
    const pnetrt_forward_fn *stage_forward; /* nstages functions: one stage's kernels each */
    pnetrt_prepare_fn prepare;
    int64_t nstages, replicas, microbatches, schedule;
    const char *target;            /* triple and cpu the code was generated for */
    const pnetrt_train_desc *train; /* NULL without a train block */
    const char *report;            /* the schedule report, as pnetc --report prints it */
    /* One parameter at a time, or NULL where the network folds a batchnorm (then only prepare). */
    pnetrt_prepare_param_fn prepare_param;
    pnetrt_unprepare_param_fn unprepare_param;
    /* Stage boundaries, for pipeline stages on ranks (each rank runs one stage): stage s > 0
     * receives, before each micro-batch, the values that earlier stages computed and it or a later
     * stage reads: stage_recv[3 * j ..] for j in [stage_recv_first[s], stage_recv_first[s + 1]),
     * each a (kind, offset, bytes) triple of PNETRT_XFER_*. Stage s sends stage s + 1 exactly what
     * stage s + 1 receives. NULL without stages. */
    const int64_t *stage_recv_first;  /* nstages + 1 */
    const int64_t *stage_recv;
    const int64_t *output_stage;      /* noutputs: the stage whose function writes each output */
    const int64_t *param_stage;       /* nparams: the stage whose kernels read each parameter */
    /* nlayers: layer k's kernel alone, over the same call as forward (its inputs must be in the
     * arena already: run forward first), or NULL where it has no kernel of its own (an input, a
     * view, a link fused into an earlier layer's kernel). For bench --profile. */
    const pnetrt_forward_fn *layer_forward;
} pnetrt_desc;

/* Where a value that crosses a stage boundary lives in a call (pnetrt_call), for n samples:
 * ARENA: the per-sample region, at arena + offset * cap, bytes * n; FIXED: the arena's fixed
 * region, at arena + arena_sample_bytes * cap + offset, bytes; OUTPUT: output buffer `offset`,
 * bytes * n at the call's first sample (bytes in all when the output has no batch axis). */
enum { PNETRT_XFER_ARENA = 0, PNETRT_XFER_FIXED = 1, PNETRT_XFER_OUTPUT = 2, PNETRT_XFER_OUTPUT_FIXED = 3 };

/* The functions of libpnetrt that generated code calls are declared, and exported, in pnet.h. */

#endif
