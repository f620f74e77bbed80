/* NumPy .npy reader (format 1.0/2.0/3.0) and atomic writer (format 1.0) for float32 and int32 arrays, and an
   in-memory parser of any numeric dtype for the data loaders. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "io.h"
#include "data.h"
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "libpnetrt reads and writes little-endian data in place; a big-endian host needs byte swapping here"
#endif

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_MAX_HEADER (1u << 20) /* numpy itself refuses headers over 10 000 bytes by default */

/* ---- header dict -------------------------------------------------------------------------- */

/* A cursor over the header text; pos is reported in messages so a corrupt header can be found. */
typedef struct {
    const char *s;
    size_t len, pos;
    const char *path;
    char *err;
    size_t errlen;
} dict_parser;

typedef struct {
    char descr[16];
    bool fortran_order;
    int rank;
    int64_t shape[PNETRT_MAX_RANK];
} npy_header;

static int dict_fail(dict_parser *p, const char *what) {
    return pnetrt_io_fail(p->err, p->errlen, p->path, "corrupt header: %s at byte %zu of the header dict", what, p->pos);
}

static void skip_ws(dict_parser *p) {
    while (p->pos < p->len && strchr(" \t\r\n", p->s[p->pos]) && p->s[p->pos])
        p->pos++;
}

static bool peek(dict_parser *p, char c) {
    skip_ws(p);
    return p->pos < p->len && p->s[p->pos] == c;
}

static bool eat(dict_parser *p, char c) {
    if (!peek(p, c)) return false;
    p->pos++;
    return true;
}

/* string := '...' | "..."   (no escapes: no valid key or descr needs one) */
static int parse_string(dict_parser *p, char *out, size_t outlen) {
    skip_ws(p);
    if (p->pos >= p->len || (p->s[p->pos] != '\'' && p->s[p->pos] != '"')) return dict_fail(p, "expected a string");
    char q = p->s[p->pos++];
    size_t start = p->pos;
    while (p->pos < p->len && p->s[p->pos] != q) {
        unsigned char ch = (unsigned char)p->s[p->pos];
        if (ch == '\\' || ch < 0x20 || ch == 0x7f) /* a NUL would cut the key or dtype short */
            return dict_fail(p, "unsupported character in string");
        p->pos++;
    }
    if (p->pos >= p->len) return dict_fail(p, "unterminated string");
    size_t n = p->pos - start;
    p->pos++;
    if (n >= outlen) return dict_fail(p, "string too long");
    memcpy(out, p->s + start, n);
    out[n] = '\0';
    return 0;
}

/* bool := 'True' | 'False' */
static int parse_bool(dict_parser *p, bool *out) {
    skip_ws(p);
    const char *s = p->s + p->pos;
    size_t left = p->len - p->pos;
    if (left >= 4 && !memcmp(s, "True", 4)) {
        *out = true;
        p->pos += 4;
    } else if (left >= 5 && !memcmp(s, "False", 5)) {
        *out = false;
        p->pos += 5;
    } else {
        return dict_fail(p, "expected True or False");
    }
    if (p->pos < p->len && (p->s[p->pos] == '_' || ((p->s[p->pos] | 0x20) >= 'a' && (p->s[p->pos] | 0x20) <= 'z')))
        return dict_fail(p, "expected True or False");
    return 0;
}

/* shape := '(' ')' | '(' int ',' ')' | '(' int (',' int)+ ','? ')'    int := digit+ 'L'? */
static int parse_shape(dict_parser *p, npy_header *h) {
    if (!eat(p, '(')) return dict_fail(p, "expected '(' to start the shape tuple");
    h->rank = 0;
    bool comma = false;
    while (!peek(p, ')')) {
        if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9')
            return dict_fail(p, "expected a non-negative integer in the shape");
        uint64_t v = 0;
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
            unsigned d = (unsigned)(p->s[p->pos] - '0');
            if (v > ((uint64_t)INT64_MAX - d) / 10) return dict_fail(p, "shape dimension too large");
            v = v * 10 + d;
            p->pos++;
        }
        if (p->pos < p->len && p->s[p->pos] == 'L') p->pos++; /* written by numpy under Python 2 */
        if (h->rank == PNETRT_MAX_RANK)
            return pnetrt_io_fail(p->err, p->errlen, p->path, "shape has more than %d dimensions", PNETRT_MAX_RANK);
        h->shape[h->rank++] = (int64_t)v;
        comma = eat(p, ',');
        if (!comma && !peek(p, ')')) return dict_fail(p, "expected ',' or ')' in the shape");
    }
    p->pos++;
    if (h->rank == 1 && !comma) return dict_fail(p, "shape '(n)' is not a tuple; expected '(n,)'");
    return 0;
}

/* dict := '{' (key ':' value (',' key ':' value)* ','?)? '}'   with exactly the keys descr, fortran_order, shape */
static int parse_dict(dict_parser *p, npy_header *h) {
    bool seen_descr = false, seen_fortran = false, seen_shape = false;
    if (!eat(p, '{')) return dict_fail(p, "expected '{'");
    while (!peek(p, '}')) {
        char key[32];
        skip_ws(p);
        size_t keypos = p->pos;
        if (parse_string(p, key, sizeof key)) return -1;
        if (!eat(p, ':')) return dict_fail(p, "expected ':' after a key");
        bool *seen;
        int rc;
        if (!strcmp(key, "descr")) {
            seen = &seen_descr;
            rc = parse_string(p, h->descr, sizeof h->descr);
        } else if (!strcmp(key, "fortran_order")) {
            seen = &seen_fortran;
            rc = parse_bool(p, &h->fortran_order);
        } else if (!strcmp(key, "shape")) {
            seen = &seen_shape;
            rc = parse_shape(p, h);
        } else {
            p->pos = keypos;
            return dict_fail(p, "unexpected key");
        }
        if (rc) return rc;
        if (*seen) {
            p->pos = keypos;
            return dict_fail(p, "duplicate key");
        }
        *seen = true;
        if (!eat(p, ',') && !peek(p, '}')) return dict_fail(p, "expected ',' or '}'");
    }
    p->pos++;
    skip_ws(p);
    if (p->pos != p->len) return dict_fail(p, "unexpected text after the dict");
    if (!seen_descr || !seen_fortran || !seen_shape)
        return pnetrt_io_fail(p->err, p->errlen, p->path, "corrupt header: dict lacks '%s'",
                    !seen_descr     ? "descr"
                    : !seen_fortran ? "fortran_order"
                                    : "shape");
    return 0;
}

/* ---- reading ------------------------------------------------------------------------------ */

static uint32_t le16(const unsigned char *b) {
    return (uint32_t)b[0] | (uint32_t)b[1] << 8;
}
static uint32_t le32(const unsigned char *b) {
    return le16(b) | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* Reads exactly n bytes; false on a short read. */
static bool read_full(FILE *f, void *buf, size_t n) {
    return fread(buf, 1, n, f) == n;
}

/* preamble := "\x93NUMPY" major minor hlen   (hlen: 2 bytes in 1.0, 4 in 2.0 and 3.0, little-endian)
   b holds the first `have` bytes of a file of `size` bytes (have >= min(size, 12)). The one check of a .npy
   preamble, for the file reader and the in-memory parser; the file reader (cut_off_magic) calls a cut-off magic
   a truncated file, the data loaders a file that is not .npy. */
static int npy_preamble(const unsigned char *b, size_t have, uint64_t size, bool cut_off_magic, const char *path,
                        size_t *prelen, uint64_t *hlen, char *err, size_t errlen) {
    if (have < NPY_MAGIC_LEN || memcmp(b, NPY_MAGIC, NPY_MAGIC_LEN)) {
        /* a prefix of the magic is a cut-off .npy file, anything else is another kind of file */
        if (cut_off_magic && have < NPY_MAGIC_LEN && !memcmp(b, NPY_MAGIC, have) && have > 0)
            return pnetrt_io_fail(err, errlen, path, "truncated header: the file has only %zu bytes", have);
        return pnetrt_io_fail(err, errlen, path, "not a .npy file (bad magic)");
    }
    if (have < 8) return pnetrt_io_fail(err, errlen, path, "truncated header: the file has only %zu bytes", have);
    unsigned major = b[6], minor = b[7];
    if (major < 1 || major > 3 || minor != 0)
        return pnetrt_io_fail(err, errlen, path, "unsupported .npy format version %u.%u; expected 1.0, 2.0 or 3.0",
                              major, minor);
    *prelen = major == 1 ? 10 : 12;
    if (have < *prelen) return pnetrt_io_fail(err, errlen, path, "truncated header: the file has only %zu bytes", have);
    *hlen = major == 1 ? le16(b + 8) : le32(b + 8);
    if (*hlen > size - *prelen)
        return pnetrt_io_fail(err, errlen, path,
                              "truncated header: header says %" PRIu64 " bytes of header but the file has %" PRIu64,
                              *hlen, size - *prelen);
    if (*hlen > NPY_MAX_HEADER)
        return pnetrt_io_fail(err, errlen, path, "header of %" PRIu64 " bytes exceeds the limit of %u", *hlen,
                              NPY_MAX_HEADER);
    return 0;
}

/* Checks a header's descr and sets what the caller reads it as; the file reader and the in-memory parser take
   different dtypes. */
typedef int npy_descr_fn(const char *path, const char *descr, void *out, char *err, size_t errlen);

/* The header dict text[0..hlen), its dtype (by `descr`), C order and data size against the `avail` bytes after
   the header: the one check of a .npy header dict, for both readers. itemsize is the dtype's bytes per element. */
static int npy_header_dict(const char *text, size_t hlen, uint64_t avail, const char *path, npy_descr_fn *descr,
                           void *descr_out, const int *itemsize, npy_header *h, uint64_t *nbytes, char *err,
                           size_t errlen) {
    dict_parser p = {text, hlen, 0, path, err, errlen};
    if (parse_dict(&p, h) || descr(path, h->descr, descr_out, err, errlen)) return -1;
    if (h->fortran_order)
        return pnetrt_io_fail(err, errlen, path, "fortran_order is True; only C-order arrays are supported");
    *nbytes = (uint64_t)*itemsize;
    for (int i = 0; i < h->rank; i++)
        if (!pnetrt_io_mul_u64(*nbytes, (uint64_t)h->shape[i], nbytes) || *nbytes > (uint64_t)INT64_MAX)
            return pnetrt_io_fail(err, errlen, path, "shape is too large: its size in bytes overflows");
    if (avail < *nbytes)
        return pnetrt_io_fail(err, errlen, path,
                              "truncated: header says %" PRIu64 " bytes of data but the file has %" PRIu64, *nbytes,
                              avail);
    if (avail > *nbytes)
        return pnetrt_io_fail(err, errlen, path,
                              "trailing data: header says %" PRIu64 " bytes of data but the file has %" PRIu64,
                              *nbytes, avail);
    return 0;
}

/* descr := '<f4' | '<i4'   (what pnetrt_npy_read returns) */
static int descr_f32_i32(const char *path, const char *descr, void *out, char *err, size_t errlen) {
    pnetrt_dtype *dtype = out;
    if (!strcmp(descr, "<f4"))
        *dtype = PNETRT_F32;
    else if (!strcmp(descr, "<i4"))
        *dtype = PNETRT_I32;
    else if (!strcmp(descr, ">f4") || !strcmp(descr, ">i4"))
        return pnetrt_io_fail(err, errlen, path,
                              "dtype '%s' is big-endian, which is not supported; expected float32 ('<f4') or int32 "
                              "('<i4')",
                              descr);
    else
        return pnetrt_io_fail(err, errlen, path,
                              "dtype '%s' is not supported; expected float32 ('<f4') or int32 ('<i4')", descr);
    return 0;
}

static int npy_read_file(FILE *f, const char *path, uint64_t fsize, pnetrt_array *out, char *err, size_t errlen) {
    unsigned char pre[12];
    size_t have = fsize < sizeof pre ? (size_t)fsize : sizeof pre;
    if (!read_full(f, pre, have)) return pnetrt_io_fail(err, errlen, path, "read error: %s", strerror(errno));
    size_t prelen;
    uint64_t hlen;
    if (npy_preamble(pre, have, fsize, true, path, &prelen, &hlen, err, errlen)) return -1;
    if (fseek(f, (long)prelen, SEEK_SET)) return pnetrt_io_fail(err, errlen, path, "cannot seek: %s", strerror(errno));

    char *text = malloc((size_t)hlen + 1);
    if (!text) return pnetrt_io_fail(err, errlen, path, "out of memory");
    if (!read_full(f, text, (size_t)hlen)) {
        free(text);
        return pnetrt_io_fail(err, errlen, path, "read error: %s", ferror(f) ? strerror(errno) : "file shrank while reading");
    }
    text[hlen] = '\0';
    npy_header h = {0};
    pnetrt_dtype dtype = PNETRT_F32;
    uint64_t nbytes;
    int rc = npy_header_dict(text, (size_t)hlen, fsize - prelen - hlen, path, descr_f32_i32, &dtype, &(int){4}, &h,
                             &nbytes, err, errlen);
    free(text);
    if (rc) return rc;

    void *data = malloc(nbytes ? (size_t)nbytes : 1);
    if (!data) return pnetrt_io_fail(err, errlen, path, "out of memory for %" PRIu64 " bytes of data", nbytes);
    if (!read_full(f, data, (size_t)nbytes)) {
        free(data);
        return pnetrt_io_fail(err, errlen, path, "read error: %s", ferror(f) ? strerror(errno) : "file shrank while reading");
    }
    out->dtype = dtype;
    out->rank = h.rank;
    memcpy(out->shape, h.shape, sizeof h.shape);
    out->data = data;
    out->nbytes = (size_t)nbytes;
    return 0;
}

int pnetrt_npy_read(const char *path, pnetrt_array *out, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    memset(out, 0, sizeof *out);
    uint64_t fsize;
    int fd = pnetrt_open_regular(path, &fsize, err, errlen);
    if (fd < 0) return -1;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        int e = errno;
        close(fd);
        return pnetrt_io_fail(err, errlen, path, "cannot open: %s", strerror(e));
    }
    int rc = npy_read_file(f, path, fsize, out, err, errlen);
    fclose(f);
    return rc;
}

/* ---- parsing in memory (for the data loaders in data.c) ----------------------------------- */

_Static_assert(PNETRT_MAX_RANK == sizeof((pnetrt_npy_view *)0)->shape / sizeof(int64_t), "view rank");

/* descr := ('<' | '|' | '=') ('b' | 'i' | 'u' | 'f') digit+ */
static int parse_descr(const char *path, const char *descr, void *view, char *err, size_t errlen) {
    pnetrt_npy_view *out = view;
    const char *s = descr;
    if (*s == '>') return pnetrt_io_fail(err, errlen, path, "dtype '%s' is big-endian, which is not supported", descr);
    if (*s != '<' && *s != '|' && *s != '=') goto bad;
    s++;
    if (!*s || !strchr("biuf", *s)) goto bad;
    out->kind = *s++;
    int size = 0;
    for (; *s >= '0' && *s <= '9' && size <= 16; s++)
        size = size * 10 + (*s - '0');
    if (*s || size < 1 || size > 16) goto bad;
    out->itemsize = size;
    return 0;
bad:
    return pnetrt_io_fail(err, errlen, path, "dtype '%s' is not supported", descr);
}

int pnetrt_npy_parse(const void *buf, size_t len, const char *path, pnetrt_npy_view *out, char *err, size_t errlen) {
    const unsigned char *b = buf;
    memset(out, 0, sizeof *out);
    size_t prelen;
    uint64_t hlen, nbytes;
    if (npy_preamble(b, len, len, false, path, &prelen, &hlen, err, errlen)) return -1;
    npy_header h = {0};
    if (npy_header_dict((const char *)b + prelen, (size_t)hlen, len - prelen - hlen, path, parse_descr, out,
                        &out->itemsize, &h, &nbytes, err, errlen))
        return -1;
    memcpy(out->descr, h.descr, sizeof out->descr);
    out->rank = h.rank;
    memcpy(out->shape, h.shape, sizeof out->shape);
    out->data = b + prelen + hlen;
    out->nbytes = (size_t)nbytes;
    return 0;
}

void pnetrt_array_free(pnetrt_array *a) {
    if (!a) return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

/* ---- writing ------------------------------------------------------------------------------ */

int pnetrt_npy_write(const char *path, const pnetrt_array *a, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    const char *descr = a->dtype == PNETRT_F32 ? "<f4" : a->dtype == PNETRT_I32 ? "<i4" : NULL;
    if (!descr)
        return pnetrt_io_fail(err, errlen, path, "cannot write dtype %d; expected PNETRT_F32 or PNETRT_I32", (int)a->dtype);
    if (a->rank < 0 || a->rank > PNETRT_MAX_RANK)
        return pnetrt_io_fail(err, errlen, path, "cannot write rank %d; expected 0 to %d", a->rank, PNETRT_MAX_RANK);
    uint64_t nbytes = 4;
    for (int i = 0; i < a->rank; i++) {
        if (a->shape[i] < 0)
            return pnetrt_io_fail(err, errlen, path, "shape dimension %d is negative (%" PRId64 ")", i, a->shape[i]);
        if (!pnetrt_io_mul_u64(nbytes, (uint64_t)a->shape[i], &nbytes))
            return pnetrt_io_fail(err, errlen, path, "shape is too large: its size in bytes overflows");
    }
    if (nbytes != a->nbytes)
        return pnetrt_io_fail(err, errlen, path, "array holds %zu bytes but its shape needs %" PRIu64, a->nbytes, nbytes);
    if (nbytes && !a->data) return pnetrt_io_fail(err, errlen, path, "array data is NULL");

    /* 10-byte preamble + dict + space padding + '\n', a multiple of 64 bytes as numpy writes it */
    char hdr[512];
    int n = snprintf(hdr + 10, sizeof hdr - 10, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < a->rank; i++)
        n += snprintf(hdr + 10 + n, sizeof hdr - 10 - (size_t)n, i ? ", %" PRId64 : "%" PRId64, a->shape[i]);
    n += snprintf(hdr + 10 + n, sizeof hdr - 10 - (size_t)n, "%s), }", a->rank == 1 ? "," : "");
    if (a->rank > 0) {
        /* numpy leaves room for shape[0] to grow to 21 digits, so files can be appended to in place */
        char digits[24];
        n += snprintf(hdr + 10 + n, sizeof hdr - 10 - (size_t)n, "%*s",
                      21 - snprintf(digits, sizeof digits, "%" PRId64, a->shape[0]), "");
    }
    size_t total = (10 + (size_t)n + 1 + 63) / 64 * 64;
    memset(hdr + 10 + n, ' ', total - 10 - (size_t)n - 1);
    hdr[total - 1] = '\n';
    memcpy(hdr, NPY_MAGIC "\x01\x00", 8);
    hdr[8] = (char)((total - 10) & 0xff);
    hdr[9] = (char)((total - 10) >> 8);

    const void *bufs[2] = {hdr, a->data};
    size_t lens[2] = {total, (size_t)nbytes};
    return pnetrt_io_write_atomic(path, 2, bufs, lens, err, errlen);
}
