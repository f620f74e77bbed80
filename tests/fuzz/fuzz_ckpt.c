/* libFuzzer target: a training checkpoint's metadata (runtime/core/ckpt.h), as pnetrt_load reads it on
   --resume and NET_load: the safetensors file is opened, then pnetrt_ckpt_meta_read checks every field.
   Besides "no crash": an error is one non-empty line naming the file; an accepted checkpoint holds only
   values its options allow, and each accepted integer prints back to the exact text of its field.
   See docs/testing.md. */
#include "fuzz_file.h"
#include "ckpt.h"

#include <inttypes.h>
#include <string.h>

/* An integer field read as v: it must print back as the field's text, digits and all. */
static void same_text(const pnetrt_st *st, const char *key, int64_t v) {
    const char *s = pnetrt_st_meta(st, key);
    if (!s) return;
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRId64, v);
    /* leading zeros are the one spelling that differs */
    const char *p = s + (*s == '-');
    while (p[0] == '0' && p[1]) p++;
    if (strcmp(buf + (*buf == '-'), p) || (v < 0) != (*s == '-')) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static fuzz_file f;
    char err[512];
    fuzz_file_set(&f, "fuzz.safetensors", data, size);
    pnetrt_st *st;
    if (pnetrt_st_open(f.path, &st, err, sizeof err)) return 0; /* the safetensors target covers this */
    (void)pnetrt_ckpt_is_checkpoint(st);
    pnetrt_ckpt_meta m;
    if (pnetrt_ckpt_meta_read(st, "ckpt.safetensors", &m, err, sizeof err)) {
        if (!err[0] || strchr(err, '\n') || strncmp(err, "ckpt.safetensors: metadata field '", 34)) abort();
    } else {
        if (m.epoch < 0 || m.epoch > PNETRT_CKPT_MAX_EPOCHS || m.batch < 0 || m.batch > PNETRT_CKPT_MAX_COUNT ||
            m.step < 0 || m.step > PNETRT_CKPT_MAX_COUNT || m.seed < 0 || m.batch_size < 0 ||
            m.batch_size > PNETRT_CKPT_MAX_BATCH || m.shuffle < -1 || m.shuffle > 1)
            abort();
        if (pnetrt_st_meta(st, "lr") ? !(m.lr > 0) || !isfinite(m.lr) : m.lr != 0) abort();
        if (m.optimizer && strcmp(m.optimizer, "sgd") && strcmp(m.optimizer, "adam")) abort();
        same_text(st, "epoch", m.epoch);
        same_text(st, "batch", m.batch);
        same_text(st, "step", m.step);
        same_text(st, "seed", m.seed);
        same_text(st, "batch_size", m.batch_size);
        same_text(st, "shuffle", m.shuffle);
    }
    pnetrt_st_close(st);
    return 0;
}
