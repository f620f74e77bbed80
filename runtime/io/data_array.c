/* The data loaders' .npy and IDX arrays: parsed in place, then converted to the samples or the labels. */
#define _POSIX_C_SOURCE 200809L
#include "data.h"
#include "data_internal.h"
#include "fileio.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- .npy and IDX arrays ----------------------------------------------------------------- */

const char *pnetrt_data_type_name(elem_type t) {
    static const char *const names[] = {"uint8", "int32", "int64", "float32", "float64", "float32"};
    return names[t];
}

static uint32_t rd_be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint32_t rd_le32(const unsigned char *p) {
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}
static uint64_t rd_le64(const unsigned char *p) {
    return (uint64_t)rd_le32(p + 4) << 32 | rd_le32(p);
}

/* Element i as a double. */
double pnetrt_data_get(const array *a, size_t i) {
    const unsigned char *p = a->data;
    switch (a->type) {
    case T_U8: return p[i];
    case T_I32: return (double)(int32_t)rd_le32(p + 4 * i);
    case T_I64: return (double)(int64_t)rd_le64(p + 8 * i);
    case T_F32:
    case T_F32BE: {
        uint32_t u = a->type == T_F32 ? rd_le32(p + 4 * i) : rd_be32(p + 4 * i);
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    case T_F64: {
        uint64_t u = rd_le64(p + 8 * i);
        double d;
        memcpy(&d, &u, 8);
        return d;
    }
    }
    return 0;
}

/* Element i of an integer array. */
int64_t pnetrt_data_get_int(const array *a, size_t i) {
    switch (a->type) {
    case T_U8: return a->data[i];
    case T_I32: return (int32_t)rd_le32(a->data + 4 * i);
    default: return (int64_t)rd_le64(a->data + 8 * i);
    }
}

/* "(60000, 28, 28)" */
static const char *shape_str(const array *a, char *buf, size_t len) {
    size_t n = (size_t)snprintf(buf, len, "(");
    for (int i = 0; i < a->rank && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%" PRId64, i ? ", " : "", a->shape[i]);
    if (n < len) snprintf(buf + n, len - n, a->rank == 1 ? ",)" : ")");
    return buf;
}

/* Product of the dims after the first: values per sample. false on overflow. */
bool pnetrt_data_per_sample(const array *a, uint64_t *out) {
    *out = 1;
    for (int i = 1; i < a->rank; i++)
        if (!pnetrt_io_mul_u64(*out, (uint64_t)a->shape[i], out)) return false;
    return true;
}

int pnetrt_data_parse_npy(const char *path, const blob *b, int role, array *a, char *err, size_t errlen) {
    pnetrt_npy_view v;
    if (pnetrt_npy_parse(b->buf, b->len, path, &v, err, errlen)) return -1;
    if (v.kind == 'u' && v.itemsize == 1)
        a->type = T_U8;
    else if (v.kind == 'i' && (v.itemsize == 4 || v.itemsize == 8))
        a->type = v.itemsize == 4 ? T_I32 : T_I64;
    else if (v.kind == 'f' && (v.itemsize == 4 || v.itemsize == 8))
        a->type = v.itemsize == 4 ? T_F32 : T_F64;
    else
        return pnetrt_io_fail(err, errlen, path, "dtype '%s' is not supported; %s", v.descr,
                              role == ROLE_CLASS    ? "class ids must be int32, int64 or uint8"
                              : role == ROLE_TARGET ? "targets must be float32 or float64"
                                                    : "expected float32, float64, int32, int64 or uint8");
    a->rank = v.rank;
    memcpy(a->shape, v.shape, sizeof a->shape);
    a->data = v.data;
    return 0;
}

/* idx := 00 00 type ndim (u32 big-endian dim){ndim} data     type: 08 uint8 | 0D float32 (big-endian) */
static int parse_idx(const char *path, const blob *b, array *a, char *err, size_t errlen) {
    const unsigned char *p = b->buf;
    if (b->len < 4)
        return pnetrt_io_fail(err, errlen, path, "truncated IDX header: the file has only %zu bytes", b->len);
    size_t elem;
    if (p[2] == 0x08) {
        a->type = T_U8;
        elem = 1;
    } else if (p[2] == 0x0D) {
        a->type = T_F32BE;
        elem = 4;
    } else {
        return pnetrt_io_fail(err, errlen, path,
                              "IDX data type 0x%02X is not supported; expected 0x08 (unsigned byte) or 0x0D (float)",
                              p[2]);
    }
    a->rank = p[3];
    if (a->rank == 0) return pnetrt_io_fail(err, errlen, path, "IDX header has no dimensions");
    if (a->rank > 8)
        return pnetrt_io_fail(err, errlen, path, "IDX header has %d dimensions; at most 8 are supported", a->rank);
    size_t hdr = 4 + 4 * (size_t)a->rank;
    if (b->len < hdr)
        return pnetrt_io_fail(err, errlen, path, "truncated IDX header: %zu bytes of header but the file has %zu", hdr,
                              b->len);
    uint64_t nbytes = elem;
    for (int i = 0; i < a->rank; i++) {
        a->shape[i] = rd_be32(p + 4 + 4 * i);
        if (!pnetrt_io_mul_u64(nbytes, (uint64_t)a->shape[i], &nbytes))
            return pnetrt_io_fail(err, errlen, path, "IDX shape is too large: its size in bytes overflows");
    }
    char s[128];
    uint64_t avail = b->len - hdr;
    if (avail < nbytes)
        return pnetrt_io_fail(err, errlen, path,
                              "truncated: IDX header says %" PRIu64
                              " bytes of data (shape %s) but the file has %" PRIu64,
                              nbytes, shape_str(a, s, sizeof s), avail);
    if (avail > nbytes)
        return pnetrt_io_fail(err, errlen, path,
                              "trailing data: IDX header says %" PRIu64
                              " bytes of data (shape %s) but the file has %" PRIu64,
                              nbytes, shape_str(a, s, sizeof s), avail);
    a->data = p + hdr;
    return 0;
}

int pnetrt_data_parse_binary(const char *path, const blob *b, int fmt, int role, array *a, char *err,
                             size_t errlen) {
    memset(a, 0, sizeof *a);
    return fmt == FMT_NPY ? pnetrt_data_parse_npy(path, b, role, a, err, errlen) : parse_idx(path, b, a, err, errlen);
}

/* The shape rule: (n, d1, ..., dk) holds n samples of d1 * ... * dk values; the dims need not be the input's. */
int pnetrt_data_check_shape(const char *path, const array *a, int64_t features, bool batched,
                            const pnetrt_data_opts *o, char *err, size_t errlen) {
    char s[128], in[160] = "";
    uint64_t per = 1;
    bool ok = batched ? a->rank >= 1 && pnetrt_data_per_sample(a, &per)
                      : a->rank < 1 || (pnetrt_data_per_sample(a, &per) && pnetrt_io_mul_u64(per, (uint64_t)a->shape[0], &per));
    if (ok && per == (uint64_t)features) return 0;
    if (o && o->input) snprintf(in, sizeof in, " (%s)", o->input);
    if (batched && a->rank < 1)
        return pnetrt_io_fail(err, errlen, path, "holds a %s scalar; expected one sample per row%s",
                              pnetrt_data_type_name(a->type), in);
    return pnetrt_io_fail(err, errlen, path, "expected %" PRId64 " values%s%s, found %s of shape %s", features,
                          batched ? " per sample" : "", in, pnetrt_data_type_name(a->type), shape_str(a, s, sizeof s));
}

/* The scaling rule: uint8 samples of an f32 input become [0, 1], unless no_scale. */
bool pnetrt_data_scales(const array *a, const pnetrt_data_opts *o) {
    return a->type == T_U8 && !(o && (o->no_scale || o->int_input));
}

/* The samples of X: n = shape[0], each `features` values converted to float, scaled by the rule. */
int pnetrt_data_take_x(const char *path, const array *a, int64_t features, const pnetrt_data_opts *o,
                       pnetrt_data *out, char *err, size_t errlen) {
    if (pnetrt_data_check_shape(path, a, features, true, o, err, errlen)) return -1;
    uint64_t per = (uint64_t)features;
    if (a->shape[0] == 0) return pnetrt_io_fail(err, errlen, path, "holds no samples");
    uint64_t count, bytes;
    if (!pnetrt_io_mul_u64((uint64_t)a->shape[0], per, &count) || !pnetrt_io_mul_u64(count, sizeof(float), &bytes) ||
        bytes > SIZE_MAX)
        return pnetrt_io_fail(err, errlen, path, "too many values to hold in memory");
    float *x = malloc((size_t)bytes);
    if (!x) return pnetrt_io_fail(err, errlen, path, "out of memory for %" PRIu64 " values", count);
    bool scale = pnetrt_data_scales(a, o);
    for (size_t i = 0; i < (size_t)count; i++) {
        double v = pnetrt_data_get(a, i);
        if (scale) v /= 255.0;
        if (!(fabs(v) <= FLT_MAX)) {
            free(x);
            return pnetrt_io_fail(err, errlen, path, "record %zu: value %zu (%g) is not a finite float32", i / per,
                                  i % per, v);
        }
        x[i] = (float)v;
    }
    out->n = a->shape[0];
    out->features = features;
    out->x = x;
    out->source.type = pnetrt_data_type_name(a->type);
    out->source.scaled = scale;
    return 0;
}

/* The labels of the n samples: class ids in [0, classes), or target_elems finite floats each. */
int pnetrt_data_take_labels(const char *path, const char *data_path, const array *a, int kind, int64_t classes,
                            int64_t target_elems, pnetrt_data *out, char *err, size_t errlen) {
    char s[128];
    int64_t n = out->n;
    if (a->rank < 1) return pnetrt_io_fail(err, errlen, path, "holds a scalar; expected one label per sample");
    if (a->shape[0] != n)
        return pnetrt_io_fail(err, errlen, path, "holds %" PRId64 " labels but %s holds %" PRId64 " samples",
                              a->shape[0], data_path, n);
    uint64_t per;
    bool per_ok = pnetrt_data_per_sample(a, &per);
    if (kind == PNETRT_LABELS_CLASS) {
        if (a->type != T_U8 && a->type != T_I32 && a->type != T_I64)
            return pnetrt_io_fail(err, errlen, path, "holds %s values; class ids must be int32, int64 or uint8",
                                  pnetrt_data_type_name(a->type));
        if (!per_ok || per != 1)
            return pnetrt_io_fail(err, errlen, path, "class ids have shape %s; expected (%" PRId64 ",)",
                                  shape_str(a, s, sizeof s), n);
        int32_t *labels = malloc((size_t)n * sizeof *labels); /* no overflow: the file holds n elements */
        if (!labels) return pnetrt_io_fail(err, errlen, path, "out of memory");
        for (int64_t i = 0; i < n; i++) {
            int64_t v = pnetrt_data_get_int(a, (size_t)i);
            if (v < 0 || v >= classes) {
                free(labels);
                return pnetrt_io_fail(err, errlen, path,
                                      "record %" PRId64 ": label %" PRId64 " is out of range [0, %" PRId64 ")", i, v,
                                      classes);
            }
            labels[i] = (int32_t)v;
        }
        out->labels = labels;
        return 0;
    }
    if (a->type != T_F32 && a->type != T_F64 && a->type != T_F32BE)
        return pnetrt_io_fail(err, errlen, path, "holds %s values; targets must be float32 or float64",
                              pnetrt_data_type_name(a->type));
    if (!per_ok || per != (uint64_t)target_elems)
        return pnetrt_io_fail(err, errlen, path, "expected %" PRId64 " targets per sample, found shape %s",
                              target_elems, shape_str(a, s, sizeof s));
    size_t count = (size_t)n * (size_t)per; /* no overflow: the file holds this many elements */
    float *t = malloc(count * sizeof *t);
    if (!t) return pnetrt_io_fail(err, errlen, path, "out of memory");
    for (size_t i = 0; i < count; i++) {
        double v = pnetrt_data_get(a, i);
        if (!(fabs(v) <= FLT_MAX)) {
            free(t);
            return pnetrt_io_fail(err, errlen, path, "record %zu: target %zu (%g) is not a finite float32",
                                  i / (size_t)per, i % (size_t)per, v);
        }
        t[i] = (float)v;
    }
    out->targets = t;
    out->target_elems = target_elems;
    return 0;
}
