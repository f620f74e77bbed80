/* examples/embed/app.c — two compiled networks embedded in one C program.
 *
 *   pnetc ../digits_mlp.pnet -c -o digits_mlp.o     # writes digits_mlp.h beside it
 *   pnetc ../lenet.pnet -c -o lenet.o
 *   cc app.c digits_mlp.o lenet.o $(pkg-config --cflags --libs pnetrt) -o app && ./app
 *
 * Both networks start from PyTorch-style seeded initialisation (pass a safetensors file to
 * *_create to load trained weights). Every symbol carries the network's prefix, so the two
 * link side by side. */
#include "digits_mlp.h"
#include "lenet.h"

#include <stdio.h>
#include <stdlib.h>

enum { BATCH = 3 };

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

int main(int argc, char **argv) {
    digits_mlp *mlp = NULL;
    lenet *cnn = NULL;
    if (digits_mlp_create(&mlp, argc > 1 ? argv[1] : NULL) != 0) {
        fprintf(stderr, "digits_mlp: %s\n", digits_mlp_last_error(mlp));
        digits_mlp_destroy(mlp);
        return 1;
    }
    if (lenet_create(&cnn, NULL) != 0) {
        fprintf(stderr, "lenet: %s\n", lenet_last_error(cnn));
        digits_mlp_destroy(mlp);
        lenet_destroy(cnn);
        return 1;
    }
    /* Two batch-parallel replicas on two threads; the results are the same as serial. */
    if (digits_mlp_set_threads(mlp, 2) != 0 || digits_mlp_set_replicas(mlp, 2) != 0 ||
        digits_mlp_set_schedule(mlp, "batch") != 0) {
        fprintf(stderr, "digits_mlp: %s\n", digits_mlp_last_error(mlp));
        goto fail;
    }
    if (lenet_set_schedule(cnn, "zigzag") == 0) goto fail;
    printf("rejected schedule: %s\n", lenet_last_error(cnn));
    static float x[BATCH * DIGITS_MLP_X_SIZE], probs[BATCH * DIGITS_MLP_PROBS_SIZE];
    static float img[BATCH * LENET_X_SIZE], lprobs[BATCH * LENET_PROBS_SIZE];
    for (int i = 0; i < BATCH * DIGITS_MLP_X_SIZE; i++) x[i] = (float)((i * 7) % 17);
    for (int i = 0; i < BATCH * LENET_X_SIZE; i++) img[i] = (float)((i * 13) % 29) / 29.0f;
    if (digits_mlp_infer(mlp, BATCH, x, probs) != 0 || lenet_infer(cnn, BATCH, img, lprobs) != 0) {
        fprintf(stderr, "infer failed: %s %s\n", digits_mlp_last_error(mlp), lenet_last_error(cnn));
        goto fail;
    }
    /* Bad input is reported, never fatal. */
    if (digits_mlp_infer(mlp, -1, x, probs) == 0) goto fail;
    printf("rejected batch -1: %s\n", digits_mlp_last_error(mlp));
    for (int b = 0; b < BATCH; b++) {
        float sum = 0;
        for (int k = 0; k < DIGITS_MLP_PROBS_SIZE; k++) sum += probs[b * DIGITS_MLP_PROBS_SIZE + k];
        printf("sample %d: digits_mlp class %d (probabilities sum to %.4f), lenet class %d\n", b,
               argmax(probs + b * DIGITS_MLP_PROBS_SIZE, DIGITS_MLP_PROBS_SIZE), sum,
               argmax(lprobs + b * LENET_PROBS_SIZE, LENET_PROBS_SIZE));
    }
    digits_mlp_destroy(mlp);
    lenet_destroy(cnn);
    return 0;
fail:
    digits_mlp_destroy(mlp);
    lenet_destroy(cnn);
    return 1;
}
