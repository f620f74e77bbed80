/* libpnetrt's internal model API: what the executables' commands (runtime/cli) and the tests call
 * beyond the public pnet.h. Private: not installed, not exported from libpnetrt.so (every function
 * here is hidden; the public ones and those generated code calls are declared in pnet.h).
 * The model owns its arenas, trainer and messages; callers own what they pass. */
#ifndef PNETRT_RT_H
#define PNETRT_RT_H
#include "pnet.h"
#include "pnetrt_abi.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Threads a call may start: pnetrt_threads, or 1 when called from inside an active OpenMP parallel
 * region, whatever the nesting settings (a nested team would oversubscribe the cores). */
int pnetrt_call_threads(const pnetrt_model *m);
/* True when neither the network (@shard(batch, R)) nor the user chose the replicas, so that each
 * call picks them. */
bool pnetrt_replicas_picked(const pnetrt_model *m);
/* The plan the last inference call took (infer.c, plan.h): the static one; the claimed one
 * (threads claiming units of the batch, or the stages of a pipeline, with no barriers between
 * kernels); or one thread alone, a pipeline's stages in turn (faster than waiting for threads on a
 * busy machine). A pipelined training step takes the static plan or one thread (train.c). */
enum { PNETRT_PLAN_STATIC = 0, PNETRT_PLAN_CLAIMED = 1, PNETRT_PLAN_ONE = 2 };
int pnetrt_last_plan(const pnetrt_model *m);
const pnetrt_desc *pnetrt_model_desc(const pnetrt_model *m);

/* ---- training (runtime/core/train.c) ---- */
/* For gradient tests: later steps compute the loss and gradients but leave the parameters as they
 * are (learning rate 0, which pnetrt_set_lr refuses). */
int pnetrt_train_freeze(pnetrt_model *m);
/* For tests: a pipelined step weighs running on one thread from the first step, not only once
 * the pipeline was seen idle longer than it works (train.c, one_worth). */
int pnetrt_train_try_plans(pnetrt_model *m);
/* For tests: every later step cuts its chunks among replica groups 0 .. groups - 1 as if they ran
 * sec[g] seconds per chunk (split.h), instead of by their measured speed; groups 0 measures again. */
int pnetrt_train_fix_split(pnetrt_model *m, const double *sec, int groups);
/* Correct predictions (cross_entropy) of the last training step. */
int64_t pnetrt_train_last_correct(const pnetrt_model *m);
/* The executables' name in messages: "NAME: note: ..." (set by pnetrt_main; notes name the executable, not
   the network, once pnetrt_prog_named is set). */
extern const char *pnetrt_prog;
extern bool pnetrt_prog_named;
/* The whole batch's parameter gradient of the last step (d->param_floats floats, at each
 * parameter's offset), or NULL before the first step; on ranks, only this rank's slice of it (or
 * its stage's elements) is current. For tests. */
const float *pnetrt_train_grad(const pnetrt_model *m);
/* Sets the step count (the next step is steps + 1): dropout masks and adam's bias correction
 * depend on it. */
int pnetrt_set_train_steps(pnetrt_model *m, int64_t steps);
/* How the last training step ran: threads, replicas or pipelines, chunks. */
const char *pnetrt_train_schedule(const pnetrt_model *m);
/* The last pipelined step's measured bubble (the stages' mean idle share of the step, replica 0)
 * and, in *predicted, (S - 1) / (M + S - 1), which GPipe and 1F1B share; -1 when it was not
 * pipelined. */
double pnetrt_train_bubble(const pnetrt_model *m, double *predicted);
/* The seed of dropout masks (and of the executables' shuffling). */
uint64_t pnetrt_train_seed(const pnetrt_model *m);
/* The training loop's batch size and shuffling (1/0), kept in checkpoints so a resumed run
 * visits the same batches; pnetrt_train_order is true after a checkpoint was loaded. */
int pnetrt_set_train_order(pnetrt_model *m, int64_t batch_size, int shuffle);
bool pnetrt_train_order(const pnetrt_model *m, int64_t *batch_size, int *shuffle);
/* Writes the parameters (PyTorch names) as safetensors, atomically; with optimizer, also the
 * optimizer state ("optimizer.NAME.momentum_buffer", ".exp_avg", ".exp_avg_sq") and metadata
 * (epoch, batches done in the epoch, step, seed, lr). */
int pnetrt_save(pnetrt_model *m, const char *path, bool optimizer, int64_t epoch, int64_t batch_in_epoch);
/* Loads parameters from a safetensors file; with a checkpoint's optimizer state and metadata when
 * present (then *epoch and *batch_in_epoch are set; else they are 0). */
int pnetrt_load(pnetrt_model *m, const char *path, int64_t *epoch, int64_t *batch_in_epoch);

#endif
