/* Stage boundaries: for pipeline stages on ranks (one stage per process), what each stage must
 * receive from the one before it, which stage writes each output, and which stage reads each
 * parameter; from the inference plan. The descriptor carries them (pnetrt_abi.h) and the rank
 * report prints their bytes. */
#ifndef PN_BOUNDS_H
#define PN_BOUNDS_H
#include "graph.h"

#include <stdint.h>

typedef struct pn_bounds {
    int nstages;
    int64_t *recv_first;   /* nstages + 1: stage s receives values [recv_first[s], recv_first[s + 1]) */
    int64_t *recv;         /* 3 per value: PNETRT_XFER_* kind, offset, bytes */
    int64_t *output_stage; /* per graph output */
    int64_t *param_stage;  /* per parameter, in the descriptor's order (node after node) */
    int64_t nparams;
} pn_bounds;

/* Training's stage boundaries (the training plan's arena, where every value is per sample):
 * before its forward of a micro-batch, stage s receives from stage s - 1 the values fwd[2 * j ..]
 * for j in [fwd_first[s], fwd_first[s + 1]), as (act_off, bytes per sample) pairs; before its
 * backward, it receives from stage s + 1 the gradients bwd[2 * j ..] for j in [bwd_first[s],
 * bwd_first[s + 1]), as (grad_off, bytes per sample) pairs: those of the values it sent forward,
 * with the later stages' contributions added. */
typedef struct pn_tbounds {
    int nstages;
    int64_t *fwd_first, *fwd, *bwd_first, *bwd;
} pn_tbounds;
void pn_train_bounds(const pn_graph *g, pn_tbounds *b);
void pn_tbounds_free(pn_tbounds *b);

/* Needs the inference plan (live, fused, mem, order). Free with pn_bounds_free. */
void pn_stage_bounds(const pn_graph *g, pn_bounds *b);
void pn_bounds_free(pn_bounds *b);
/* Bytes stage s receives per sample (batched values) and per micro-batch in all (fixed ones). */
void pn_bounds_bytes(const pn_bounds *b, int s, int64_t *per_sample, int64_t *fixed);

#endif
