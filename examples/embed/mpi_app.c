/* Trains examples/digits_mlp.pnet on the ranks of MPI_COMM_WORLD from a C program (pnet_mpi.h):
 * every rank makes the same synthetic 10-class data and passes the whole batch; each rank computes
 * its own chunks, and the ranks combine the gradients so that every rank applies the same update.
 * Rank 0 saves the weights, then trains the same steps alone (MPI_COMM_SELF is not needed: a model
 * without pnetrt_set_comm runs in its process) and checks that the two are bitwise identical.
 * Build and run:
 *   pnetc examples/digits_mlp.pnet -c -o digits_mlp.o
 *   mpicc mpi_app.c digits_mlp.o $(pkg-config --cflags --libs pnetrt) -o mpi_app
 *   mpirun -np 2 ./mpi_app ranks.safetensors alone.safetensors */
#include <mpi.h>
#include <pnet.h>
#include <pnet_mpi.h>

#include "digits_mlp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N = 640, F = DIGITS_MLP_X_SIZE, STEPS = 40, B = 128 };

static unsigned rng = 12345;
static float uniform(void) {
    rng = rng * 1103515245u + 12345u;
    return (float)((rng >> 8) & 0xFFFF) / 65536.0f;
}

static float X[N][F], proto[10][F];
static int32_t Y[N];

/* Trains a fresh network, on the world's ranks when `ranks`, and saves it to path. */
static int train(bool ranks, const char *path, float *last) {
    pnetrt_model *m;
    int rc = pnetrt_create(&m, digits_mlp_descriptor(), NULL);
    if (!rc && ranks) rc = pnetrt_set_comm(m, MPI_COMM_WORLD);
    for (int s = 0; s < STEPS && !rc; s++) {
        int at = (s * B) % N;
        const void *in[] = {&X[at][0], &Y[at]};
        rc = pnetrt_train_step(m, B, in, last);
    }
    if (!rc) rc = pnetrt_save_file(m, path);
    if (rc) fprintf(stderr, "mpi_app: %s\n", pnetrt_last_error(m));
    pnetrt_destroy(m);
    return rc;
}

static int same_file(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    for (int ca = 0, cb = 0; same && ca != EOF;) {
        ca = fgetc(fa);
        cb = fgetc(fb);
        same = ca == cb;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

int main(int argc, char **argv) {
    int provided, rank, size;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc != 3) {
        if (rank == 0) fprintf(stderr, "usage: mpirun -np K mpi_app RANKS.safetensors ALONE.safetensors\n");
        MPI_Finalize();
        return 2;
    }
    for (int c = 0; c < 10; c++)
        for (int k = 0; k < F; k++) proto[c][k] = uniform() < 0.3f ? 16.0f * uniform() : 0.0f;
    for (int i = 0; i < N; i++) {
        Y[i] = i % 10;
        for (int k = 0; k < F; k++) X[i][k] = proto[Y[i]][k] + 2.0f * uniform();
    }
    float last;
    int rc = train(true, argv[1], &last);
    if (rank == 0 && !rc) {
        printf("%d ranks: last loss %.4f\n", size, last);
        float alone;
        rc = train(false, argv[2], &alone);
        if (!rc && !same_file(argv[1], argv[2])) {
            printf("FAIL: the weights of %d ranks differ from one process's\n", size);
            rc = 1;
        } else if (!rc) {
            printf("weights bitwise identical to one process's\n");
        }
    }
    MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Finalize();
    return rc;
}
