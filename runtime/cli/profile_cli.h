/* bench --profile (profile_cli.c): the per-layer profile of a model, written as JSON for pnetc
 * --profile. The caller owns the model and the buffers. */
#ifndef PNETRT_CLI_PROFILE_CLI_H
#define PNETRT_CLI_PROFILE_CLI_H

#include "rt.h"

#include <stdint.h>

/* Times every layer of m at `batch` samples of the given inputs and writes the profile to path;
 * prints one line saying where. 0, or 1 after printing the error. */
int pnetrt_bench_profile(pnetrt_model *m, int64_t batch, const void *const *inputs, void *const *outputs, const char *path);

#endif
