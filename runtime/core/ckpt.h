/* A training checkpoint's metadata (the safetensors "__metadata__" that pnetrt_save writes), read
 * and checked as strictly as the options that set each value: a file is untrusted input. Used by
 * pnetrt_load (runtime/core/ckpt.c) and the ckpt fuzz target (tests/fuzz/fuzz_ckpt.c); it needs only
 * the safetensors reader, so it is header-only and the fuzz build, which has no OpenMP runtime
 * and no libpnetrt, compiles it as it is.
 *
 * Fields: epoch (epochs done, 0 to 1,000,000, the largest --epochs), batch (batches done in that
 * epoch) and step (optimizer steps: SGD's and Adam's step count), each a decimal integer from 0 to
 * 2^53; seed (0 to 2^63 - 1, as --seed); and, when present, lr (a finite number > 0, as --lr),
 * batch_size (0 when unknown, else 1 to 2^24, as --batch), shuffle (-1 unknown, 0 or 1) and
 * optimizer ("sgd" or "adam"). An error is one line: 'PATH: metadata field 'lr' is "nan"; expected
 * a finite number > 0'. */
#ifndef PNETRT_CKPT_H
#define PNETRT_CKPT_H
#include "io.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PNETRT_CKPT_MAX_EPOCHS INT64_C(1000000)
#define PNETRT_CKPT_MAX_COUNT (INT64_C(1) << 53)
#define PNETRT_CKPT_MAX_BATCH (INT64_C(1) << 24)

typedef struct pnetrt_ckpt_meta {
    int64_t epoch, batch, step, seed;
    int64_t batch_size;    /* 0: not recorded */
    int shuffle;           /* -1: not recorded */
    double lr;             /* 0: not recorded */
    const char *optimizer; /* "sgd", "adam", or NULL when not recorded */
} pnetrt_ckpt_meta;

/* True when the file is a pnet training checkpoint (its optimizer state and position are read). */
static inline bool pnetrt_ckpt_is_checkpoint(const pnetrt_st *st) {
    const char *f = pnetrt_st_meta(st, "format");
    return f && !strcmp(f, "pnet-checkpoint");
}

/* The metadata error: the value quoted on one line (control bytes as \xNN, at most 40 bytes). */
static inline int pnetrt_ckpt_bad(const char *path, const char *key, const char *v, const char *expected, char *err,
                                  size_t errlen) {
    if (!v) {
        snprintf(err, errlen, "%s: metadata field '%s' is missing; expected %s", path, key, expected);
        return 1;
    }
    char q[200];
    size_t n = 0, i = 0;
    for (; v[i] && i < 40; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') n += (size_t)snprintf(q + n, sizeof q - n, "\\x%02x", c);
        else q[n++] = (char)c;
    }
    q[n] = 0;
    snprintf(err, errlen, "%s: metadata field '%s' is \"%s\"%s; expected %s", path, key, q, v[i] ? "..." : "", expected);
    return 1;
}

/* A decimal integer in [lo, hi]: digits only (a '-' before them, not before zero), the whole
 * string, no overflow. */
static inline bool pnetrt_ckpt_parse_int(const char *v, int64_t lo, int64_t hi, int64_t *out) {
    bool neg = *v == '-';
    const char *p = v + neg;
    if (!*p) return false;
    uint64_t x = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') return false;
        unsigned d = (unsigned)(*p - '0');
        if (x > (UINT64_MAX - d) / 10) return false;
        x = x * 10 + d;
    }
    if (neg ? x == 0 || x > (uint64_t)INT64_MAX + 1 : x > (uint64_t)INT64_MAX) return false; /* no "-0" */
    int64_t s = neg ? (x == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)x) : (int64_t)x;
    if (s < lo || s > hi) return false;
    *out = s;
    return true;
}

static inline int pnetrt_ckpt_int(const pnetrt_st *st, const char *path, const char *key, bool required, int64_t lo,
                                  int64_t hi, int64_t *out, char *err, size_t errlen) {
    const char *v = pnetrt_st_meta(st, key);
    if (!v && !required) return 0;
    char expected[96];
    snprintf(expected, sizeof expected, "a decimal integer from %lld to %lld", (long long)lo, (long long)hi);
    if (!v || !pnetrt_ckpt_parse_int(v, lo, hi, out)) return pnetrt_ckpt_bad(path, key, v, expected, err, errlen);
    return 0;
}

/* Reads and checks a checkpoint's metadata into *m; 0, or 1 with the one-line error in err. */
static inline int pnetrt_ckpt_meta_read(const pnetrt_st *st, const char *path, pnetrt_ckpt_meta *m, char *err,
                                        size_t errlen) {
    *m = (pnetrt_ckpt_meta){.shuffle = -1};
    int64_t shuffle = -1;
    if (pnetrt_ckpt_int(st, path, "epoch", true, 0, PNETRT_CKPT_MAX_EPOCHS, &m->epoch, err, errlen) ||
        pnetrt_ckpt_int(st, path, "batch", true, 0, PNETRT_CKPT_MAX_COUNT, &m->batch, err, errlen) ||
        pnetrt_ckpt_int(st, path, "step", true, 0, PNETRT_CKPT_MAX_COUNT, &m->step, err, errlen) ||
        pnetrt_ckpt_int(st, path, "seed", true, 0, INT64_MAX, &m->seed, err, errlen) ||
        pnetrt_ckpt_int(st, path, "batch_size", false, 0, PNETRT_CKPT_MAX_BATCH, &m->batch_size, err, errlen) ||
        pnetrt_ckpt_int(st, path, "shuffle", false, -1, 1, &shuffle, err, errlen))
        return 1;
    m->shuffle = (int)shuffle;
    const char *lr = pnetrt_st_meta(st, "lr");
    if (lr) {
        /* strtod's own syntax, but no leading space and nothing after the number */
        char *end;
        double v = *lr && *lr != ' ' && (*lr < '\t' || *lr > '\r') ? strtod(lr, &end) : NAN;
        if (!(v > 0) || !isfinite(v) || *end)
            return pnetrt_ckpt_bad(path, "lr", lr, "a finite number > 0", err, errlen);
        m->lr = v;
    }
    const char *o = pnetrt_st_meta(st, "optimizer");
    if (o && strcmp(o, "sgd") && strcmp(o, "adam"))
        return pnetrt_ckpt_bad(path, "optimizer", o, "\"sgd\" or \"adam\"", err, errlen);
    m->optimizer = o;
    return 0;
}

#endif
