/* Test helper shared by the training tests (test_grad, test_grad_ref): a model with seeded,
 * perturbed weights and random inputs for a compiled network. Include after jit_util.h. */
#ifndef PNET_TESTS_TRAIN_UTIL_H
#define PNET_TESTS_TRAIN_UTIL_H

#include "jit_util.h"
#include "model.h"

/* A model with PyTorch-style weights from seed; norm weights and biases (ones and zeros) moved
 * off their defaults, so a gradient that forgets gamma cannot pass. Learning rate 0. */
static pnetrt_model *make_model(const pnetrt_desc *d, int threads, uint64_t seed) {
    pnetrt_model *m;
    if (pnetrt_create(&m, d, NULL)) fail_msg("create: %s", pnetrt_last_error(m));
    assert_int_equal(pnetrt_set_threads(m, threads), 0);
    float *w = pnetrt_params_mut(m);
    assert_non_null(w);
    pnetrt_init_params(d, w, seed);
    uint64_t saved = rng;
    rng = 0x2545F4914F6CDD1Dull;
    for (int64_t p = 0; p < d->nparams; p++) {
        const pnetrt_tensor_desc *t = &d->params[p];
        if (!t->trainable || (t->init != PNETRT_INIT_ONES && t->init != PNETRT_INIT_ZEROS)) continue;
        for (int64_t j = 0; j < pnetrt_sample_elems(t); j++) w[t->offset + j] += (float)(rnd() - 0.5);
    }
    rng = saved;
    assert_int_equal(pnetrt_train_freeze(m), 0);
    return m;
}

/* The network's inputs, then its training inputs, into ins[0..16): features in [-2, 2), ids and
 * labels in range. Returns how many; free each with free(). */
static int make_inputs(const pnetrt_desc *d, int64_t batch, void **ins) {
    const pnetrt_train_desc *td = d->train;
    int n = (int)(d->ninputs + td->ntrain_inputs);
    assert_true(n <= 16);
    for (int64_t i = 0; i < n; i++) {
        const pnetrt_tensor_desc *t = i < d->ninputs ? &d->inputs[i] : &td->train_inputs[i - d->ninputs];
        int64_t cnt = pnetrt_sample_elems(t) * (t->shape[0] < 0 ? batch : 1);
        int64_t limit = i < d->ninputs ? t->limit : td->classes;
        ins[i] = malloc((size_t)cnt * 4 + 4);
        for (int64_t k = 0; k < cnt; k++) {
            if (t->dtype) ((int32_t *)ins[i])[k] = (int32_t)(rnd() * (double)limit);
            else ((float *)ins[i])[k] = (float)(4.0 * rnd() - 2.0);
        }
    }
    return n;
}

#endif
