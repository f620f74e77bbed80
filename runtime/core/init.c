/* Default parameter initialisation, following PyTorch's rules for each layer: kaiming-uniform
 * weights with a = sqrt(5) (bound 1/sqrt(fan_in)), biases uniform in the same bound, norm scales
 * one and shifts zero, embeddings N(0, 1), prelu slopes 0.25. A counter-based generator keyed by
 * (seed, parameter, element) makes the values independent of thread count and order. */
#include "model.h"

#include <math.h>

static uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Uniform in [0, 1) with 24 bits. */
static double uniform(uint64_t seed, uint64_t param, uint64_t i) {
    uint64_t r = mix(mix(seed * 0x100000001b3ull ^ param) ^ i);
    return (double)(r >> 40) / 16777216.0;
}

void pnetrt_init_param(const pnetrt_desc *d, int64_t p, int64_t first, int64_t count, float *dst, uint64_t seed) {
    const pnetrt_tensor_desc *t = &d->params[p];
    double bound = t->fan_in > 0 ? 1.0 / sqrt((double)t->fan_in) : 0.0;
    for (int64_t k = 0; k < count; k++) {
        uint64_t i = (uint64_t)(first + k);
        switch (t->init) {
        case PNETRT_INIT_KAIMING:
        case PNETRT_INIT_BIAS: dst[k] = (float)((2.0 * uniform(seed, (uint64_t)p, i) - 1.0) * bound); break;
        case PNETRT_INIT_ONES: dst[k] = 1.0f; break;
        case PNETRT_INIT_ZEROS: dst[k] = 0.0f; break;
        case PNETRT_INIT_QUARTER: dst[k] = 0.25f; break;
        case PNETRT_INIT_NORMAL: {
            double u1 = uniform(seed, (uint64_t)p, 2 * i) + 1.0 / 33554432.0;
            double u2 = uniform(seed, (uint64_t)p, 2 * i + 1);
            dst[k] = (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
            break;
        }
        default: dst[k] = 0.0f; break;
        }
    }
}

void pnetrt_init_params(const pnetrt_desc *d, float *params, uint64_t seed) {
    for (int64_t p = 0; p < d->nparams; p++)
        pnetrt_init_param(d, p, 0, pnetrt_sample_elems(&d->params[p]), params + d->params[p].offset, seed);
}
