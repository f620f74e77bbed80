/* libFuzzer target: the training data loaders (CSV, .npy and IDX, gzip-compressed or not).
 * input := kind features_lo features_hi count  data_file  ["PNETFUZZ" labels_file]
 *   kind: bit 0 set for float targets, else class ids; features: 1..1024 (0 reads as 1);
 *   count: the number of classes or of targets per sample (0 reads as 1).
 * Without the separator there is no labels file (the CSV case). See docs/testing.md. */
#include "fuzz_file.h"
#include "data.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

#define SEP "PNETFUZZ"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static fuzz_file fx, fy;
    if (size < 4) return 0;
    int kind = data[0] & 1 ? PNETRT_LABELS_TARGET : PNETRT_LABELS_CLASS;
    int64_t features = (data[1] | data[2] << 8) % 1024;
    int64_t count = data[3];
    if (!features) features = 1;
    if (!count) count = 1;
    data += 4;
    size -= 4;
    const uint8_t *sep = memmem(data, size, SEP, strlen(SEP));
    size_t xlen = sep ? (size_t)(sep - data) : size;
    fuzz_file_set(&fx, "x", data, xlen);
    if (sep) fuzz_file_set(&fy, "y", sep + strlen(SEP), size - xlen - strlen(SEP));

    char err[512];
    pnetrt_data d;
    if (pnetrt_data_load(fx.path, sep ? fy.path : NULL, features, kind, count, count, &d, err, sizeof err)) {
        if (getenv("PNET_FUZZ_VERBOSE")) fprintf(stderr, "%s\n", err);
        if (!err[0] || strchr(err, '\n')) abort(); /* every error is one non-empty line */
        if (d.x || d.labels || d.targets || d.line || d.n) abort(); /* *out is left zeroed on failure */
        return 0;
    }
    /* what the header promises: n samples of finite values and in-range labels */
    if (d.n < 1 || d.features != features || !d.x) abort();
    for (int64_t i = 0; i < d.n * features; i++)
        if (!isfinite(d.x[i])) abort();
    if (kind == PNETRT_LABELS_CLASS) {
        if (!d.labels || d.targets) abort();
        for (int64_t i = 0; i < d.n; i++)
            if (d.labels[i] < 0 || d.labels[i] >= count) abort();
    } else {
        if (!d.targets || d.labels || d.target_elems != count) abort();
        for (int64_t i = 0; i < d.n * count; i++)
            if (!isfinite(d.targets[i])) abort();
    }
    char where[256];
    pnetrt_data_where(&d, fx.path, d.n - 1, where, sizeof where);
    if (getenv("PNET_FUZZ_VERBOSE")) fprintf(stderr, "loaded %" PRId64 " samples\n", d.n);
    pnetrt_data_free(&d);
    return 0;
}
