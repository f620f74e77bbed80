/* The model's Chrome trace (trace.c), for the inference schedules (infer.c): pnetrt_set_trace and
 * pnetrt_write_trace (pnet.h) start and write it, pnetrt_trace_add records one slice. The trace buffer
 * belongs to the model. */
#ifndef PNETRT_CORE_TRACE_H
#define PNETRT_CORE_TRACE_H

#include "rt.h"

#include <stdint.h>

/* Seconds on the monotonic clock: the trace's time, and the schedules' wall time. */
double pnetrt_now_s(void);
/* A slice's stage for the time a call spent in communication with the other ranks. */
enum { PNETRT_TRACE_MESSAGES = -2 };
/* Records a slice [b, e) of stage `stage` (-1: the whole network; PNETRT_TRACE_MESSAGES) of replica
 * `replica` on this thread: micro-batch mb of n samples. Nothing when the model is not tracing. */
void pnetrt_trace_add(pnetrt_model *m, double b, double e, int stage, int replica, int64_t mb, int64_t n);

#endif
