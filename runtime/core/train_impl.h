/* The trainer's private parts, for the files of the training module: train.c (the step, its
 * schedules and the setters) and ckpt.c (checkpoints). No other file includes this header. The
 * trainer belongs to the model (its trainer slot, model.h) and owns every buffer it points to. */
#ifndef PNETRT_CORE_TRAIN_IMPL_H
#define PNETRT_CORE_TRAIN_IMPL_H

#include "gradtree.h"
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
    /* The folded gradient tree (gradtree.h), when a step has one segment: each group's partial
     * sums, fold_depth buffers of param_floats per group, instead of one slot per chunk. */
    float *fold;
    int64_t fold_cap;     /* buffers allocated */
    int64_t slot_cap;     /* chunk slots allocated */
    float *recv;          /* on ranks: every rank's partial sums of this rank's slice of the gradient */
    int64_t recv_cap;     /* floats */
    const float *grad;    /* the last step's whole gradient */
    /* Each pipeline stage's parameter elements, for folding a pipelined step's tree: stage s's
     * ranges are stage_ranges[stage_first[s] .. stage_first[s + 1]); stage_map is 1 when known,
     * -1 when a parameter's stage could not be found, 0 before the first look. */
    pnetrt_range *stage_ranges;
    int *stage_first;
    int stage_map;
    pnetrt_handoff *hand; /* pipeline hand-offs, one per replica pipeline, nhand of them */
    pnetrt_spin_barrier *stage_bars; /* pipeline stage barriers, nbars of them */
    int nhand, nbars;
    /* The last pipelined step: each stage's busy seconds (forward and backward, replica 0), the
     * step's seconds, and its micro-batches per replica; for the measured bubble. */
    double busy[PNETRT_MAX_STAGES], wall;
    int64_t pipe_mb;
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
};

/* Fills the trainer's stage_ranges (each pipeline stage's parameter elements) once; false when
 * some parameter's stage is unknown. */
bool pnetrt_train_stage_map(pnetrt_model *m, pnetrt_trainer *t);
/* Makes every rank's optimizer state whole again after sliced updates (collective over the ranks
 * that sliced it; every rank of the model calls it). 0, or 1 with the error set. */
int pnetrt_train_opt_whole(pnetrt_model *m);
/* Sets the model's error message from a printf format; returns 1. */
int pnetrt_train_failf(pnetrt_model *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The model's trainer, made (and its freeing hook installed) at the first call; NULL, with the error
 * set, when the model was not created or the network does not train. */
pnetrt_trainer *pnetrt_trainer_get(pnetrt_model *m);

#endif
