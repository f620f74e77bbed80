/* pnet.h: libpnetrt's public API, for programs that run networks compiled by pnetc.
 *
 *   // pnetc examples/digits_mlp.pnet -c  ->  digits_mlp.o (and digits_mlp.h, its own typed API)
 *   #include <pnet.h>
 *   #include <stdio.h>
 *   #include "digits_mlp.h" // declares digits_mlp_descriptor(), defined in digits_mlp.o
 *   int main(void) {
 *       pnetrt_model *m;
 *       float x[784] = {0}, probs[10];
 *       const void *in[] = {x};
 *       void *out[] = {probs};
 *       if (pnetrt_create(&m, digits_mlp_descriptor(), NULL) != 0 || pnetrt_infer(m, 1, in, out) != 0) {
 *           fprintf(stderr, "%s\n", pnetrt_last_error(m));
 *           pnetrt_destroy(m);
 *           return 1;
 *       }
 *       printf("%g\n", probs[0]);
 *       pnetrt_destroy(m);
 *   }
 *   // cc app.c digits_mlp.o $(pkg-config --cflags --libs pnetrt)
 *
 * Ownership: the caller owns every buffer and string it passes; a model owns its weights, arenas and
 * error messages (valid until its next failed call or pnetrt_destroy), freed by pnetrt_destroy.
 *
 * Calls return 0 on success; otherwise pnetrt_last_error says why. None aborts on bad input.
 * Handles are opaque. Inputs and outputs are passed in declaration order, one pointer each, at
 * batch * (elements per sample) values (f32 as float, i32 as int32_t).
 *
 * The prefix is pnetrt_, not pnet_ (STYLE.md 13): these names are also the ABI that objects made
 * by pnetc call (their NET_* wrappers), so renaming them would break every object compiled so far.
 * Every function declared with PNETRT_API is exported by libpnetrt.so, and nothing else is
 * (tests/cli/exports_test.sh, ctest cli.exports). */
#ifndef PNET_H
#define PNET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define PNETRT_API __attribute__((visibility("default")))
#else
#define PNETRT_API
#endif

/* A network, created from its descriptor. */
typedef struct pnetrt_model pnetrt_model;
/* What pnetc generated for a network: NET_descriptor() of its object returns it. */
typedef struct pnetrt_desc pnetrt_desc;

/* ---- the model ---- */
/* Creates a model. weights_path: a safetensors file with PyTorch's parameter names, or NULL for
 * the embedded weights (pnetc --weights) or seeded PyTorch-style initialisation. On failure *out
 * may still be set so that the error can be read; destroy it then. */
PNETRT_API int pnetrt_create(pnetrt_model **out, const pnetrt_desc *d, const char *weights_path);
/* Runs the network on `batch` samples; batch 0 does nothing and succeeds. */
PNETRT_API int pnetrt_infer(pnetrt_model *m, int64_t batch, const void *const *inputs, void *const *outputs);
/* The message of this thread's last failed call on m (or, when it had none, of the last failed
 * call on m): threads that share a handle each read their own. */
PNETRT_API const char *pnetrt_last_error(const pnetrt_model *m);
/* Frees m (NULL does nothing); no other call on m may be running or follow. */
PNETRT_API void pnetrt_destroy(pnetrt_model *m);

/* ---- threads and schedules ---- */
/* Threads per call (default: all cores, or OMP_NUM_THREADS). */
PNETRT_API int pnetrt_set_threads(pnetrt_model *m, int threads);
PNETRT_API int pnetrt_threads(const pnetrt_model *m);
/* Batch-parallel replicas: the batch splits into R near-equal shards, each run by its own group of
 * about threads/R threads with its own arena. Results are identical for any R. */
PNETRT_API int pnetrt_set_replicas(pnetrt_model *m, int replicas);
PNETRT_API int pnetrt_replicas(const pnetrt_model *m);
/* The replicas and the threads the last call ran on. */
PNETRT_API int pnetrt_last_replicas(const pnetrt_model *m);
PNETRT_API int pnetrt_last_threads(const pnetrt_model *m);
/* Pipeline execution of a network with @partition stages (on by default when it has stages). */
PNETRT_API int pnetrt_set_pipeline(pnetrt_model *m, bool on);
PNETRT_API bool pnetrt_pipelined(const pnetrt_model *m);
PNETRT_API int pnetrt_set_microbatches(pnetrt_model *m, int microbatches);
PNETRT_API int pnetrt_microbatches(const pnetrt_model *m);
/* Threads for each of the n pipeline stages, as shares (NULL: by FLOPs). */
PNETRT_API int pnetrt_set_stage_threads(pnetrt_model *m, const int *shares, int n);
/* "serial", "batch", "pipeline" or "hybrid". */
PNETRT_API int pnetrt_set_schedule(pnetrt_model *m, const char *schedule);
/* Records a Chrome trace of every call from now on, written to path when m is destroyed; NULL
 * stops. pnetrt_write_trace writes what was recorded so far. */
PNETRT_API int pnetrt_set_trace(pnetrt_model *m, const char *path);
PNETRT_API int pnetrt_write_trace(pnetrt_model *m, const char *path);
/* The pipeline bubble of the last call, measured and predicted (-1 when it was not pipelined);
 * *streamed (may be NULL) receives the micro-batches one pipeline streamed. */
PNETRT_API double pnetrt_measured_bubble(const pnetrt_model *m);
PNETRT_API double pnetrt_predicted_bubble(const pnetrt_model *m, int64_t *streamed);

/* ---- training (a network with a train { } block) ---- */
/* One optimizer step: the network's inputs, then its training inputs; *loss (may be NULL) gets
 * the batch's mean loss. Bitwise identical for any thread or replica count. */
PNETRT_API int pnetrt_train_step(pnetrt_model *m, int64_t batch, const void *const *inputs, float *loss);
/* The loss sum and correct predictions of a batch in inference mode. */
PNETRT_API int pnetrt_eval(pnetrt_model *m, int64_t batch, const void *const *inputs, double *loss_sum,
                           int64_t *correct);
PNETRT_API int pnetrt_set_lr(pnetrt_model *m, double lr);
PNETRT_API double pnetrt_lr(const pnetrt_model *m);
PNETRT_API int pnetrt_set_train_seed(pnetrt_model *m, uint64_t seed);
PNETRT_API int64_t pnetrt_train_steps(const pnetrt_model *m);

/* ---- files ---- */
/* Saves the parameters as safetensors, atomically (with the optimizer state when the network
 * trains); loads such a file. A failed load changes nothing. */
PNETRT_API int pnetrt_save_file(pnetrt_model *m, const char *path);
PNETRT_API int pnetrt_load_file(pnetrt_model *m, const char *path);

/* ---- for generated code only (runtime/pnetrt_abi.h) ---- */
/* The executables' main: infer, bench, info, train, eval. */
PNETRT_API int pnetrt_main(const pnetrt_desc *d, int argc, char **argv);
/* A barrier across the threads of one forward call. */
PNETRT_API void pnetrt_barrier(void);
/* After each step of a training segment (call: the segment's pnetrt_train_call): while bench
 * --profile times this model's training steps, thread 0 of each team adds the time since its
 * last mark to descriptor layer `layer` (part 0: its forward, 1: its backward; + 2: the segment's
 * last step, for which the team first waits at a barrier); layer < 0 only starts the clock.
 * Otherwise nothing. */
PNETRT_API void pnetrt_step_mark(const void *call, int64_t layer, int64_t part, int64_t ith);

#ifdef __cplusplus
}
#endif
#endif
