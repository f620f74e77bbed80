/* The trainer's private parts, for the files of the training module: train.c (the step, its
 * schedules and the setters) and ckpt.c (checkpoints). No other file includes this header. The
 * trainer belongs to the model (its trainer slot, model.h) and owns every buffer it points to. */
#ifndef PNETRT_CORE_TRAIN_IMPL_H
#define PNETRT_CORE_TRAIN_IMPL_H

#include "gradtree.h"
#include "plan.h"
#include "split.h"
#include "model.h"
#include "comm.h"
#include "transport.h"

#include <stdbool.h>
#include <stdint.h>

struct pnetrt_trainer {
    int64_t cap_batch;  /* samples the buffers hold */
    float *slots, *stats, *global, *opt;
    char *arena;        /* one segment at a time: groups * chunk samples; else cap_batch samples */
    size_t arena_bytes;
    char *scratch;
    size_t scratch_bytes;
    int64_t step;
    uint64_t seed;
    double lr;
    int64_t last_correct;
    int64_t batch_size;  /* the training loop's batch size and order, kept in checkpoints */
    int shuffle;         /* 1, 0, or -1 when unknown */
    bool checkpoint;     /* the last pnetrt_load read a checkpoint */
    char schedule[160];  /* how the last step ran */
    double *tree;        /* cap_batch / chunk + 1 values: the loss tree */
    /* The folded gradient tree (gradtree.h), unless a parameter's gradient is written in several
     * segments (pnetrt_train_folds): each group's partial
     * sums, fold_depth buffers of param_floats per group, instead of one slot per chunk. */
    float *fold;
    int64_t fold_cap;     /* floats allocated */
    int64_t slot_cap;     /* chunk slots allocated */
    float *recv;          /* on ranks: the other ranks' partial sums of this rank's slice of the gradient */
    int64_t recv_cap;     /* floats */
    const float *grad;    /* the last step's whole gradient, once sums are added (pnetrt_train_whole_grad) */
    float *sums[PNETRT_MAX_SUMS]; /* folding: the last step's partial sums that its update added as */
    int nsums;                    /* it read them, not yet added here (1: grad is whole) */
    int64_t sums_lo, sums_hi;     /* their elements (on ranks, this rank's slice) */
    float *grad_home;             /* where grad is returned: sums[0] may be a received slice */
    /* The generation of the parameters (pnetrt_params_gen) that the global area's transposed
     * weights (W^T, px__prep's) were made from, by the prep or the update; 0: none. A step whose
     * parameters are still of that generation skips the prep. Every writer of the parameters gets
     * them from pnetrt_params_mut, which starts a new generation, so it clears this. */
    uint64_t wt_gen;
    /* Each pipeline stage's parameter elements, for folding a pipelined step's tree: stage s's
     * ranges are stage_ranges[stage_first[s] .. stage_first[s + 1]); stage_map is 1 when known,
     * -1 when a parameter's stage could not be found, 0 before the first look. */
    pnetrt_range *stage_ranges;
    int *stage_first;
    int stage_map;
    /* The same for the segments of a step cut at batchnorm's batch statistics: the elements whose
     * gradients segment k's kernels write (pnetrt_train_desc.grad_segment), seg_ranges[seg_first[k]
     * .. seg_first[k + 1]); seg_map as stage_map (-1: some parameter's gradient is written in
     * several segments, so the step keeps one slot per chunk). */
    pnetrt_range *seg_ranges;
    int *seg_first;
    int seg_map;
    pnetrt_handoff *hand; /* pipeline hand-offs, one per replica pipeline, nhand of them */
    pnetrt_spin_barrier *stage_bars; /* pipeline stage barriers, nbars of them */
    int nhand, nbars;
    /* The last pipelined step: each stage's busy seconds (forward and backward, replica 0), the
     * step's seconds, and its micro-batches per replica; for the measured bubble. */
    double busy[PNETRT_MAX_STAGES], wall;
    int64_t pipe_mb;
    /* A pipelined step's plans (plan.h): PNETRT_PLAN_STATIC, the pipeline, or PNETRT_PLAN_ONE,
     * the step unpipelined on one thread (same bits); the last step's. */
    pnetrt_plans plans;
    int last_plan;
    pnetrt_split split; /* the replica groups' chunks by their measured speed (split.h) */
    pnetrt_split rank_split; /* the same for the ranks' runs, from every rank's gathered speed */
    bool try_plans; /* weigh every plan from the first step (pnetrt_train_try_plans) */
    /* One pipeline stage per rank (train.c): the ranks of this rank's stage, one per pipeline
     * (the gradient reduction's), and the step's outgoing stage-boundary messages and their
     * buffer. */
    pnetrt_comm *stage_comm;
    char *sendbuf;
    size_t sendbuf_bytes;
    pnetrt_msgs *sends, *recvq;
    int sends_cap, recvq_cap;
    /* The ranks whose last step each updated only its slice of the optimizer state (NULL: whole). */
    pnetrt_comm *opt_comm;
    int64_t opt_lo, opt_hi; /* the elements those ranks sliced */
    /* The elements the optimizer state holds, [opt_first, opt_first + opt_elems): every one, or on
     * a rank that trains one pipeline stage its stage's; each state vector is opt_elems floats. */
    int64_t opt_first, opt_elems;
};

/* State vector k of the optimizer (adam: 0 exp_avg, 1 exp_avg_sq), addressed by element index:
 * valid for the elements it holds (offset back by opt_first, as an integer). */
float *pnetrt_train_opt(const pnetrt_trainer *t, int64_t k);
/* Whether a step of this model runs one pipeline stage per rank (train_ranks.c). */
bool pnetrt_train_staged(pnetrt_model *m);

/* Fills the trainer's stage_ranges (each pipeline stage's parameter elements) once; false when
 * some parameter's stage is unknown. */
bool pnetrt_train_stage_map(pnetrt_model *m, pnetrt_trainer *t);
/* Fills the trainer's seg_ranges once, for a network of several segments that folds; false when
 * out of memory. */
bool pnetrt_train_segment_map(const pnetrt_desc *d, pnetrt_trainer *t);
/* ---- what the training module's files share (train.c, train_fold.c, train_pipe.c, train_ranks.c) */

/* A step in progress: the call, this rank's chunks and its ranks. */
typedef struct run {
    pnetrt_model *m;
    pnetrt_trainer *t;
    const pnetrt_train_call *call;
    int64_t nch;
    int64_t lo, hi;        /* this rank's chunks: [lo, hi) of [0, nch) */
    const int64_t *split;  /* group g's chunks: [split[g], split[g + 1]) of [lo, hi) */
    pnetrt_comm *comm;     /* the ranks (NULL: this process alone) */
    const int64_t *first;  /* rank r's chunks start at first[r]; first[ranks] = nch */
    _Atomic int failed;    /* a reduction point failed: err says why */
    char err[256];
    bool eval;
    int fold_depth;        /* folding: buffers per group (0: one slot per chunk instead) */
    bool wt_ok;            /* the transposed weights are the parameters': skip the prep */
    bool grad_add;         /* pnetrt_train_grad_add: a right sibling's kernels add into its left's slot */
    float *sums[PNETRT_MAX_SUMS]; /* folding: the partial sums the update added (fold_finish) */
    int nsums;
} run;

/* A thread's view of its group's (or pipeline replica's) folded stack: the buffers from `base`,
 * and the gradient elements this thread's group adds (all, or its pipeline stage's). */
typedef struct fold_stack {
    pnetrt_blk blk[128];
    float *bufs[128];
    int top;
    float *base;
    const pnetrt_range *own;
    int nown;
} fold_stack;

/* ---- pipeline training ------------------------------------------------------------------------
 * R replica pipelines, each a thread group per stage. A replica's chunks form M micro-batches;
 * stage s runs micro-batch q forward once stage s-1 has, and backward once stage s+1 has, in
 * GPipe order (every forward, then every backward) or 1F1B (S-s-1 forwards, then one forward and
 * one backward in turn, then the remaining backwards). Micro-batch q lives in arena slot q mod K:
 * K = M for GPipe, K = min(S, M) for 1F1B, so 1F1B holds at most S micro-batches' values. The
 * chunks and their gradient slots are those of the unpipelined step, so the weights are the same
 * bits for any schedule and micro-batch count. */
typedef struct pipe {
    int R, S, per, M;      /* replicas, stages, threads per replica, micro-batches asked for */
    int count[PNETRT_MAX_STAGES]; /* threads per stage */
    bool one_f_one_b;
    int64_t cap;           /* samples per arena slot */
    int slots;             /* arena slots per replica */
    pnetrt_handoff *hand;  /* [R]: one per replica pipeline */
} pipe;

/* Zeroed, page-aligned memory whose pages cost memory only once written; NULL when out of memory.
 * Freed (NULL too) by pnetrt_train_free. */
void *pnetrt_train_zalloc(size_t bytes);
void pnetrt_train_free(void *p);
/* Grows the trainer's buffers for a step of `batch` samples on `groups` groups of `threads`
 * threads, with fold_bufs folded partial sums of fold_floats elements each (0: one gradient slot
 * per chunk). 0, or 1 with the error set. */
int pnetrt_train_reserve(pnetrt_model *m, pnetrt_trainer *t, int64_t batch, int groups, int threads, int64_t fold_bufs,
                         int64_t fold_floats);
/* Folded partial sum j from base: a step's partial sums hold only the elements [elem_lo, elem_hi)
 * of its call (all, or a stage rank's stage's), and are addressed by element index, so the
 * pointer is offset back by elem_lo (as an integer: nothing reads below it). */
float *pnetrt_train_fold_buf(const pnetrt_train_call *call, float *base, int64_t j);
/* The fixed tree over n values v[i * stride] (a: n doubles of room), as the update sums gradients. */
double pnetrt_train_tree_sum(double *a, const float *v, int64_t stride, int64_t n);
/* Samples of chunk ch of the step (the last may be short). */
int64_t pnetrt_train_chunk_samples(const run *r, int64_t ch);
/* Whether a chunk whose left sibling in the tree is the chunk just before it runs with the call's
 * grad_add, its kernels adding its gradients into that chunk's slot (the descriptor's grad_add;
 * PNET_GRAD_ADD=0 turns it off, for tests that compare the two). */
bool pnetrt_train_grad_add(const pnetrt_model *m);
/* train_fold.c: runs f on chunk ch and folds its gradient into the stack; the step's update (after
 * the gradient's reduction) on thread t of nth; a reduction point of the chunks' statistics (and
 * with grads their gradient slots). */
void pnetrt_train_fold_chunk(const run *r, fold_stack *st, pnetrt_segment_fn f, int64_t ch, char *arena, int64_t cap,
                             int64_t base, char *scratch, int ith, int size);
void pnetrt_train_update(run *r, int runs, int t, int nth, pnetrt_spin_barrier *all, int *sense);
void pnetrt_train_reduce_point(run *r, pnetrt_spin_barrier *all, int *sense, bool grads, int t);
/* After a step: keeps where its gradient is (the partial sums the update added, when folding),
 * and, for pnetrt_train_grad, adds them into the whole gradient. */
void pnetrt_train_keep_grad(pnetrt_trainer *t, const run *r);
const float *pnetrt_train_whole_grad(pnetrt_trainer *t);
/* train_pipe.c: the pipeline of this step on `threads` threads, or false when the network or the
 * thread count allows none; its arena and hand-offs; thread t's part of it. */
bool pnetrt_train_plan_pipe(pnetrt_model *m, int64_t nch, int threads, pipe *p);
int pnetrt_train_reserve_pipe(pnetrt_model *m, pnetrt_trainer *t, pipe *p);
void pnetrt_train_pipe_thread(run *r, const pipe *p, int t, pnetrt_spin_barrier *bars, pnetrt_spin_barrier *all);
/* train_ranks.c: a training step, or with eval an evaluation (the stages' eval functions, forward
 * alone), with one pipeline stage per rank; loss_sum gets the batch's loss, t->last_correct its
 * correct predictions. */
int pnetrt_train_rank_step(pnetrt_model *m, pnetrt_trainer *t, int64_t batch, const void *const *inputs, bool eval,
                           double *loss_sum);

/* Makes every rank's optimizer state whole again after sliced updates (collective over the ranks
 * that sliced it; every rank of the model calls it). 0, or 1 with the error set. */
int pnetrt_train_opt_whole(pnetrt_model *m);
/* Sets the model's error message from a printf format; returns 1. */
int pnetrt_train_failf(pnetrt_model *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The model's trainer, made (and its freeing hook installed) at the first call; NULL, with the error
 * set, when the model was not created or the network does not train. */
pnetrt_trainer *pnetrt_trainer_get(pnetrt_model *m);

#endif
