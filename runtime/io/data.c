/* Training data loaders: a CSV file or a .npy/IDX pair, each optionally gzip-compressed, into floats plus class
   ids or float targets. Each file is read whole into memory, gunzipped if its first bytes say so, then its format
   is found from its content and it is converted in one pass.
   The steps are in data_file.c (files and formats), data_array.c (.npy and IDX) and data_csv.c; this file
   holds the entry points. */
#define _POSIX_C_SOURCE 200809L
#include "data.h"
#include "data_internal.h"
#include "fileio.h"
#include "io.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- entry points ------------------------------------------------------------------------ */

static int load(const char *data_path, const char *labels_path, int64_t features, int kind, int64_t classes,
                int64_t target_elems, const pnetrt_data_opts *o, pnetrt_data *out, char *err, size_t errlen) {
    if (features < 1)
        return pnetrt_io_fail(err, errlen, data_path, "features must be at least 1, not %" PRId64, features);
    if (kind == PNETRT_LABELS_CLASS) {
        if (classes < 1 || classes > INT32_MAX)
            return pnetrt_io_fail(err, errlen, data_path, "classes must lie in [1, %d], not %" PRId64, INT32_MAX,
                                  classes);
    } else if (kind == PNETRT_LABELS_TARGET) {
        if (target_elems < 1)
            return pnetrt_io_fail(err, errlen, data_path, "target_elems must be at least 1, not %" PRId64,
                                  target_elems);
    } else {
        return pnetrt_io_fail(err, errlen, data_path, "unknown label kind %d", kind);
    }

    blob b;
    if (pnetrt_data_read_whole(data_path, &b, err, errlen)) return -1;
    int fmt = pnetrt_data_detect_format(&b);
    if (fmt == FMT_EMPTY || fmt == FMT_BINARY) {
        pnetrt_data_wrong_format(data_path, &b, fmt, false, err, errlen);
        pnetrt_data_blob_free(&b);
        return -1;
    }
    if (fmt == FMT_CSV) {
        int rc = labels_path ? pnetrt_io_fail(err, errlen, data_path,
                                              "is CSV, whose last column(s) hold the labels; pass no labels file")
                             : pnetrt_data_load_csv(data_path, &b, features, kind, classes, target_elems, o, out,
                                                    err, errlen);
        pnetrt_data_blob_free(&b);
        return rc;
    }
    const char *what = fmt == FMT_NPY ? "a .npy" : "an IDX";
    array a;
    if (o && o->label_column) {
        pnetrt_data_blob_free(&b);
        return pnetrt_io_fail(err, errlen, data_path, "is %s file, whose labels come from a labels file; a label "
                              "column is chosen only in CSV data", what);
    }
    if (!labels_path) {
        pnetrt_data_blob_free(&b);
        return pnetrt_io_fail(err, errlen, data_path, "is %s file, which needs a labels file", what);
    }
    int rc = pnetrt_data_parse_binary(data_path, &b, fmt, ROLE_X, &a, err, errlen) ||
             pnetrt_data_take_x(data_path, &a, features, o, out, err, errlen);
    pnetrt_data_blob_free(&b);
    if (rc) return -1;

    if (pnetrt_data_read_whole(labels_path, &b, err, errlen)) return -1;
    fmt = pnetrt_data_detect_format(&b);
    if (fmt != FMT_NPY && fmt != FMT_IDX)
        rc = pnetrt_data_wrong_format(labels_path, &b, fmt, true, err, errlen);
    else
        rc = pnetrt_data_parse_binary(labels_path, &b, fmt, kind == PNETRT_LABELS_CLASS ? ROLE_CLASS : ROLE_TARGET, &a,
                                      err, errlen) ||
             pnetrt_data_take_labels(labels_path, data_path, &a, kind, classes, target_elems, out, err, errlen);
    pnetrt_data_blob_free(&b);
    return rc ? -1 : 0;
}

int pnetrt_data_load(const char *data_path, const char *labels_path, int64_t features, int kind, int64_t classes,
                     int64_t target_elems, pnetrt_data *out, char *err, size_t errlen) {
    return pnetrt_data_load_opts(data_path, labels_path, features, kind, classes, target_elems, NULL, out, err, errlen);
}

int pnetrt_data_load_opts(const char *data_path, const char *labels_path, int64_t features, int kind,
                          int64_t classes, int64_t target_elems, const pnetrt_data_opts *opts, pnetrt_data *out,
                          char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (!out) return pnetrt_io_fail(err, errlen, data_path ? data_path : "(null)", "no output struct");
    memset(out, 0, sizeof *out);
    if (!data_path) return pnetrt_io_fail(err, errlen, "(null)", "no data file");
    int rc = load(data_path, labels_path, features, kind, classes, target_elems, opts, out, err, errlen);
    if (rc) pnetrt_data_free(out);
    return rc;
}

void pnetrt_data_free(pnetrt_data *d) {
    if (!d) return;
    free(d->x);
    free(d->labels);
    free(d->targets);
    free(d->line);
    memset(d, 0, sizeof *d);
}

const char *pnetrt_data_where(const pnetrt_data *d, const char *path, int64_t i, char *buf, size_t len) {
    if (!buf || !len) return "";
    if (d && d->line && i >= 0 && i < d->n)
        snprintf(buf, len, "%s:%" PRId64, path, d->line[i]);
    else
        snprintf(buf, len, "%s: record %" PRId64, path, i);
    return buf;
}

int pnetrt_data_read_npy(const char *path, int dtype, int64_t features, bool batched, const pnetrt_data_opts *opts,
                         pnetrt_array *out, pnetrt_data_source *source, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    memset(out, 0, sizeof *out);
    if (source) memset(source, 0, sizeof *source);
    blob b;
    if (pnetrt_data_read_whole(path, &b, err, errlen)) return -1;
    pnetrt_data_opts o = {0};
    if (opts) o = *opts;
    o.int_input = dtype == PNETRT_I32;
    array a;
    int rc = pnetrt_data_parse_npy(path, &b, ROLE_X, &a, err, errlen);
    if (!rc && a.rank > PNETRT_MAX_RANK) rc = pnetrt_io_fail(err, errlen, path, "has %d dimensions; at most %d are supported", a.rank, PNETRT_MAX_RANK);
    if (!rc) rc = pnetrt_data_check_shape(path, &a, features, batched, &o, err, errlen);
    uint64_t count = 1, per = 1;
    for (int i = 0; !rc && i < a.rank; i++)
        if (!pnetrt_io_mul_u64(count, (uint64_t)a.shape[i], &count) || count > SIZE_MAX / 4)
            rc = pnetrt_io_fail(err, errlen, path, "too many values to hold in memory");
    if (!rc && a.rank > 0 && !pnetrt_data_per_sample(&a, &per)) rc = pnetrt_io_fail(err, errlen, path, "too many values to hold in memory");
    void *data = rc ? NULL : malloc((size_t)count * 4 + 4);
    if (!rc && !data) rc = pnetrt_io_fail(err, errlen, path, "out of memory for %" PRIu64 " values", count);
    bool ints = a.type == T_U8 || a.type == T_I32 || a.type == T_I64, scale = !rc && pnetrt_data_scales(&a, &o);
    for (size_t i = 0; !rc && i < (size_t)count; i++) {
        size_t rec = per ? i / per : 0;
        if (dtype == PNETRT_I32 && ints) {
            int64_t v = pnetrt_data_get_int(&a, i);
            if (v < INT32_MIN || v > INT32_MAX)
                rc = pnetrt_io_fail(err, errlen, path, "record %zu: value %" PRId64 " is outside the int32 range", rec, v);
            ((int32_t *)data)[i] = (int32_t)v;
        } else if (dtype == PNETRT_I32) {
            double v = pnetrt_data_get(&a, i);
            if (v != floor(v) || !(fabs(v) <= 2147483647.0))
                rc = pnetrt_io_fail(err, errlen, path, "record %zu: value %g is not an int32 integer", rec, v);
            else ((int32_t *)data)[i] = (int32_t)v;
        } else {
            double v = pnetrt_data_get(&a, i);
            if (scale) v /= 255.0;
            if (fabs(v) > FLT_MAX && isfinite(v))
                rc = pnetrt_io_fail(err, errlen, path, "record %zu: value %g is outside the float32 range", rec, v);
            ((float *)data)[i] = (float)v;
        }
    }
    pnetrt_data_blob_free(&b);
    if (rc) {
        free(data);
        return -1;
    }
    out->dtype = dtype == PNETRT_I32 ? PNETRT_I32 : PNETRT_F32;
    out->rank = a.rank;
    for (int i = 0; i < a.rank; i++) out->shape[i] = a.shape[i];
    out->data = data;
    out->nbytes = (size_t)count * 4;
    if (source) {
        source->type = pnetrt_data_type_name(a.type);
        source->scaled = scale;
    }
    return 0;
}
