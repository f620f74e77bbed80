/* libpnetrt's model object: the functions that generated code and the executables call. */
#ifndef PNETRT_RT_H
#define PNETRT_RT_H
#include "pnetrt_abi.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pnetrt_model pnetrt_model;

int pnetrt_create(pnetrt_model **out, const pnetrt_desc *d, const char *weights_path);
int pnetrt_infer(pnetrt_model *m, int64_t batch, const void *const *inputs, void *const *outputs);
int pnetrt_set_threads(pnetrt_model *m, int threads);
/* The message of this thread's last failed call on m (or, when it had none, of the last failed
 * call on m): threads that share a handle each read their own. */
const char *pnetrt_last_error(const pnetrt_model *m);
/* Frees m; no other call on m may be running or follow. */
void pnetrt_destroy(pnetrt_model *m);
int pnetrt_threads(const pnetrt_model *m);
/* Threads a call may start: pnetrt_threads, or 1 when called from inside an active OpenMP parallel
 * region, whatever the nesting settings (a nested team would oversubscribe the cores). */
int pnetrt_call_threads(const pnetrt_model *m);
/* Batch-parallel replicas: the batch splits into R near-equal shards, each run by its own group of
 * about threads/R threads with its own arena. Results are identical for any R. */
int pnetrt_set_replicas(pnetrt_model *m, int replicas);
int pnetrt_replicas(const pnetrt_model *m);
/* The replicas the last call ran: with neither @shard(batch, R) nor pnetrt_set_replicas, each call
 * picks its own (batch-parallel for large batches, intra-op for small ones). */
int pnetrt_last_replicas(const pnetrt_model *m);
/* True when neither the network (@shard(batch, R)) nor the user chose the replicas, so that each
 * call picks them. */
bool pnetrt_replicas_picked(const pnetrt_model *m);
/* The threads the last call ran on: fewer than pnetrt_threads when the call was too small to pay
 * for them (PNET_ADAPTIVE_THREADS=0 turns that off) or was made from inside a parallel region. */
int pnetrt_last_threads(const pnetrt_model *m);
/* Pipeline (layer-parallel) execution of a network with @partition stages: each stage on its own
 * thread group, micro-batches streaming through (GPipe fill and drain). On by default when the
 * network has stages; it needs at least one thread per stage, else stages run in turn. */
int pnetrt_set_pipeline(pnetrt_model *m, bool on);
int pnetrt_set_microbatches(pnetrt_model *m, int microbatches);
/* Threads for each pipeline stage (n = the network's stage count), given as shares: exact when a
 * pipeline has as many threads as they add up to, in proportion otherwise. NULL: back to the
 * default, shares by FLOPs. */
int pnetrt_set_stage_threads(pnetrt_model *m, const int *shares, int n);
int pnetrt_microbatches(const pnetrt_model *m);
bool pnetrt_pipelined(const pnetrt_model *m);
/* "serial" (one thread, one replica), "batch" (replicas, no pipeline), "pipeline" (stages on their
 * own threads, one replica) or "hybrid" (replicas of pipelines). */
int pnetrt_set_schedule(pnetrt_model *m, const char *schedule);
/* Records a trace of every call from now on, written as Chrome trace-event JSON to path when the
 * network is destroyed (PNET_TRACE=path does the same from the environment). NULL stops. */
int pnetrt_set_trace(pnetrt_model *m, const char *path);
int pnetrt_write_trace(pnetrt_model *m, const char *path);
/* The pipeline bubble of the last call, measured: the mean idle share of the stages; -1 when the
 * call was not pipelined. */
double pnetrt_measured_bubble(const pnetrt_model *m);
/* The fill-and-drain bubble the last call should have had, (S-1)/(Q+S-1), where Q is the number
 * of micro-batches one pipeline streamed (M per chunk, over every chunk of its replicas' shards;
 * empty ones left out); *streamed (may be NULL) receives Q. -1 when the call was not pipelined. */
double pnetrt_predicted_bubble(const pnetrt_model *m, int64_t *streamed);
const pnetrt_desc *pnetrt_model_desc(const pnetrt_model *m);
/* The executables' command line: infer, bench, info. */
int pnetrt_main(const pnetrt_desc *d, int argc, char **argv);

/* ---- training (runtime/core/train.c) ---- */
/* One training step on a batch: inputs are the network's inputs, then its training inputs (labels
 * or targets), each holding `batch` samples. *loss (may be NULL) receives the batch's mean loss.
 * Results are bitwise identical for any thread or replica count. */
int pnetrt_train_step(pnetrt_model *m, int64_t batch, const void *const *inputs, float *loss);
/* The loss sum and correct predictions of a batch in inference mode (dropout off, batchnorm on its
 * running statistics). */
int pnetrt_eval(pnetrt_model *m, int64_t batch, const void *const *inputs, double *loss_sum, int64_t *correct);
/* The learning rate: finite and positive, as the language requires. */
int pnetrt_set_lr(pnetrt_model *m, double lr);
/* For gradient tests: later steps compute the loss and gradients but leave the parameters as they
 * are (learning rate 0, which pnetrt_set_lr refuses). */
int pnetrt_train_freeze(pnetrt_model *m);
double pnetrt_lr(const pnetrt_model *m);
int pnetrt_set_train_seed(pnetrt_model *m, uint64_t seed);
/* Correct predictions (cross_entropy) of the last training step. */
int64_t pnetrt_train_last_correct(const pnetrt_model *m);
/* The executables' name in messages: "NAME: note: ..." (set by pnetrt_main; notes name the executable, not
   the network, once pnetrt_prog_named is set). */
extern const char *pnetrt_prog;
extern bool pnetrt_prog_named;
/* The whole batch's parameter gradient of the last step (d->param_floats floats, at each
 * parameter's offset), or NULL before the first step. For tests. */
const float *pnetrt_train_grad(const pnetrt_model *m);
/* Sets the step count (the next step is steps + 1): dropout masks and adam's bias correction
 * depend on it. */
int pnetrt_set_train_steps(pnetrt_model *m, int64_t steps);
/* How the last training step ran: threads, replicas or pipelines, chunks. */
const char *pnetrt_train_schedule(const pnetrt_model *m);
/* The seed of dropout masks (and of the executables' shuffling). */
uint64_t pnetrt_train_seed(const pnetrt_model *m);
/* The training loop's batch size and shuffling (1/0), kept in checkpoints so a resumed run
 * visits the same batches; pnetrt_train_order is true after a checkpoint was loaded. */
int pnetrt_set_train_order(pnetrt_model *m, int64_t batch_size, int shuffle);
bool pnetrt_train_order(const pnetrt_model *m, int64_t *batch_size, int *shuffle);
/* Steps taken so far (the optimizer's step count). */
int64_t pnetrt_train_steps(const pnetrt_model *m);
/* Writes the parameters (PyTorch names) as safetensors, atomically; with optimizer, also the
 * optimizer state ("optimizer.NAME.momentum_buffer", ".exp_avg", ".exp_avg_sq") and metadata
 * (epoch, batches done in the epoch, step, seed, lr). */
int pnetrt_save(pnetrt_model *m, const char *path, bool optimizer, int64_t epoch, int64_t batch_in_epoch);
/* Loads parameters from a safetensors file; with a checkpoint's optimizer state and metadata when
 * present (then *epoch and *batch_in_epoch are set; else they are 0). */
int pnetrt_load(pnetrt_model *m, const char *path, int64_t *epoch, int64_t *batch_in_epoch);

/* px_save / px_load of the embedding header: a checkpoint when the network trains, else weights. */
int pnetrt_save_file(pnetrt_model *m, const char *path);
int pnetrt_load_file(pnetrt_model *m, const char *path);

#endif
