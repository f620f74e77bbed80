/* libFuzzer target: the .npy readers, in memory (pnetrt_npy_parse, used by the data loaders) and from a file
   (pnetrt_npy_read; pnetrt_data_read_npy, which converts infer's inputs, as float32 and as int32).
   See docs/testing.md. */
#include "fuzz_file.h"
#include "data.h"
#include "io.h"

#include <string.h>

/* A read that succeeded: every byte of the array is touched (ASan sees a short buffer), its dtype is
 * the one asked for (when dtype >= 0), and it is freed. One that failed: a one-line message. */
static void check_read(int rc, pnetrt_array *a, int dtype, const char *err) {
    if (rc == 0) {
        if (dtype >= 0 && a->dtype != (pnetrt_dtype)dtype) abort();
        volatile unsigned char sink = 0;
        for (size_t i = 0; i < a->nbytes; i++) sink ^= ((unsigned char *)a->data)[i];
        (void)sink;
        pnetrt_array_free(a);
    } else if (!err[0] || strchr(err, '\n')) {
        abort(); /* every error is one non-empty line */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static fuzz_file f;
    char err[512];
    pnetrt_npy_view v;
    int64_t per = 1; /* values per sample, so that infer's shape rule lets a parsed file through */
    if (pnetrt_npy_parse(data, size, "fuzz.npy", &v, err, sizeof err) == 0) {
        for (int i = 1; i < v.rank && i < 8; i++) per = v.shape[i] && per <= INT64_MAX / v.shape[i] ? per * v.shape[i] : 1;
        /* touch every byte the view claims, so ASan sees a view past the buffer */
        volatile unsigned char sink = 0;
        for (size_t i = 0; i < v.nbytes; i++) sink ^= v.data[i];
        (void)sink;
    } else if (!err[0] || strchr(err, '\n')) {
        abort(); /* every error is one non-empty line */
    }
    fuzz_file_set(&f, "fuzz.npy", data, size);
    pnetrt_array a;
    check_read(pnetrt_npy_read(f.path, &a, err, sizeof err), &a, -1, err);
    for (int dtype = PNETRT_F32; dtype <= PNETRT_I32; dtype++)
        for (int u8 = 0; u8 < 2; u8++)
            check_read(pnetrt_data_read_npy(f.path, dtype, per, true, &(pnetrt_data_opts){.no_scale = u8}, &a, NULL,
                                            err, sizeof err),
                       &a, dtype, err);
    return 0;
}
