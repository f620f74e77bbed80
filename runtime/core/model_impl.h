/* The model's private parts, for the files that make it up: rt.c (the model: create, weights, settings,
 * destroy, errors and the lock), trace.c (the Chrome trace), infer.c (the inference schedules) and profile.c (bench --profile). No other file
 * includes this header: the rest of the runtime uses model.h. The model owns everything the struct points to. */
#ifndef PNETRT_CORE_MODEL_IMPL_H
#define PNETRT_CORE_MODEL_IMPL_H

#include "model.h"
#include "plan.h"
#include "transport.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* One slice of the trace: a stage (or the whole network) on one thread for one micro-batch of one
 * replica. */
typedef struct trace_event {
    double begin, end;
    int thread, stage, replica, kind; /* kind: pnetrt_trace_kind (trace.h) */
    int64_t microbatch, samples;
} trace_event;

enum { PNETRT_MAX_GROUPS = 256, PNETRT_RANK_SLOTS = 3 };
typedef struct pnetrt_msgs pnetrt_msgs;

struct pnetrt_model {
    const pnetrt_desc *d;
    float *params;       /* raw parameters: owned unless it is the embedded array; NULL until
                          * pnetrt_params_mut needs them where d->unprepare_param derives them */
    bool owns_params;
    float *prepared;     /* what the kernels read: params transformed by d->prepare */
    size_t prepared_bytes; /* prepared's mapping, or 0 when prepared is params */
    char *arena;         /* arenas[0] */
    char **arenas;       /* one activation arena per concurrently running replica */
    int narenas;
    char **slots;        /* pipeline micro-batch slots, slot_cap samples each */
    int nslots;
    pnetrt_handoff *hand; /* pipeline hand-offs, one per replica group that runs at once */
    int nhand;
    int64_t slot_cap;
    int replicas;        /* batch-parallel replicas (@shard(batch, R) or pnetrt_set_replicas) */
    int microbatches;    /* micro-batches per chunk in a pipeline (@pipeline or pnetrt_set_microbatches) */
    bool pipeline;       /* run pipeline stages concurrently (when the network has several) */
    double *stage_flops; /* FLOPs per sample of each stage, to share threads among stages */
    int *stage_shares;   /* the user's thread shares per stage (pnetrt_set_stage_threads), or NULL */
    trace_event *trace;  /* events, when tracing; written to trace_path by pnetrt_destroy */
    _Atomic int64_t ntrace;
    int64_t trace_cap;
    char *trace_path;
    double t0;           /* trace time origin */
    double busy[PNETRT_MAX_STAGES]; /* pipeline stage busy seconds of the last call (group 0) */
    double last_wall;    /* seconds of the last call */
    int64_t last_stream; /* micro-batches with samples that replica group 0 streamed in the last call */
    char *scratch;       /* threads * d->scratch_bytes */
    int scratch_threads;
    int threads;
    double flops_per_sample;
    bool adaptive;       /* small calls use fewer threads (PNET_ADAPTIVE_THREADS=0 turns it off) */
    bool stale;          /* params changed (training) since prepared was derived */
    uint64_t params_gen; /* pnetrt_params_gen */
    bool replicas_set;   /* replicas chosen by the user, not the default */
    int last_replicas;   /* replicas of the last call */
    int last_team;       /* threads the last call ran on */
    pnetrt_plans plans;  /* the inference calls' plans (infer.c, plan.h) */
    int last_plan;       /* the plan the last call took (PNETRT_PLAN_*, rt.h) */
    bool schedule_set;   /* the user set a schedule (pnetrt_set_schedule): calls take no other plan */
    bool pipe_set;       /* the user set micro-batches or stage threads: a pipeline stays one */
    pnetrt_trainer *trainer; /* training state, made by the first training call */
    pnetrt_trainer_free_fn *trainer_free; /* the training module's hook that frees it */
    pnetrt_comm *comm;       /* the ranks it runs on (comm.h), or NULL: this process alone */
    bool owns_comm;          /* comm came from pnetrt_model_set_comm, not the process default */
    /* Pipeline stages on ranks (stages.c): this rank's stage, or -1 when the ranks are replicas of
     * the whole network; the replica pipelines across the ranks; the ring of arena slots its
     * micro-batches pass through, and each slot's pending messages. */
    int rank_stage, rank_pipes;
    bool partial_params;     /* only rank_stage's parameters were loaded (the others are zeros) */
    char *rslots[PNETRT_RANK_SLOTS];
    int64_t rslot_cap;
    pnetrt_msgs *rsend[PNETRT_RANK_SLOTS], *rrecv[PNETRT_RANK_SLOTS];
    bool ready;              /* pnetrt_create succeeded: a failed model only answers last_error */
    /* Calls that use the arenas or state hold the lock, so threads sharing a handle take turns.
     * Recursive: set_schedule calls set_threads, save_file calls save. */
    pthread_mutex_t lock;
    uint64_t id;             /* unique in the process: which handle a thread's last error is of */
    char err[512];
    const char *weights_prefix; /* pnetrt_create_prefixed's, while it loads */
    char load_warning[512];     /* the weights file's tensors the network does not use, or "" */
};

/* Sets the model's error message from a printf format; returns 1. */
int pnetrt_failf(pnetrt_model *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Replica groups of a pipeline running at once: each needs a thread per stage. 0: too few
 * threads for one pipeline, so stages run one after another instead. */
int pnetrt_pipe_groups(int threads, int replicas, int stages);
/* Replica groups running at once: one per replica, at most one per thread. */
int pnetrt_group_count(int threads, int replicas);
/* The checks every inference call makes before it runs (infer.c); 0, or 1 with the error set. */
int pnetrt_infer_check(pnetrt_model *m, int64_t batch, const void *const *inputs, void *const *outputs);
/* Stages on ranks (stages.c): pnetrt_stage_infer runs an inference call as this rank's stage;
 * pnetrt_stages_free releases the rank's slots. */
int pnetrt_stage_infer(pnetrt_model *m, int64_t batch, const void *const *inputs, void *const *outputs);
void pnetrt_stages_free(pnetrt_model *m);

#endif
