/* The model's internal API (rt.c; the schedules' thread counts in infer.c), for the rest of the runtime: the
 * training module (train.c), initialisation (init.c), the schedules' transport and the executables' commands
 * (runtime/cli). Not public: rt.h is.
 * The model owns its trainer (through the hook below), its arenas and its lock; callers own what they pass. */
#ifndef PNETRT_CORE_MODEL_H
#define PNETRT_CORE_MODEL_H

#include "barrier.h"
#include "rt.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Every call that uses a handle's arenas or state holds its lock (recursive), so threads that
 * share a handle take turns: pnetrt_lock(m); ...; return pnetrt_unlock(m, rc). pnetrt_unlock
 * keeps a failure's message for pnetrt_last_error on this thread, and returns rc. */
void pnetrt_lock(pnetrt_model *m);
int pnetrt_unlock(pnetrt_model *m, int rc);
/* The trainer hook: the training module (train.c) keeps its state in the model's trainer slot and installs
   the function that frees it, so the model (rt.c) never calls up into train.c. */
typedef struct pnetrt_trainer pnetrt_trainer;
typedef void pnetrt_trainer_free_fn(pnetrt_trainer *t);
pnetrt_trainer **pnetrt_trainer_slot(pnetrt_model *m);
void pnetrt_trainer_hook(pnetrt_model *m, pnetrt_trainer_free_fn *free_fn);
int pnetrt_fail(pnetrt_model *m, const char *msg);
/* The ranks the model runs on (comm.h): the process default when it was created, or the one set
 * since (which the model then owns and frees); NULL when it runs in this process alone. */
typedef struct pnetrt_comm pnetrt_comm;
pnetrt_comm *pnetrt_model_comm(const pnetrt_model *m);
void pnetrt_model_set_comm(pnetrt_model *m, pnetrt_comm *c);
float *pnetrt_params_mut(pnetrt_model *m); /* writable parameters (marks prepared stale) */
/* The parameters' generation: a new one (never 0) each time pnetrt_params_mut hands them out to
 * be written, so that a copy derived from them (a trainer's W^T) knows when it is stale. */
uint64_t pnetrt_params_gen(const pnetrt_model *m);
/* Zeroed, page-aligned memory whose pages cost memory only once written; NULL when out of address
 * space. Freed (NULL too) by pnetrt_zunmap. */
void *pnetrt_zmap(size_t bytes);
void pnetrt_zunmap(void *p);
int pnetrt_replicas_chosen(const pnetrt_model *m); /* replicas the user set, or 0 */
/* Threads of a pipeline shared among S stages in proportion to their FLOPs, at least one each. */
void pnetrt_share_threads(const pnetrt_model *m, int threads, int S, int *count);
/* Fills params (d->param_floats floats) with PyTorch's default initialisation, from seed. */
void pnetrt_init_params(const pnetrt_desc *d, float *params, uint64_t seed);
/* Elements [first, first + count) of parameter p's default initialisation into dst[0..count): the
 * values pnetrt_init_params gives them. */
void pnetrt_init_param(const pnetrt_desc *d, int64_t p, int64_t first, int64_t count, float *dst, uint64_t seed);
/* Elements per sample of a tensor (its whole size when it has no batch axis). Inline: init.c uses it and
   must not call back into rt.c. */
static inline int64_t pnetrt_sample_elems(const pnetrt_tensor_desc *t) {
    int64_t n = 1;
    for (int64_t i = 0; i < t->rank; i++)
        if (t->shape[i] >= 0) n *= t->shape[i];
    return n;
}
/* The caller's buffers at sample `first` (infer.c): batched tensors move, batch-independent ones
 * do not; in[0..ninputs) and out[0..noutputs). */
void pnetrt_slice_io(const pnetrt_desc *d, const void *const *inputs, void *const *outputs, int64_t first,
                     const void **in, void **out);
/* How ranks share a network with pipeline stages: the process default that the executables set
 * from --rank-layout before they create a model. AUTO: one stage per rank (K = replicas x stages)
 * when the network has stages, else replicas. */
enum { PNETRT_LAYOUT_AUTO = 0, PNETRT_LAYOUT_REPLICAS = 1, PNETRT_LAYOUT_STAGES = 2 };
extern int pnetrt_layout_default;
/* Decides how the model's ranks share it (a PNETRT_LAYOUT_*), and reserves this rank's arena
 * slots when it runs one stage (stages.c). 0, or 1 with the error set (ranks that do not fit). */
int pnetrt_rank_layout(pnetrt_model *m, int pref);
/* This rank's pipeline stage when stages run on ranks, else -1; and whether it holds only that
 * stage's parameters. */
int pnetrt_model_rank_stage(const pnetrt_model *m);
bool pnetrt_model_partial(const pnetrt_model *m);
/* pnetrt_create, with every tensor of the weights file looked up as prefix + name (the executables'
 * --weights-prefix; NULL: none). */
int pnetrt_create_prefixed(pnetrt_model **out, const pnetrt_desc *d, const char *weights_path, const char *prefix);
/* After pnetrt_create: "W.safetensors: 2 tensors are not parameters of network 'net' and were not
 * loaded: 'a', 'b'", or "" when the weights file held only the network's (a pnet checkpoint's
 * optimizer state aside). The model owns the string. */
const char *pnetrt_load_warning(const pnetrt_model *m);
/* True when pnetrt_create succeeded; otherwise false, with the error set (m may be NULL). */
bool pnetrt_ready(pnetrt_model *m);
/* Whether a call may take any of its plans of the same bits (plan.h): PNET_ADAPTIVE_THREADS is
 * not 0 and the user set no schedule; with `pipe`, nor a pipeline's micro-batches or stage
 * threads, so that the pipeline the user asked for runs as one. */
bool pnetrt_plans_free(const pnetrt_model *m, bool pipe);
/* Whether calls adapt to the machine at all (PNET_ADAPTIVE_THREADS is not 0): for a training
 * step, whether its replica groups' chunks are cut by their measured speed (split.h). */
bool pnetrt_adaptive(const pnetrt_model *m);
/* The threads a call of `flops` floating-point operations runs on: `threads`, or fewer when each
 * would get too little work to pay for the barriers (not with PNET_ADAPTIVE_THREADS=0). */
int pnetrt_work_threads(const pnetrt_model *m, double flops, int threads);
/* The forward FLOPs of one sample. */
double pnetrt_flops_per_sample(const pnetrt_model *m);
/* Fails when `batch` samples of any of the n batched tensors t[] would not fit in an address space
 * (over PTRDIFF_MAX bytes): no caller can hold such a buffer. */
int pnetrt_check_batch(pnetrt_model *m, int64_t batch, const pnetrt_tensor_desc *t, int64_t n);
/* Seconds pipeline stage s of replica group 0 was busy in the last inference call (its slices in
 * the trace), or 0. */
double pnetrt_stage_busy(const pnetrt_model *m, int s);
/* bench --profile (profile.c): the scalars beside the per-layer seconds. */
typedef struct pnetrt_layer_profile {
    int64_t samples;   /* samples per timed call: min(batch, chunk) */
    int64_t small;     /* the second size timed: a pipeline's micro-batch, or an eighth */
    double barrier_s;  /* the barrier between two kernels (0 on one thread) */
    double handoff_s;  /* a pipeline hand-off between two threads */
    double xfer_byte_s; /* what a byte another core wrote costs a read over one of the reader's own */
    int64_t llc_bytes; /* the last-level cache, or 0 when unknown */
    bool cold;         /* the parameters outgrow it: calls timed with it evicted first */
    /* Set by the caller, or NULL: nlayers rows of PNETRT_PROFILE_SPREAD factors, each layer's
     * single calls at the second size over their mean, sorted and averaged in equal groups (so
     * that they average 1); a row of zeros where a layer has no kernel or too few calls. */
    double *spread;
    /* Set by the caller, or NULL: nlayers pairs, each layer's seconds per call at the two sizes
     * a pipeline slices its chunks into (micro_samples: n / M and one more), when both were timed
     * (micro_samples[0] > 0). */
    double *micro;
    int64_t micro_samples[2];
    /* Set by the caller, or NULL: nstages rows of PNETRT_PROFILE_SPREAD factors, each stage's
     * passes at the second size while the stage beside it ran at once (profile.c, time_stage_spreads),
     * as a layer's spread; a row of zeros where not measured. */
    double *stage_spread;
} pnetrt_layer_profile;
#define PNETRT_PROFILE_SPREAD 32
/* bench --profile (profile.c): each layer's forward seconds per sample, sec[0..nlayers) (0 where a
 * layer has no kernel of its own), over min(batch, chunk) samples of the inputs on the model's
 * threads, and call_s[k], the part of one call's time that does not grow with its samples (below
 * zero where a sample costs more in a large call than in a small one). When
 * the prepared parameters outgrow the last-level cache, a run reads every layer's weights from
 * memory at each call, so each layer's small call is timed again after evicting the cache, and
 * the difference counts per call. 0, or 1 with the error set. */
int pnetrt_profile_layers(pnetrt_model *m, int64_t batch, const void *const *inputs, void *const *outputs, double *sec,
                          double *call_s, pnetrt_layer_profile *out);
/* bench --profile of a network that trains (profile.c): a few training steps of `batch` samples of
 * the inputs (the network's, then its training inputs) for about `seconds`, timed by their trace
 * slices. A pipelined step gives each stage's forward and backward seconds per sample; any step
 * gives the update's (the gradient tree and the optimizer) per sample, and an unpipelined one its
 * forward and backward together (step_s). 0, or 1 with the error set; nothing without a train block. */
typedef struct pnetrt_train_profile {
    int nstages, threads;
    bool pipelined;
    int64_t steps;
    double forward_s[PNETRT_MAX_STAGES], backward_s[PNETRT_MAX_STAGES];
    double step_s, update_s;
    /* Set by the caller, or NULL (so zero the struct first): nlayers each, every descriptor layer's
     * seconds per sample in the steps' forward and backward, from pnetrt_step_mark (0 for a layer
     * without a training kernel); kept by pnetrt_profile_training, which clears the rest. */
    double *layer_forward_s, *layer_backward_s;
} pnetrt_train_profile;
int pnetrt_profile_training(pnetrt_model *m, int64_t batch, const void *const *inputs, double seconds,
                            pnetrt_train_profile *out);
/* Whether a training step of this network folds its gradient tree as chunks complete (gradtree.h,
 * train_fold.c): one segment, or segments that each write their own parameters' gradients
 * (pnetrt_train_desc.grad_segment); else it keeps one gradient slot per chunk. */
bool pnetrt_train_folds(const pnetrt_desc *d);
/* Bytes one process may allocate for buffers the runtime touches: half of physical memory. */
double pnetrt_memory_limit(void);

#endif
