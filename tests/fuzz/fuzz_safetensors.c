/* libFuzzer target: the safetensors reader (header JSON, entries, then every tensor read as float).
   See docs/testing.md. */
#include "fuzz_file.h"
#include "io.h"

#include <stdbool.h>
#include <string.h>

#define MAX_FLOATS (1 << 20) /* tensors larger than this are looked at but not read */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static fuzz_file f;
    static float *buf;
    if (!buf && !(buf = malloc(MAX_FLOATS * sizeof *buf))) abort();
    char err[512];
    fuzz_file_set(&f, "fuzz.safetensors", data, size);
    pnetrt_st *st;
    if (pnetrt_st_open(f.path, &st, err, sizeof err)) {
        if (!err[0] || strchr(err, '\n')) abort(); /* every error is one non-empty line */
        return 0;
    }
    (void)pnetrt_st_meta(st, "format");
    (void)pnetrt_st_name(st, -1);
    (void)pnetrt_st_name(st, pnetrt_st_count(st));
    for (int i = 0; i < pnetrt_st_count(st); i++) {
        const char *name = pnetrt_st_name(st, i);
        int rank;
        int64_t shape[PNETRT_MAX_RANK];
        if (pnetrt_st_shape(st, name, &rank, shape)) abort(); /* every listed name is found */
        uint64_t n = 1;
        bool zero = false;
        for (int k = 0; k < rank; k++) {
            uint64_t d = (uint64_t)shape[k];
            if (d == 0) zero = true;
            else n = n > MAX_FLOATS / d ? MAX_FLOATS + 1 : n * d;
        }
        if (zero || n <= MAX_FLOATS) {
            if (pnetrt_st_read_f32(st, name, rank, shape, buf, err, sizeof err) && (!err[0] || strchr(err, '\n')))
                abort();
        }
        /* a wrong shape is an error, never a read */
        int64_t wrong[PNETRT_MAX_RANK + 1] = {0};
        memcpy(wrong, shape, sizeof(int64_t) * (size_t)rank);
        wrong[rank] = 3;
        if (!pnetrt_st_read_f32(st, name, rank + 1, wrong, buf, err, sizeof err)) abort();
    }
    if (!pnetrt_st_read_f32(st, "no such tensor \x01", 0, NULL, buf, err, sizeof err)) abort();
    pnetrt_st_close(st);
    return 0;
}
