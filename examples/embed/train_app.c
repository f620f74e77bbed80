/* Trains examples/digits_mlp.pnet from a C program through its embedding header: a synthetic
 * 10-class problem (each class a noisy prototype), then checks that the loss fell, that the
 * weights after training are bitwise identical on 1 and 2 threads, and that a saved checkpoint
 * loads back. Build: pnetc examples/digits_mlp.pnet -c -o digits_mlp.o, then
 *   cc train_app.c digits_mlp.o $(pkg-config --cflags --libs pnetrt) */
#include "digits_mlp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N = 320, F = DIGITS_MLP_X_SIZE, STEPS = 60, B = 32 };

static unsigned rng = 12345;
static float uniform(void) {
    rng = rng * 1103515245u + 12345u;
    return (float)((rng >> 8) & 0xFFFF) / 65536.0f;
}

static float X[N][F], proto[10][F];
static int32_t Y[N];

/* Trains a fresh network on `threads` threads and saves it to path; returns the last loss. */
static int train(int threads, const char *path, float *first, float *last) {
    digits_mlp *net;
    if (digits_mlp_create(&net, NULL) || digits_mlp_set_threads(net, threads)) {
        fprintf(stderr, "create: %s\n", digits_mlp_last_error(net));
        digits_mlp_destroy(net);
        return 1;
    }
    for (int s = 0; s < STEPS; s++) {
        int at = (s * B) % N;
        float loss;
        if (digits_mlp_train_step(net, B, &X[at][0], &Y[at], &loss)) {
            fprintf(stderr, "train_step: %s\n", digits_mlp_last_error(net));
            digits_mlp_destroy(net);
            return 1;
        }
        if (s == 0) *first = loss;
        *last = loss;
    }
    int rc = digits_mlp_save(net, path);
    if (rc) fprintf(stderr, "save: %s\n", digits_mlp_last_error(net));
    digits_mlp_destroy(net);
    return rc;
}

static long file_bytes(const char *path, unsigned char **out) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *out = malloc((size_t)n);
    if (!*out || fread(*out, 1, (size_t)n, f) != (size_t)n) n = -1;
    fclose(f);
    return n;
}

int main(void) {
    for (int c = 0; c < 10; c++)
        for (int k = 0; k < F; k++) proto[c][k] = uniform() < 0.3f ? 16.0f * uniform() : 0.0f;
    for (int i = 0; i < N; i++) {
        Y[i] = i % 10;
        for (int k = 0; k < F; k++) X[i][k] = proto[Y[i]][k] + 2.0f * uniform();
    }
    float first1, last1, first2, last2;
    if (train(1, "t1.safetensors", &first1, &last1) || train(2, "t2.safetensors", &first2, &last2)) return 1;
    printf("loss: first %.4f, last %.4f\n", first1, last1);
    if (!(last1 < first1 * 0.5f)) {
        printf("FAIL: the loss did not fall\n");
        return 1;
    }
    unsigned char *a, *b;
    long na = file_bytes("t1.safetensors", &a), nb = file_bytes("t2.safetensors", &b);
    if (na <= 0 || na != nb || memcmp(a, b, (size_t)na) != 0) {
        printf("FAIL: weights differ between 1 and 2 threads\n");
        return 1;
    }
    printf("weights identical on 1 and 2 threads (%ld bytes)\n", na);
    digits_mlp *net;
    float probs[10];
    if (digits_mlp_create(&net, NULL) || digits_mlp_load(net, "t1.safetensors") ||
        digits_mlp_infer(net, 1, &X[3][0], probs)) {
        fprintf(stderr, "reload: %s\n", digits_mlp_last_error(net));
        return 1;
    }
    int best = 0;
    for (int k = 1; k < 10; k++)
        if (probs[k] > probs[best]) best = k;
    printf("reloaded checkpoint predicts class %d for a sample of class %d\n", best, Y[3]);
    digits_mlp_destroy(net);
    free(a);
    free(b);
    return best == Y[3] ? 0 : 1;
}
