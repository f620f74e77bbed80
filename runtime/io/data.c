/* Training data loaders: a CSV file or a .npy/IDX pair, each optionally gzip-compressed, into floats plus class
   ids or float targets. Each file is read whole into memory, gunzipped if its first bytes say so, then its format
   is found from its content and it is converted in one pass. */
#define _POSIX_C_SOURCE 200809L
#define ZLIB_CONST
#include "data.h"
#include "fileio.h"
#include "io.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define DATA_MAX_GUNZIP ((uint64_t)4 << 30) /* bound on a decompressed file: a bad file must not eat memory */
#define DATA_LIMIT_WHY "half of physical memory"
#define NPY_MAGIC "\x93NUMPY"

/* ---- whole files ------------------------------------------------------------------------- */

/* A file's bytes; buf[len] is always 0, so text can be scanned with strtod. gz: they were gunzipped. */
typedef struct {
    unsigned char *buf;
    size_t len;
    bool gz;
} blob;

static void blob_free(blob *b) {
    free(b->buf);
    b->buf = NULL;
    b->len = 0;
}

static uint64_t max_bytes_set; /* pnetrt_data_set_max_bytes; 0: the default */

/* The most bytes read from one file: half of physical memory, as the runtime's other buffers (rt.h). */
static uint64_t data_max_bytes(void) {
    if (max_bytes_set) return max_bytes_set;
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    uint64_t half = pages > 0 && psize > 0 ? (uint64_t)pages / 2 * (uint64_t)psize : (uint64_t)1 << 40;
    return half < (uint64_t)SIZE_MAX / 2 ? half : (uint64_t)SIZE_MAX / 2;
}

void pnetrt_data_set_max_bytes(uint64_t n) {
    max_bytes_set = n;
}

/* "4 GiB", "1.5 MiB", "100 bytes" */
static const char *bytes_text(uint64_t n, char *buf, size_t len) {
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
    if (n < 1024) {
        snprintf(buf, len, "%" PRIu64 " bytes", n);
        return buf;
    }
    double v = (double)n / 1024;
    int u = 0;
    while (v >= 1024 && u < 3) {
        v /= 1024;
        u++;
    }
    snprintf(buf, len, v == floor(v) ? "%.0f %s" : "%.1f %s", v, units[u]);
    return buf;
}

/* Replaces the gzip data in b by its decompressed content; concatenated members are read one after another. */
static int gunzip(const char *path, blob *b, char *err, size_t errlen) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) return pnetrt_io_fail(err, errlen, path, "out of memory for zlib");
    uint64_t limit = DATA_MAX_GUNZIP < data_max_bytes() ? DATA_MAX_GUNZIP : data_max_bytes();
    char lim[32], msg[160];
    size_t cap = b->len < limit / 4 ? b->len * 4 : (size_t)limit;
    if (cap < 4096) cap = 4096;
    unsigned char *out = malloc(cap + 1);
    size_t len = 0, pos = 0;
    const char *problem = out ? NULL : "out of memory while decompressing";
    while (!problem) {
        if (len == cap) {
            if (cap >= limit) {
                snprintf(msg, sizeof msg, "gzip data decompresses to more than %s (the limit: 4 GiB, and at most %s)",
                         bytes_text(limit, lim, sizeof lim), DATA_LIMIT_WHY);
                problem = msg;
                break;
            }
            size_t ncap = cap > limit / 2 ? (size_t)limit : cap * 2;
            unsigned char *nb = realloc(out, ncap + 1);
            if (!nb) {
                problem = "out of memory while decompressing";
                break;
            }
            out = nb;
            cap = ncap;
        }
        zs.next_in = b->buf + pos;
        zs.avail_in = b->len - pos < UINT_MAX ? (uInt)(b->len - pos) : UINT_MAX;
        zs.next_out = out + len;
        zs.avail_out = cap - len < UINT_MAX ? (uInt)(cap - len) : UINT_MAX;
        uInt in0 = zs.avail_in, out0 = zs.avail_out;
        int rc = inflate(&zs, Z_NO_FLUSH);
        pos += in0 - zs.avail_in;
        len += out0 - zs.avail_out;
        if (rc == Z_STREAM_END) {
            if (pos == b->len) break;
            if (b->len - pos >= 2 && b->buf[pos] == 0x1f && b->buf[pos + 1] == 0x8b) {
                inflateReset(&zs);
                continue;
            }
            problem = "trailing bytes after the gzip data";
        } else if (rc == Z_DATA_ERROR || rc == Z_NEED_DICT || rc == Z_STREAM_ERROR) {
            pnetrt_io_fail(err, errlen, path, "corrupt gzip data: %s", zs.msg ? zs.msg : "invalid stream");
            inflateEnd(&zs);
            free(out);
            return -1;
        } else if (rc == Z_MEM_ERROR) {
            problem = "out of memory while decompressing";
        } else if (pos == b->len && len < cap) {
            problem = "truncated gzip data: the compressed stream ends early";
        }
    }
    inflateEnd(&zs);
    if (problem) {
        free(out);
        return pnetrt_io_fail(err, errlen, path, "%s", problem);
    }
    out[len] = 0;
    free(b->buf);
    b->buf = out;
    b->len = len;
    return 0;
}

/* Reads path whole, and decompresses it if it starts with the gzip magic 1f 8b. Only a regular file is read (see
   pnetrt_open_regular), and never more than data_max_bytes() of it: the limit is checked as the bytes come. */
static int read_whole(const char *path, blob *out, char *err, size_t errlen) {
    out->buf = NULL;
    out->len = 0;
    out->gz = false;
    uint64_t size, limit = data_max_bytes();
    char lim[32];
    int fd = pnetrt_open_regular(path, &size, err, errlen);
    if (fd < 0) return -1;
    if (size > limit || limit >= (uint64_t)SIZE_MAX) {
        close(fd);
        return pnetrt_io_fail(err, errlen, path, "is larger than %s, the most a data file may hold (%s)",
                              bytes_text(limit, lim, sizeof lim), DATA_LIMIT_WHY);
    }
    size_t cap = size > 0 ? (size_t)size + 1 : 65536; /* a file of size 0 may still hold bytes (/proc) */
    if (cap > limit + 1) cap = (size_t)limit + 1;
    unsigned char *buf = malloc(cap);
    size_t len = 0;
    const char *problem = buf ? NULL : "out of memory";
    int e = 0;
    while (!problem) {
        if (len == cap - 1) { /* a full buffer: grow it only if there is more (the file grew, or had size 0) */
            unsigned char c;
            ssize_t r = read(fd, &c, 1);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) {
                problem = r < 0 ? "read error" : NULL;
                e = errno;
                break;
            }
            if (len >= limit) {
                problem = "too large";
                break;
            }
            size_t ncap = cap - 1 > (limit - 1) / 2 ? (size_t)limit + 1 : cap * 2;
            unsigned char *nb = realloc(buf, ncap);
            if (!nb) {
                problem = "out of memory";
                break;
            }
            buf = nb;
            cap = ncap;
            buf[len++] = c;
        }
        size_t want = cap - 1 - len;
        ssize_t got = read(fd, buf + len, want < ((size_t)1 << 30) ? want : ((size_t)1 << 30));
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            problem = "read error";
            e = errno;
        }
        if (got <= 0) break;
        len += (size_t)got;
    }
    close(fd);
    if (problem) {
        free(buf);
        if (!strcmp(problem, "too large"))
            return pnetrt_io_fail(err, errlen, path, "is larger than %s, the most a data file may hold (%s)",
                                  bytes_text(limit, lim, sizeof lim), DATA_LIMIT_WHY);
        if (e) return pnetrt_io_fail(err, errlen, path, "%s: %s", problem, strerror(e));
        return pnetrt_io_fail(err, errlen, path, "%s", problem);
    }
    buf[len] = 0;
    out->buf = buf;
    out->len = len;
    if (len >= 2 && buf[0] == 0x1f && buf[1] == 0x8b) {
        if (gunzip(path, out, err, errlen)) {
            blob_free(out);
            return -1;
        }
        out->gz = true;
    }
    return 0;
}

enum { FMT_CSV, FMT_NPY, FMT_IDX, FMT_EMPTY, FMT_BINARY };

#define DATA_TEXT_PROBE 4096 /* bytes of a first line looked at to tell text from binary */

/* A control byte: never part of a CSV file's text (tab, CR and LF are). */
static bool is_control(unsigned c) {
    return (c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f;
}

/* Text: the first line (or its first DATA_TEXT_PROBE bytes) holds no control byte and is well-formed UTF-8.
   A bad byte on a later line is left to the CSV parser, which names the line. */
static bool looks_text(const blob *b) {
    size_t n = b->len < DATA_TEXT_PROBE ? b->len : DATA_TEXT_PROBE;
    const unsigned char *p = b->buf;
    for (size_t i = 0; i < n && p[i] != '\n';) {
        unsigned c = p[i];
        if (c < 0x80) {
            if (is_control(c)) return false;
            i++;
            continue;
        }
        size_t more = c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : 0;
        if (!more) return false; /* a continuation byte, an overlong lead (c0, c1) or beyond U+10FFFF */
        for (size_t k = 1; k <= more; k++) {
            if (i + k >= n) return true; /* cut off by the probe's end */
            if ((p[i + k] & 0xc0) != 0x80) return false;
        }
        i += more + 1;
    }
    return true;
}

/* format := npy ("\x93NUMPY", or a cut-off prefix of it) | idx (00 00 ...) | empty | text (CSV) | binary */
static int detect_format(const blob *b) {
    if (b->len == 0) return FMT_EMPTY;
    size_t m = b->len < 6 ? b->len : 6;
    if (!memcmp(b->buf, NPY_MAGIC, m)) return FMT_NPY; /* a cut-off magic is a truncated .npy */
    if (b->len >= 2 && b->buf[0] == 0 && b->buf[1] == 0) return FMT_IDX;
    return looks_text(b) ? FMT_CSV : FMT_BINARY;
}

/* The error of a file whose format does not fit its role: an empty file, binary bytes of no known format, or (for
   a labels file) text. */
static int wrong_format(const char *path, const blob *b, int fmt, bool labels, char *err, size_t errlen) {
    if (fmt == FMT_EMPTY) return pnetrt_io_fail(err, errlen, path, "is empty%s", b->gz ? " once decompressed" : "");
    if (fmt == FMT_CSV)
        return pnetrt_io_fail(err, errlen, path,
                              "is not a .npy or IDX file (it is text; a CSV data file holds the labels in its last "
                              "column(s))");
    char bytes[16];
    size_t n = b->len < 4 ? b->len : 4, k = 0;
    for (size_t i = 0; i < n; i++)
        k += (size_t)snprintf(bytes + k, sizeof bytes - k, "%s%02x", i ? " " : "", b->buf[i]);
    return pnetrt_io_fail(err, errlen, path, "is not a .npy%s file (%s starts with byte%s %s)",
                          labels ? " or IDX" : ", IDX or CSV", b->gz ? "its decompressed content" : "it",
                          n == 1 ? "" : "s", bytes);
}

/* ---- .npy and IDX arrays ----------------------------------------------------------------- */

typedef enum { T_U8, T_I32, T_I64, T_F32, T_F64, T_F32BE } elem_type;

/* A parsed array, still in its file's encoding; data points into the file's blob. */
typedef struct {
    elem_type type;
    int rank;
    int64_t shape[8];
    const unsigned char *data;
} array;

static const char *type_name(elem_type t) {
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
static double get(const array *a, size_t i) {
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
static int64_t get_int(const array *a, size_t i) {
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
static bool per_sample(const array *a, uint64_t *out) {
    *out = 1;
    for (int i = 1; i < a->rank; i++)
        if (!pnetrt_io_mul_u64(*out, (uint64_t)a->shape[i], out)) return false;
    return true;
}

/* What a parsed array is read as: the samples, class ids or targets; the dtypes it may hold differ. */
enum { ROLE_X, ROLE_CLASS, ROLE_TARGET };

static int parse_npy(const char *path, const blob *b, int role, array *a, char *err, size_t errlen) {
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

static int parse_binary(const char *path, const blob *b, int fmt, int role, array *a, char *err, size_t errlen) {
    memset(a, 0, sizeof *a);
    return fmt == FMT_NPY ? parse_npy(path, b, role, a, err, errlen) : parse_idx(path, b, a, err, errlen);
}

/* The samples of X: n = shape[0], each `features` values converted to float (IDX bytes divided by 255). */
static int take_x(const char *path, const array *a, int fmt, int64_t features, pnetrt_data *out, char *err,
                  size_t errlen) {
    char s[128];
    uint64_t per;
    if (a->rank < 1) return pnetrt_io_fail(err, errlen, path, "holds a scalar; expected one sample per row");
    if (!per_sample(a, &per) || per != (uint64_t)features)
        return pnetrt_io_fail(err, errlen, path, "expected %" PRId64 " values per sample, found shape %s", features,
                              shape_str(a, s, sizeof s));
    if (a->shape[0] == 0) return pnetrt_io_fail(err, errlen, path, "holds no samples");
    uint64_t count, bytes;
    if (!pnetrt_io_mul_u64((uint64_t)a->shape[0], per, &count) || !pnetrt_io_mul_u64(count, sizeof(float), &bytes) ||
        bytes > SIZE_MAX)
        return pnetrt_io_fail(err, errlen, path, "too many values to hold in memory");
    float *x = malloc((size_t)bytes);
    if (!x) return pnetrt_io_fail(err, errlen, path, "out of memory for %" PRIu64 " values", count);
    bool scale = fmt == FMT_IDX && a->type == T_U8;
    for (size_t i = 0; i < (size_t)count; i++) {
        double v = get(a, i);
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
    return 0;
}

/* The labels of the n samples: class ids in [0, classes), or target_elems finite floats each. */
static int take_labels(const char *path, const char *data_path, const array *a, int kind, int64_t classes,
                       int64_t target_elems, pnetrt_data *out, char *err, size_t errlen) {
    char s[128];
    int64_t n = out->n;
    if (a->rank < 1) return pnetrt_io_fail(err, errlen, path, "holds a scalar; expected one label per sample");
    if (a->shape[0] != n)
        return pnetrt_io_fail(err, errlen, path, "holds %" PRId64 " labels but %s holds %" PRId64 " samples",
                              a->shape[0], data_path, n);
    uint64_t per;
    bool per_ok = per_sample(a, &per);
    if (kind == PNETRT_LABELS_CLASS) {
        if (a->type != T_U8 && a->type != T_I32 && a->type != T_I64)
            return pnetrt_io_fail(err, errlen, path, "holds %s values; class ids must be int32, int64 or uint8",
                                  type_name(a->type));
        if (!per_ok || per != 1)
            return pnetrt_io_fail(err, errlen, path, "class ids have shape %s; expected (%" PRId64 ",)",
                                  shape_str(a, s, sizeof s), n);
        int32_t *labels = malloc((size_t)n * sizeof *labels); /* no overflow: the file holds n elements */
        if (!labels) return pnetrt_io_fail(err, errlen, path, "out of memory");
        for (int64_t i = 0; i < n; i++) {
            int64_t v = get_int(a, (size_t)i);
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
                              type_name(a->type));
    if (!per_ok || per != (uint64_t)target_elems)
        return pnetrt_io_fail(err, errlen, path, "expected %" PRId64 " targets per sample, found shape %s",
                              target_elems, shape_str(a, s, sizeof s));
    size_t count = (size_t)n * (size_t)per; /* no overflow: the file holds this many elements */
    float *t = malloc(count * sizeof *t);
    if (!t) return pnetrt_io_fail(err, errlen, path, "out of memory");
    for (size_t i = 0; i < count; i++) {
        double v = get(a, i);
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

/* ---- CSV --------------------------------------------------------------------------------- */

/* Writes "path:line: message" to err, flattened to one line, and returns -1. */
static int csv_fail(char *err, size_t errlen, const char *path, int64_t line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int csv_fail(char *err, size_t errlen, const char *path, int64_t line, const char *fmt, ...) {
    char where[4200];
    snprintf(where, sizeof where, "%s:%" PRId64, path, line);
    va_list ap;
    va_start(ap, fmt);
    pnetrt_io_vfail(err, errlen, where, fmt, ap);
    va_end(ap);
    return -1;
}

static bool is_blank(const char *s, const char *e) {
    for (; s < e; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r') return false;
    return true;
}

/* The line starting at s: its end without "\r\n" or "\n" in *le, and the start of the next line returned. */
static const char *next_line(const char *s, const char *end, const char **le) {
    const char *nl = memchr(s, '\n', (size_t)(end - s));
    const char *e = nl ? nl : end;
    *le = e > s && e[-1] == '\r' ? e - 1 : e;
    return nl ? nl + 1 : end;
}

/* strtod skips leading white space ("\r", "\v", ...) that a field must not hold. */
static bool starts_number(const char *s) {
    return (*s >= '0' && *s <= '9') || *s == '-' || *s == '+' || *s == '.' ||
           ((*s | 0x20) >= 'a' && (*s | 0x20) <= 'z');
}

/* decimal := [+-]? (digit+ ('.' digit*)? | '.' digit+) ([eE] [+-]? digit+)?
   What numpy.savetxt writes; strtod's other forms (hexadecimal "0x10", "0x1p3") are not CSV numbers. */
static bool is_decimal(const char *s, const char *e) {
    if (s < e && (*s == '+' || *s == '-')) s++;
    const char *d = s;
    while (s < e && *s >= '0' && *s <= '9') s++;
    size_t digits = (size_t)(s - d);
    if (s < e && *s == '.') {
        d = ++s;
        while (s < e && *s >= '0' && *s <= '9') s++;
        digits += (size_t)(s - d);
    }
    if (!digits) return false;
    if (s < e && (*s == 'e' || *s == 'E')) {
        s++;
        if (s < e && (*s == '+' || *s == '-')) s++;
        d = s;
        while (s < e && *s >= '0' && *s <= '9') s++;
        if (s == d) return false;
    }
    return s == e;
}

/* Parses the field [s, e) as a finite float32 value written in decimal; *v gets it. Returns a problem, or NULL. */
static const char *csv_number(const char *s, const char *e, double *v) {
    char *stop;
    *v = strtod(s, &stop); /* stops at the delimiter at e at the latest: nothing continues a number there */
    if (stop != e || !starts_number(s)) return "is not a number";
    if (!(fabs(*v) <= FLT_MAX)) return "is not a finite float32 value";
    if (!is_decimal(s, e)) return "is not a decimal number";
    return NULL;
}

/* row := field (',' field)*    field := [ \t]* number [ \t]*    with `features` values then the label(s) */
static int load_csv(const char *path, const blob *b, int64_t features, int kind, int64_t classes, int64_t target_elems,
                    pnetrt_data *out, char *err, size_t errlen) {
    const char *start = (const char *)b->buf, *end = start + b->len, *le;
    if (b->len >= 3 && !memcmp(start, "\xEF\xBB\xBF", 3)) start += 3;
    int64_t label_cols = kind == PNETRT_LABELS_CLASS ? 1 : target_elems;
    if (features > INT64_MAX - label_cols) return pnetrt_io_fail(err, errlen, path, "too many columns");
    int64_t cols = features + label_cols;

    uint64_t rows = 0;
    for (const char *p = start; p < end;) {
        const char *ls = p;
        p = next_line(p, end, &le);
        if (!is_blank(ls, le)) rows++;
    }
    if (rows == 0) return pnetrt_io_fail(err, errlen, path, "empty file: no data rows");
    uint64_t nx, nt, bx, bt, bl;
    if (!pnetrt_io_mul_u64(rows, (uint64_t)features, &nx) || !pnetrt_io_mul_u64(nx, sizeof(float), &bx) ||
        !pnetrt_io_mul_u64(rows, (uint64_t)label_cols, &nt) || !pnetrt_io_mul_u64(nt, sizeof(float), &bt) ||
        !pnetrt_io_mul_u64(rows, sizeof(int64_t), &bl) || bx > SIZE_MAX || bt > SIZE_MAX || bl > SIZE_MAX)
        return pnetrt_io_fail(err, errlen, path, "too many values to hold in memory");
    out->x = malloc((size_t)bx);
    out->line = malloc((size_t)bl);
    if (kind == PNETRT_LABELS_CLASS)
        out->labels = malloc((size_t)rows * sizeof *out->labels);
    else
        out->targets = malloc((size_t)bt);
    if (!out->x || !out->line || (!out->labels && !out->targets))
        return pnetrt_io_fail(err, errlen, path, "out of memory");
    out->n = (int64_t)rows;
    out->features = features;
    out->target_elems = kind == PNETRT_LABELS_CLASS ? 0 : target_elems;

    int64_t line = 0, row = 0;
    for (const char *p = start; p < end;) {
        const char *ls = p;
        p = next_line(p, end, &le);
        line++;
        for (const char *q = ls; q < le; q++)
            if (is_control((unsigned char)*q))
                return csv_fail(err, errlen, path, line,
                                "byte 0x%02x at position %td is a control character; a CSV file is plain text",
                                (unsigned char)*q, q - ls + 1);
        if (is_blank(ls, le)) continue;
        out->line[row] = line;
        int64_t found = 1;
        for (const char *q = ls; q < le; q++)
            found += *q == ',';
        if (found != cols)
            return csv_fail(err, errlen, path, line,
                            "expected %" PRId64 " columns (%" PRId64 " features + %" PRId64 " %s), found %" PRId64,
                            cols, features, label_cols,
                            kind == PNETRT_LABELS_CLASS ? "label"
                            : label_cols == 1           ? "target"
                                                        : "targets",
                            found);
        const char *fs = ls;
        for (int64_t c = 0; c < cols; c++) {
            const char *fe = memchr(fs, ',', (size_t)(le - fs));
            if (!fe) fe = le;
            const char *next = fe + 1, *ts = fs;
            while (ts < fe && (*ts == ' ' || *ts == '\t'))
                ts++;
            while (fe > ts && (fe[-1] == ' ' || fe[-1] == '\t'))
                fe--;
            int flen = fe - ts > 32 ? 32 : (int)(fe - ts); /* how much of the field a message quotes */
            const char *more = fe - ts > 32 ? "..." : "";
            if (flen == 0) return csv_fail(err, errlen, path, line, "field %" PRId64 " is empty", c + 1);
            double v;
            if (c < features || kind == PNETRT_LABELS_TARGET) {
                const char *problem = csv_number(ts, fe, &v);
                if (problem)
                    return csv_fail(
                        err, errlen, path, line, "field %" PRId64 " '%.*s%s' %s%s", c + 1, flen, ts, more, problem,
                        row == 0 && c == 0 && !strcmp(problem, "is not a number") ? " (a CSV file has no header row)"
                                                                                  : "");
                if (c < features)
                    out->x[row * features + c] = (float)v;
                else
                    out->targets[row * target_elems + (c - features)] = (float)v;
            } else {
                char *stop;
                v = strtod(ts, &stop); /* any finite integer written in decimal ("3", "3.0", "3e0"); then its range */
                if (stop != fe || !starts_number(ts) || !isfinite(v) || v != floor(v))
                    return csv_fail(err, errlen, path, line, "label '%.*s%s' is not an integer", flen, ts, more);
                if (!is_decimal(ts, fe))
                    return csv_fail(err, errlen, path, line, "label '%.*s%s' is not a decimal integer", flen, ts,
                                    more);
                if (v < 0 || v >= (double)classes)
                    return csv_fail(err, errlen, path, line, "label '%.*s%s' is out of range [0, %" PRId64 ")", flen,
                                    ts, more, classes);
                out->labels[row] = (int32_t)v;
            }
            fs = next;
        }
        row++;
    }
    return 0;
}

/* ---- entry points ------------------------------------------------------------------------ */

static int load(const char *data_path, const char *labels_path, int64_t features, int kind, int64_t classes,
                int64_t target_elems, pnetrt_data *out, char *err, size_t errlen) {
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
    if (read_whole(data_path, &b, err, errlen)) return -1;
    int fmt = detect_format(&b);
    if (fmt == FMT_EMPTY || fmt == FMT_BINARY) {
        wrong_format(data_path, &b, fmt, false, err, errlen);
        blob_free(&b);
        return -1;
    }
    if (fmt == FMT_CSV) {
        int rc = labels_path ? pnetrt_io_fail(err, errlen, data_path,
                                              "is CSV, whose last column(s) hold the labels; pass no labels file")
                             : load_csv(data_path, &b, features, kind, classes, target_elems, out, err, errlen);
        blob_free(&b);
        return rc;
    }
    const char *what = fmt == FMT_NPY ? "a .npy" : "an IDX";
    array a;
    if (!labels_path) {
        blob_free(&b);
        return pnetrt_io_fail(err, errlen, data_path, "is %s file, which needs a labels file", what);
    }
    int rc = parse_binary(data_path, &b, fmt, ROLE_X, &a, err, errlen) ||
             take_x(data_path, &a, fmt, features, out, err, errlen);
    blob_free(&b);
    if (rc) return -1;

    if (read_whole(labels_path, &b, err, errlen)) return -1;
    fmt = detect_format(&b);
    if (fmt != FMT_NPY && fmt != FMT_IDX)
        rc = wrong_format(labels_path, &b, fmt, true, err, errlen);
    else
        rc = parse_binary(labels_path, &b, fmt, kind == PNETRT_LABELS_CLASS ? ROLE_CLASS : ROLE_TARGET, &a, err,
                          errlen) ||
             take_labels(labels_path, data_path, &a, kind, classes, target_elems, out, err, errlen);
    blob_free(&b);
    return rc ? -1 : 0;
}

int pnetrt_data_load(const char *data_path, const char *labels_path, int64_t features, int kind, int64_t classes,
                     int64_t target_elems, pnetrt_data *out, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (!out) return pnetrt_io_fail(err, errlen, data_path ? data_path : "(null)", "no output struct");
    memset(out, 0, sizeof *out);
    if (!data_path) return pnetrt_io_fail(err, errlen, "(null)", "no data file");
    int rc = load(data_path, labels_path, features, kind, classes, target_elems, out, err, errlen);
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

int pnetrt_data_read_npy(const char *path, int dtype, pnetrt_array *out, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    memset(out, 0, sizeof *out);
    blob b;
    if (read_whole(path, &b, err, errlen)) return -1;
    array a;
    int rc = parse_npy(path, &b, ROLE_X, &a, err, errlen);
    if (!rc && a.rank > PNETRT_MAX_RANK) rc = pnetrt_io_fail(err, errlen, path, "has %d dimensions; at most %d are supported", a.rank, PNETRT_MAX_RANK);
    uint64_t count = 1, per = 1;
    for (int i = 0; !rc && i < a.rank; i++)
        if (!pnetrt_io_mul_u64(count, (uint64_t)a.shape[i], &count) || count > SIZE_MAX / 4)
            rc = pnetrt_io_fail(err, errlen, path, "too many values to hold in memory");
    if (!rc && a.rank > 0 && !per_sample(&a, &per)) rc = pnetrt_io_fail(err, errlen, path, "too many values to hold in memory");
    void *data = rc ? NULL : malloc((size_t)count * 4 + 4);
    if (!rc && !data) rc = pnetrt_io_fail(err, errlen, path, "out of memory for %" PRIu64 " values", count);
    bool ints = a.type == T_U8 || a.type == T_I32 || a.type == T_I64;
    for (size_t i = 0; !rc && i < (size_t)count; i++) {
        size_t rec = per ? i / per : 0;
        if (dtype == PNETRT_I32 && ints) {
            int64_t v = get_int(&a, i);
            if (v < INT32_MIN || v > INT32_MAX)
                rc = pnetrt_io_fail(err, errlen, path, "record %zu: value %" PRId64 " is outside the int32 range", rec, v);
            ((int32_t *)data)[i] = (int32_t)v;
        } else if (dtype == PNETRT_I32) {
            double v = get(&a, i);
            if (v != floor(v) || !(fabs(v) <= 2147483647.0))
                rc = pnetrt_io_fail(err, errlen, path, "record %zu: value %g is not an int32 integer", rec, v);
            else ((int32_t *)data)[i] = (int32_t)v;
        } else {
            double v = get(&a, i);
            if (fabs(v) > FLT_MAX && isfinite(v))
                rc = pnetrt_io_fail(err, errlen, path, "record %zu: value %g is outside the float32 range", rec, v);
            ((float *)data)[i] = (float)v;
        }
    }
    blob_free(&b);
    if (rc) {
        free(data);
        return -1;
    }
    out->dtype = dtype == PNETRT_I32 ? PNETRT_I32 : PNETRT_F32;
    out->rank = a.rank;
    for (int i = 0; i < a.rank; i++) out->shape[i] = a.shape[i];
    out->data = data;
    out->nbytes = (size_t)count * 4;
    return 0;
}
