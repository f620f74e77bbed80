/* The model's Chrome trace (trace.c), for the inference schedules (infer.c, stages.c) and training (train.c): pnetrt_set_trace and
 * pnetrt_write_trace (pnet.h) start and write it, pnetrt_trace_add records one slice. The trace buffer
 * belongs to the model. */
#ifndef PNETRT_CORE_TRACE_H
#define PNETRT_CORE_TRACE_H

#include "rt.h"

#include <stdbool.h>
#include <stdint.h>

/* Seconds on the monotonic clock: the trace's time, and the schedules' wall time. */
double pnetrt_now_s(void);
/* A slice's stage for the time a call spent in communication with the other ranks. */
enum { PNETRT_TRACE_MESSAGES = -2 };
/* What a slice is: an inference stage (or the whole network), and the parts of a training step. */
typedef enum pnetrt_trace_kind {
    PNETRT_TRACE_INFER = 0,
    PNETRT_TRACE_FORWARD,      /* a pipeline stage's forward of a micro-batch */
    PNETRT_TRACE_BACKWARD,     /* its backward */
    PNETRT_TRACE_STEP_CHUNK,   /* an unpipelined step's forward and backward of one chunk (one function) */
    PNETRT_TRACE_SEGMENT,      /* one segment of a step cut at batch statistics */
    PNETRT_TRACE_EVAL,         /* an evaluation's forward and loss of one chunk */
    PNETRT_TRACE_PREP,         /* the step's preparation (transposed weights) */
    PNETRT_TRACE_REDUCE,       /* a reduction point: the chunks' statistics and gradients combined */
    PNETRT_TRACE_SYNC,         /* batch statistics between segments */
    PNETRT_TRACE_UPDATE,       /* the gradient tree and the optimizer */
} pnetrt_trace_kind;
/* True when the model records a trace. */
bool pnetrt_tracing(const pnetrt_model *m);
/* Records a slice of a kind, as pnetrt_trace_add does. */
void pnetrt_trace_slice(pnetrt_model *m, pnetrt_trace_kind kind, double b, double e, int stage, int replica, int64_t mb,
                        int64_t n);
/* Records a slice [b, e) of stage `stage` (-1: the whole network; PNETRT_TRACE_MESSAGES) of replica
 * `replica` on this thread: micro-batch mb of n samples. Nothing when the model is not tracing. */
void pnetrt_trace_add(pnetrt_model *m, double b, double e, int stage, int replica, int64_t mb, int64_t n);

#endif
