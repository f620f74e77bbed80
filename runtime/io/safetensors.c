/* safetensors reader (F32/F16/BF16/F64 to float) and atomic F32 writer; the JSON header goes through cJSON. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "io.h"
#include "fileio.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
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

#define ST_MAX_HEADER (100u * 1000 * 1000) /* the reference implementation's limit */
#define ST_MAX_EXACT 9007199254740992.0    /* 2^53: JSON numbers arrive as doubles, exact up to here */

typedef enum { ST_F32, ST_F16, ST_BF16, ST_F64, ST_OTHER } st_kind;

typedef struct {
    const char *name; /* points into the cJSON tree, which lives as long as the pnetrt_st */
    st_kind kind;
    const char *dtype;
    int rank;
    int64_t shape[PNETRT_MAX_RANK];
    uint64_t begin, end; /* within the data block */
    bool used;           /* looked up by a read: pnetrt_st_unused lists the others */
} st_entry;

struct pnetrt_st {
    int fd;
    char *path;
    cJSON *root;
    uint64_t data_start, data_len;
    int n;
    st_entry *entries; /* file order */
    st_entry **sorted; /* by name, for lookup */
    char *prefix;      /* pnetrt_st_set_prefix: prepended to every name looked up, or NULL */
};

/* Every dtype of the format that has a whole-byte size; the supported ones convert to float. */
static const struct {
    const char *name;
    unsigned size;
    st_kind kind;
} st_dtypes[] = {
    {"F32", 4, ST_F32},       {"F16", 2, ST_F16},       {"BF16", 2, ST_BF16}, {"F64", 8, ST_F64},
    {"BOOL", 1, ST_OTHER},    {"U8", 1, ST_OTHER},      {"I8", 1, ST_OTHER},  {"F8_E5M2", 1, ST_OTHER},
    {"F8_E4M3", 1, ST_OTHER}, {"F8_E8M0", 1, ST_OTHER}, {"I16", 2, ST_OTHER}, {"U16", 2, ST_OTHER},
    {"I32", 4, ST_OTHER},     {"U32", 4, ST_OTHER},     {"I64", 8, ST_OTHER}, {"U64", 8, ST_OTHER},
    {"C64", 8, ST_OTHER},
};

/* ---- errors and small helpers ------------------------------------------------------------- */


/* "[128,64]" into buf. */
static const char *shape_str(char *buf, size_t len, int rank, const int64_t *shape) {
    size_t n = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < rank && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, i ? ",%" PRId64 : "%" PRId64, shape[i]);
    if (n < len) snprintf(buf + n, len - n, "]");
    return buf;
}

/* Reads exactly n bytes at off; 0, or an errno value (EIO when the file ends early). */
static int pread_full(int fd, void *buf, size_t n, uint64_t off) {
    char *p = buf;
    while (n > 0) {
        ssize_t r = pread(fd, p, n > (1u << 30) ? (1u << 30) : n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return errno;
        if (r == 0) return EIO;
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

static int cmp_entry(const void *a, const void *b) {
    return strcmp((*(st_entry *const *)a)->name, (*(st_entry *const *)b)->name);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_offsets(const void *a, const void *b) {
    const st_entry *x = *(st_entry *const *)a, *y = *(st_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* s[0..len) with control characters as \u00XX, so a message stays on one line and sends no escape
   sequence to the terminal; cut with "..." past the buffer. */
static const char *printable(char *buf, size_t cap, const char *s, size_t len) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (n + 7 + 4 > cap) {
            memcpy(buf + n, "...", 4);
            return buf;
        }
        if (c < 0x20 || c == 0x7f)
            n += (size_t)snprintf(buf + n, cap - n, "\\u%04x", c);
        else
            buf[n++] = (char)c;
    }
    buf[n] = '\0';
    return buf;
}

static bool has_control(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) return true;
    return false;
}

/* A JSON number that is a non-negative integer below 2^53, as cJSON gives them to us as doubles. */
static bool json_u64(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return false;
    double d = item->valuedouble;
    if (!(d >= 0 && d <= ST_MAX_EXACT) || (double)(uint64_t)d != d) return false; /* exact: rejects 1.5 */
    *out = (uint64_t)d;
    return true;
}

/* ---- opening ------------------------------------------------------------------------------ */

/* entry := {"dtype": str, "shape": [uint, ...], "data_offsets": [begin, end]}   (other keys ignored) */
static int parse_entry(pnetrt_st *st, cJSON *item, st_entry *e, char *err, size_t errlen) {
    const char *path = st->path;
    e->name = item->string;
    if (!cJSON_IsObject(item))
        return pnetrt_io_fail(err, errlen, path, "corrupt header: tensor '%s' is not a JSON object", e->name);
    cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dtype))
        return pnetrt_io_fail(err, errlen, path, "corrupt header: tensor '%s' has no string 'dtype'", e->name);
    if (!cJSON_IsArray(shape))
        return pnetrt_io_fail(err, errlen, path, "corrupt header: tensor '%s' has no 'shape' array", e->name);
    if (!cJSON_IsArray(offs))
        return pnetrt_io_fail(err, errlen, path, "corrupt header: tensor '%s' has no 'data_offsets' array", e->name);

    unsigned size = 0;
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (!strcmp(dtype->valuestring, st_dtypes[i].name)) {
            size = st_dtypes[i].size;
            e->kind = st_dtypes[i].kind;
            e->dtype = st_dtypes[i].name;
        }
    if (!size) {
        char pb[160];
        return pnetrt_io_fail(err, errlen, path, "tensor '%s' has unknown dtype '%s'", e->name,
                              printable(pb, sizeof pb, dtype->valuestring, strlen(dtype->valuestring)));
    }

    int rank = cJSON_GetArraySize(shape);
    if (rank > PNETRT_MAX_RANK)
        return pnetrt_io_fail(err, errlen, path, "tensor '%s' has %d dimensions; at most %d are supported", e->name, rank,
                    PNETRT_MAX_RANK);
    e->rank = 0;
    uint64_t nbytes = size;
    cJSON *d;
    cJSON_ArrayForEach(d, shape) {
        uint64_t v;
        if (!json_u64(d, &v))
            return pnetrt_io_fail(err, errlen, path, "corrupt header: shape of tensor '%s' must hold non-negative integers",
                        e->name);
        e->shape[e->rank++] = (int64_t)v;
        if (!pnetrt_io_mul_u64(nbytes, v, &nbytes))
            return pnetrt_io_fail(err, errlen, path, "tensor '%s' has a shape whose size in bytes overflows", e->name);
    }

    if (cJSON_GetArraySize(offs) != 2 || !json_u64(cJSON_GetArrayItem(offs, 0), &e->begin) ||
        !json_u64(cJSON_GetArrayItem(offs, 1), &e->end))
        return pnetrt_io_fail(err, errlen, path, "corrupt header: data_offsets of tensor '%s' must be [begin, end]", e->name);
    if (e->begin > e->end || e->end > st->data_len)
        return pnetrt_io_fail(err, errlen, path,
                    "tensor '%s' has data_offsets [%" PRIu64 ",%" PRIu64 "] outside the %" PRIu64 "-byte data block",
                    e->name, e->begin, e->end, st->data_len);
    if (e->end - e->begin != nbytes) {
        char sb[200];
        return pnetrt_io_fail(err, errlen, path,
                    "tensor '%s' has data_offsets [%" PRIu64 ",%" PRIu64 "] (%" PRIu64
                    " bytes) but %s %s needs %" PRIu64 " bytes",
                    e->name, e->begin, e->end, e->end - e->begin, e->dtype, shape_str(sb, sizeof sb, e->rank, e->shape),
                    nbytes);
    }
    return 0;
}

/* cJSON ends a string at a \u0000 escape, so "fc2.bias\u0000evil" would load as the tensor fc2.bias.
   Refuses any such escape in the header (already valid JSON), naming the top-level key it is in or under. */
static int check_nul_escapes(const char *path, const char *text, size_t len, char *err, size_t errlen) {
    int depth = 0;
    bool expect_key = false;
    const char *key = NULL;
    size_t keylen = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (c == '{' || c == '[') {
            depth++;
            expect_key = c == '{' && depth == 1;
        } else if (c == '}' || c == ']') {
            depth--;
        } else if (c == ',') {
            expect_key = depth == 1;
        } else if (c == '"') {
            /* string := '"' (char | '\\' escape)* '"'; valid JSON, so an escape never runs past the end */
            bool is_key = depth == 1 && expect_key, nul = false;
            size_t start = ++i;
            expect_key = false;
            for (; text[i] != '"'; i++)
                if (text[i] == '\\') nul |= !strncmp(text + ++i, "u0000", 5);
            if (is_key) {
                key = text + start;
                keylen = i - start;
            }
            if (!nul) continue;
            char pb[160];
            const char *name = printable(pb, sizeof pb, key, keylen);
            if (is_key)
                return pnetrt_io_fail(err, errlen, path, "corrupt header: tensor name '%s' holds a NUL character (\\u0000)",
                                      name);
            if (keylen == 12 && !memcmp(key, "__metadata__", 12))
                return pnetrt_io_fail(err, errlen, path,
                                      "corrupt header: '__metadata__' holds a string with a NUL character (\\u0000)");
            return pnetrt_io_fail(err, errlen, path,
                                  "corrupt header: tensor '%s' holds a string with a NUL character (\\u0000)", name);
        }
    }
    return 0;
}

/* The format requires the data_offsets, sorted, to cover the data block exactly: the first tensor starts
   at 0, each one where the one before ended, and the last at the end of the file (as the reference
   implementation checks). Overlaps, gaps and trailing bytes are where a polyglot file hides a payload. */
static int check_tiling(pnetrt_st *st, char *err, size_t errlen) {
    const char *path = st->path;
    if (st->n == 0)
        return st->data_len ? pnetrt_io_fail(err, errlen, path, "%" PRIu64 " bytes of data, but no tensors", st->data_len)
                            : 0;
    st_entry **order = malloc((size_t)st->n * sizeof *order);
    if (!order) return pnetrt_io_fail(err, errlen, path, "out of memory");
    memcpy(order, st->sorted, (size_t)st->n * sizeof *order);
    qsort(order, (size_t)st->n, sizeof *order, cmp_offsets);
    int rc = 0;
    const st_entry *prev = NULL;
    for (int i = 0; i < st->n && !rc; i++) {
        const st_entry *e = order[i];
        uint64_t at = prev ? prev->end : 0;
        if (e->begin < at)
            rc = pnetrt_io_fail(err, errlen, path,
                                "tensor '%s' has data_offsets [%" PRIu64 ",%" PRIu64 "], which overlap tensor '%s' at [%" PRIu64
                                ",%" PRIu64 "]",
                                e->name, e->begin, e->end, prev->name, prev->begin, prev->end);
        else if (e->begin > at && prev)
            rc = pnetrt_io_fail(err, errlen, path,
                                "tensor '%s' has data_offsets [%" PRIu64 ",%" PRIu64 "], leaving bytes %" PRIu64 " to %" PRIu64
                                " of the data block after tensor '%s' unused",
                                e->name, e->begin, e->end, at, e->begin, prev->name);
        else if (e->begin > at)
            rc = pnetrt_io_fail(err, errlen, path,
                                "tensor '%s' has data_offsets [%" PRIu64 ",%" PRIu64 "], leaving bytes 0 to %" PRIu64
                                " of the data block unused",
                                e->name, e->begin, e->end, e->begin);
        prev = e;
    }
    if (!rc && prev->end != st->data_len)
        rc = pnetrt_io_fail(err, errlen, path,
                            "%" PRIu64 " bytes after the last tensor '%s', which ends at byte %" PRIu64 " of the %" PRIu64
                            "-byte data block",
                            st->data_len - prev->end, prev->name, prev->end, st->data_len);
    free(order);
    return rc;
}

/* Reads the header of the regular file st->fd of fsize bytes (pnetrt_open_regular checked its kind). */
static int st_load(pnetrt_st *st, uint64_t fsize, char *err, size_t errlen) {
    const char *path = st->path;
    if (fsize < 8)
        return pnetrt_io_fail(err, errlen, path,
                    "truncated: the file has %" PRIu64 " bytes, too few for the 8-byte header length", fsize);

    unsigned char lb[8];
    int e = pread_full(st->fd, lb, 8, 0);
    if (e) return pnetrt_io_fail(err, errlen, path, "read error: %s", strerror(e));
    /* gzip's magic, where a safetensors header would start with '{'. */
    unsigned char first = 0;
    if (lb[0] == 0x1f && lb[1] == 0x8b && (fsize < 9 || pread_full(st->fd, &first, 1, 8) || first != '{'))
        return pnetrt_io_fail(err, errlen, path, "is gzip-compressed; decompress it (gunzip) to load it as safetensors");
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | lb[i];
    if (hlen > fsize - 8)
        return pnetrt_io_fail(err, errlen, path,
                    "corrupt header: header length %" PRIu64 " is larger than the file (%" PRIu64
                    " bytes after the length)",
                    hlen, fsize - 8);
    if (hlen > ST_MAX_HEADER)
        return pnetrt_io_fail(err, errlen, path, "corrupt header: header length %" PRIu64 " exceeds the limit of %u bytes", hlen,
                    ST_MAX_HEADER);
    st->data_start = 8 + hlen;
    st->data_len = fsize - st->data_start;

    char *text = malloc((size_t)hlen + 1);
    if (!text) return pnetrt_io_fail(err, errlen, path, "out of memory for a %" PRIu64 "-byte header", hlen);
    e = pread_full(st->fd, text, (size_t)hlen, 8);
    if (e) {
        free(text);
        return pnetrt_io_fail(err, errlen, path, "read error: %s", strerror(e));
    }
    text[hlen] = '\0';
    /* cJSON works on C strings, so a NUL would silently cut a name short */
    const char *nul = memchr(text, '\0', (size_t)hlen);
    if (nul) {
        size_t at = (size_t)(nul - text);
        free(text);
        return pnetrt_io_fail(err, errlen, path, "corrupt header: NUL byte at byte %zu of the header", at);
    }
    const char *end = NULL;
    st->root = cJSON_ParseWithLengthOpts(text, (size_t)hlen, &end, 0);
    if (!st->root) {
        size_t at = end && end >= text && end <= text + hlen ? (size_t)(end - text) : 0;
        free(text);
        return pnetrt_io_fail(err, errlen, path, "corrupt header: invalid JSON at byte %zu of the header", at);
    }
    /* the reference writer pads with spaces; anything else after the object is garbage */
    for (const char *p = end; p < text + hlen; p++)
        if (!strchr(" \t\r\n", *p)) {
            size_t at = (size_t)(p - text);
            free(text);
            return pnetrt_io_fail(err, errlen, path, "corrupt header: unexpected text after the JSON object at byte %zu", at);
        }
    int bad = check_nul_escapes(path, text, (size_t)(end - text), err, errlen);
    free(text);
    if (bad) return -1;
    if (!cJSON_IsObject(st->root)) return pnetrt_io_fail(err, errlen, path, "corrupt header: not a JSON object");

    int count = 0;
    cJSON *item;
    cJSON_ArrayForEach(item, st->root) count++;
    st->entries = calloc((size_t)count + 1, sizeof *st->entries);
    st->sorted = calloc((size_t)count + 1, sizeof *st->sorted);
    if (!st->entries || !st->sorted) return pnetrt_io_fail(err, errlen, path, "out of memory");
    bool seen_meta = false;
    cJSON_ArrayForEach(item, st->root) {
        if (!strcmp(item->string, "__metadata__")) {
            if (seen_meta) return pnetrt_io_fail(err, errlen, path, "corrupt header: duplicate '__metadata__'");
            if (!cJSON_IsObject(item))
                return pnetrt_io_fail(err, errlen, path, "corrupt header: '__metadata__' is not an object");
            seen_meta = true; /* free-form strings for the user; nothing here needs them */
            continue;
        }
        if (has_control(item->string)) {
            char pb[160];
            return pnetrt_io_fail(err, errlen, path, "tensor name '%s' holds a control character",
                                  printable(pb, sizeof pb, item->string, strlen(item->string)));
        }
        st_entry *en = &st->entries[st->n];
        if (parse_entry(st, item, en, err, errlen)) return -1;
        st->sorted[st->n++] = en;
    }
    /* cJSON keeps both copies of a repeated key; sorting finds them in n log n */
    qsort(st->sorted, (size_t)st->n, sizeof *st->sorted, cmp_entry);
    for (int i = 1; i < st->n; i++)
        if (!strcmp(st->sorted[i - 1]->name, st->sorted[i]->name))
            return pnetrt_io_fail(err, errlen, path, "corrupt header: duplicate tensor name '%s'", st->sorted[i]->name);
    return check_tiling(st, err, errlen);
}

int pnetrt_st_open(const char *path, pnetrt_st **out, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    *out = NULL;
    uint64_t size;
    int fd = pnetrt_open_regular(path, &size, err, errlen); /* never opens a device or waits on a FIFO */
    if (fd < 0) return -1;
    pnetrt_st *st = calloc(1, sizeof *st);
    char *p = strdup(path);
    if (!st || !p) {
        free(st);
        free(p);
        close(fd);
        return pnetrt_io_fail(err, errlen, path, "out of memory");
    }
    st->fd = fd;
    st->path = p;
    if (st_load(st, size, err, errlen)) {
        pnetrt_st_close(st);
        return -1;
    }
    *out = st;
    return 0;
}

int pnetrt_st_count(const pnetrt_st *st) {
    return st ? st->n : 0;
}

const char *pnetrt_st_name(const pnetrt_st *st, int i) {
    return st && i >= 0 && i < st->n ? st->entries[i].name : NULL;
}

void pnetrt_st_close(pnetrt_st *st) {
    if (!st) return;
    if (st->fd >= 0) close(st->fd);
    cJSON_Delete(st->root);
    free(st->entries);
    free(st->sorted);
    free(st->path);
    free(st->prefix);
    free(st);
}

int pnetrt_st_set_prefix(pnetrt_st *st, const char *prefix, char *err, size_t errlen) {
    char *p = prefix && *prefix ? strdup(prefix) : NULL;
    if (prefix && *prefix && !p) return pnetrt_io_fail(err, errlen, st->path, "out of memory");
    free(st->prefix);
    st->prefix = p;
    return 0;
}

/* ---- reading tensors ---------------------------------------------------------------------- */

/* IEEE half to float, subnormals, infinities and NaNs included. */
static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f)
        bits = sign | 0x7f800000 | man << 13;
    else if (exp != 0)
        bits = sign | (exp + 112) << 23 | man << 13;
    else if (man == 0)
        bits = sign;
    else {
        /* subnormal: renormalise into float's wider exponent range */
        exp = 113;
        while (!(man & 0x400)) {
            man <<= 1;
            exp--;
        }
        bits = sign | exp << 23 | (man & 0x3ff) << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Rounds like the hardware, but spells out overflow, which is undefined behaviour for a C cast. */
static float f64_to_f32(double d) {
    if (d > (double)FLT_MAX) return d < 0x1.ffffffp127 ? FLT_MAX : INFINITY;
    if (d < -(double)FLT_MAX) return d > -0x1.ffffffp127 ? -FLT_MAX : -INFINITY;
    return (float)d;
}

static st_entry *st_find(const pnetrt_st *st, const char *name) {
    st_entry key = {.name = name}, *kp = &key;
    st_entry **hit = bsearch(&kp, st->sorted, (size_t)st->n, sizeof *st->sorted, cmp_entry);
    return hit ? *hit : NULL;
}

/* The file's name for `name`: with the prefix, into buf (NULL when it does not fit). */
static const char *st_key(const pnetrt_st *st, const char *name, char *buf, size_t len) {
    if (!st->prefix) return name;
    return (size_t)snprintf(buf, len, "%s%s", st->prefix, name) < len ? buf : NULL;
}

/* "missing tensor 'fc1.weight'", and where the file holds it under a prefix, which: the name with
 * the prefix given, or another name that ends in ".fc1.weight" (the shortest). */
static int st_missing(const pnetrt_st *st, const char *name, const char *key, char *err, size_t errlen) {
    if (st->prefix && st_find(st, name))
        return pnetrt_io_fail(err, errlen, st->path, "missing tensor '%s'; the file has '%s', without the prefix '%s'", key,
                              name, st->prefix);
    size_t len = strlen(name);
    const st_entry *best = NULL;
    for (int i = 0; i < st->n; i++) {
        const char *k = st->entries[i].name;
        size_t kl = strlen(k);
        if (kl > len && k[kl - len - 1] == '.' && !strcmp(k + kl - len, name) && (!best || kl < strlen(best->name)))
            best = &st->entries[i];
    }
    if (!best) return pnetrt_io_fail(err, errlen, st->path, "missing tensor '%s'", key);
    int pl = (int)(strlen(best->name) - len);
    return pnetrt_io_fail(err, errlen, st->path, "missing tensor '%s'; the file has '%s': its names carry the prefix "
                          "'%.*s' (give --weights-prefix %.*s)", key, best->name, pl, best->name, pl, best->name);
}

int pnetrt_st_unused(const pnetrt_st *st, const char *skip, char *buf, size_t len) {
    int n = 0, shown = 0;
    size_t at = 0;
    if (buf && len) buf[0] = '\0';
    for (int i = 0; st && i < st->n; i++) {
        const st_entry *e = &st->entries[i];
        if (e->used || (skip && !strncmp(e->name, skip, strlen(skip)))) continue;
        n++;
        if (buf && shown < 8 && at < len) {
            at += (size_t)snprintf(buf + at, len - at, "%s'%s'", shown ? ", " : "", e->name);
            shown++;
        }
    }
    if (buf && n > shown && at < len) snprintf(buf + at, len - at, " and %d more", n - shown);
    return n;
}

int pnetrt_st_shape(const pnetrt_st *st, const char *name, int *rank, int64_t shape[PNETRT_MAX_RANK]) {
    char buf[1024];
    const char *key = st && name ? st_key(st, name, buf, sizeof buf) : NULL;
    const st_entry *e = key ? st_find(st, key) : NULL;
    if (!e) return -1;
    *rank = e->rank;
    for (int i = 0; i < e->rank; i++)
        shape[i] = e->shape[i];
    return 0;
}

const char *pnetrt_st_meta(const pnetrt_st *st, const char *key) {
    if (!st || !key) return NULL;
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(st->root, "__metadata__");
    const cJSON *v = meta ? cJSON_GetObjectItemCaseSensitive(meta, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int pnetrt_st_read_f32(pnetrt_st *st, const char *name, int rank, const int64_t *shape, float *dst, char *err,
                       size_t errlen) {
    return pnetrt_st_read_f32_range(st, name, rank, shape, 0, -1, dst, err, errlen);
}

/* count -1: to the end of the tensor. */
int pnetrt_st_read_f32_range(pnetrt_st *st, const char *name, int rank, const int64_t *shape, int64_t first,
                             int64_t count, float *dst, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    const char *path = st->path;
    char kbuf[1024];
    const char *key = st_key(st, name, kbuf, sizeof kbuf);
    if (!key) return pnetrt_io_fail(err, errlen, path, "tensor name '%s%s' is too long", st->prefix, name);
    st_entry *e = st_find(st, key);
    if (!e) return st_missing(st, name, key, err, errlen);
    e->used = true;
    name = key; /* errors name the tensor as the file does */
    bool same = rank == e->rank;
    for (int i = 0; same && i < rank; i++)
        same = shape[i] == e->shape[i];
    if (!same) {
        char got[200], want[200];
        if (rank < 0 || rank > PNETRT_MAX_RANK)
            return pnetrt_io_fail(err, errlen, path, "tensor '%s': expected rank %d is out of range", name, rank);
        return pnetrt_io_fail(err, errlen, path, "tensor '%s' has shape %s, expected %s", name,
                    shape_str(got, sizeof got, e->rank, e->shape), shape_str(want, sizeof want, rank, shape));
    }
    if (e->kind == ST_OTHER)
        return pnetrt_io_fail(err, errlen, path, "tensor '%s' has dtype %s; only F32, F16, BF16 and F64 can be read as float",
                    name, e->dtype);
    unsigned size = e->kind == ST_F64 ? 8 : e->kind == ST_F32 ? 4 : 2;
    uint64_t elems = (e->end - e->begin) / size;
    if (count < 0) count = first >= 0 && (uint64_t)first <= elems ? (int64_t)(elems - (uint64_t)first) : 0;
    if (first < 0 || (uint64_t)first > elems || (uint64_t)count > elems - (uint64_t)first)
        return pnetrt_io_fail(err, errlen, path, "tensor '%s': elements %lld to %lld are out of range", name,
                              (long long)first, (long long)(first + count));
    uint64_t off = st->data_start + e->begin + (uint64_t)first * size, len = (uint64_t)count * size;
    if (len == 0) return 0;
    if (e->kind == ST_F32) {
        int rc = pread_full(st->fd, dst, (size_t)len, off);
        return rc ? pnetrt_io_fail(err, errlen, path, "reading tensor '%s': %s", name, strerror(rc)) : 0;
    }
    /* convert through a bounce buffer, a chunk at a time, so no second copy of the tensor is needed */
    uint64_t buf[8192];
    size_t per = sizeof buf / size, done = 0, total = (size_t)count;
    while (done < total) {
        size_t k = total - done < per ? total - done : per;
        int rc = pread_full(st->fd, buf, k * size, off + (uint64_t)done * size);
        if (rc) return pnetrt_io_fail(err, errlen, path, "reading tensor '%s': %s", name, strerror(rc));
        const unsigned char *b = (const unsigned char *)buf;
        for (size_t i = 0; i < k; i++) {
            if (e->kind == ST_F64) {
                double d;
                memcpy(&d, b + 8 * i, 8);
                dst[done + i] = f64_to_f32(d);
            } else {
                uint16_t h = (uint16_t)(b[2 * i] | b[2 * i + 1] << 8);
                dst[done + i] = e->kind == ST_F16 ? f16_to_f32(h) : bf16_to_f32(h);
            }
        }
        done += k;
    }
    return 0;
}

/* ---- writing ------------------------------------------------------------------------------ */

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF), which the format requires. */
static bool utf8_ok(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p, n = c < 0x80             ? 0
                             : (c & 0xe0) == 0xc0 ? 1
                             : (c & 0xf0) == 0xe0 ? 2
                             : (c & 0xf8) == 0xf0 ? 3
                                                  : 9;
        if (n == 9 || (n == 1 && c < 0xc2) || (n == 3 && c > 0xf4)) return false;
        for (unsigned i = 1; i <= n; i++)
            if ((p[i] & 0xc0) != 0x80) return false;
        if (n == 2 && ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0))) return false;
        if (n == 3 && ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90))) return false;
        p += n + 1;
    }
    return true;
}

/* Checks that names are valid UTF-8 and distinct; what says which kind, for the message. */
static int check_names(const char *path, int n, const char *const *names, const char *what, char *err, size_t errlen) {
    for (int i = 0; i < n; i++) {
        if (!names[i]) return pnetrt_io_fail(err, errlen, path, "%s %d is NULL", what, i);
        if (!utf8_ok(names[i])) return pnetrt_io_fail(err, errlen, path, "%s '%s' is not valid UTF-8", what, names[i]);
    }
    if (n == 0) return 0;
    const char **sorted = malloc((size_t)n * sizeof *sorted);
    if (!sorted) return pnetrt_io_fail(err, errlen, path, "out of memory");
    memcpy(sorted, names, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_str);
    for (int i = 1; i < n; i++)
        if (!strcmp(sorted[i - 1], sorted[i])) {
            int rc = pnetrt_io_fail(err, errlen, path, "duplicate %s '%s'", what, sorted[i]);
            free(sorted);
            return rc;
        }
    free(sorted);
    return 0;
}

/* A JSON integer that cJSON would otherwise print in %g form once it passes 10^15. */
static cJSON *raw_int(uint64_t v) {
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    return cJSON_CreateRaw(buf);
}

/* Builds {"__metadata__":{...},"name":{"dtype":"F32","shape":[...],"data_offsets":[b,e]},...} and the
   data offsets in lens[1..n]. */
static char *build_header(const char *path, int n, const char *const *names, const int *ranks,
                          const int64_t (*shapes)[8], const float *const *data, int nmeta, const char *const *meta_keys,
                          const char *const *meta_values, size_t *lens, char *err, size_t errlen) {
    cJSON *root = cJSON_CreateObject();
    if (!root) goto oom;
    if (nmeta > 0) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        if (!meta) goto oom;
        for (int i = 0; i < nmeta; i++)
            if (!cJSON_AddStringToObject(meta, meta_keys[i], meta_values[i])) goto oom;
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        if (!strcmp(names[i], "__metadata__")) {
            pnetrt_io_fail(err, errlen, path, "a tensor cannot be named '__metadata__'");
            goto out;
        }
        if (has_control(names[i])) { /* the reader refuses them: they would break its one-line messages */
            char pb[160];
            pnetrt_io_fail(err, errlen, path, "tensor name '%s' holds a control character",
                           printable(pb, sizeof pb, names[i], strlen(names[i])));
            goto out;
        }
        if (ranks[i] < 0 || ranks[i] > PNETRT_MAX_RANK) {
            pnetrt_io_fail(err, errlen, path, "tensor '%s' has rank %d; expected 0 to %d", names[i], ranks[i], PNETRT_MAX_RANK);
            goto out;
        }
        cJSON *t = cJSON_AddObjectToObject(root, names[i]);
        cJSON *shape = cJSON_CreateArray(), *offs = cJSON_CreateArray();
        if (!t || !cJSON_AddStringToObject(t, "dtype", "F32") || !shape || !offs) {
            cJSON_Delete(shape);
            cJSON_Delete(offs);
            goto oom;
        }
        cJSON_AddItemToObject(t, "shape", shape);
        cJSON_AddItemToObject(t, "data_offsets", offs);
        uint64_t nbytes = 4;
        for (int k = 0; k < ranks[i]; k++) {
            int64_t dim = shapes[i][k];
            if (dim < 0) {
                pnetrt_io_fail(err, errlen, path, "tensor '%s' has negative dimension %" PRId64, names[i], dim);
                goto out;
            }
            if (!pnetrt_io_mul_u64(nbytes, (uint64_t)dim, &nbytes) || nbytes > SIZE_MAX) {
                pnetrt_io_fail(err, errlen, path, "tensor '%s' has a shape whose size in bytes overflows", names[i]);
                goto out;
            }
            cJSON *v = raw_int((uint64_t)dim);
            if (!v) goto oom;
            cJSON_AddItemToArray(shape, v);
        }
        if (nbytes && data && !data[i]) {
            pnetrt_io_fail(err, errlen, path, "tensor '%s' has NULL data", names[i]);
            goto out;
        }
        if (off + nbytes < off) {
            pnetrt_io_fail(err, errlen, path, "total data size overflows");
            goto out;
        }
        cJSON *b = raw_int(off), *e = raw_int(off + nbytes);
        if (!b || !e) {
            cJSON_Delete(b);
            cJSON_Delete(e);
            goto oom;
        }
        cJSON_AddItemToArray(offs, b);
        cJSON_AddItemToArray(offs, e);
        lens[1 + i] = (size_t)nbytes;
        off += nbytes;
    }
    char *text = cJSON_PrintUnformatted(root);
    if (!text) goto oom;
    cJSON_Delete(root);
    return text;
oom:
    pnetrt_io_fail(err, errlen, path, "out of memory");
out:
    cJSON_Delete(root);
    return NULL;
}

/* The header's bytes (8-byte length, then the JSON padded with spaces to a multiple of 8, as the
   reference writer does) into *hdr, and the tensors' byte counts into lens[1..n]. data may be NULL
   (the tensors come from a piece function). Returns the header's length, or 0 with err set. */
static size_t header_bytes(const char *path, int n, const char *const *names, const int *ranks, const int64_t (*shapes)[8],
                           const float *const *data, int nmeta, const char *const *meta_keys,
                           const char *const *meta_values, size_t *lens, char **hdr, char *err, size_t errlen) {
    *hdr = NULL;
    if (n < 0 || nmeta < 0) return pnetrt_io_fail(err, errlen, path, "negative tensor or metadata count"), 0;
    if (check_names(path, n, names, "tensor name", err, errlen) ||
        check_names(path, nmeta, meta_keys, "metadata key", err, errlen))
        return 0;
    for (int i = 0; i < nmeta; i++) {
        if (!meta_values[i]) return pnetrt_io_fail(err, errlen, path, "metadata value for '%s' is NULL", meta_keys[i]), 0;
        if (!utf8_ok(meta_values[i]))
            return pnetrt_io_fail(err, errlen, path, "metadata value for '%s' is not valid UTF-8", meta_keys[i]), 0;
    }
    char *json = build_header(path, n, names, ranks, shapes, data, nmeta, meta_keys, meta_values, lens, err, errlen);
    if (!json) return 0;
    size_t jlen = strlen(json), plen = (jlen + 7) / 8 * 8;
    *hdr = malloc(8 + plen);
    if (!*hdr) {
        cJSON_free(json);
        return pnetrt_io_fail(err, errlen, path, "out of memory"), 0;
    }
    for (int i = 0; i < 8; i++)
        (*hdr)[i] = (char)((uint64_t)plen >> (8 * i));
    memcpy(*hdr + 8, json, jlen);
    memset(*hdr + 8 + jlen, ' ', plen - jlen);
    cJSON_free(json);
    return 8 + plen;
}

/* The file, its tensors' bytes asked of fn in file order, in pieces of at most `piece` bytes; data
 * (may be NULL) only for the header's check that a tensor with bytes has them. */
static int write_pieces(const char *path, int n, const char *const *names, const int *ranks, const int64_t (*shapes)[8],
                        const float *const *data, size_t piece, pnetrt_st_piece_fn fn, void *ctx, int nmeta,
                        const char *const *meta_keys, const char *const *meta_values, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (piece == 0) return pnetrt_io_fail(err, errlen, path, "a piece of 0 bytes");
    size_t *lens = calloc((size_t)(n > 0 ? n : 0) + 2, sizeof *lens);
    char *hdr = NULL;
    int rc = -1;
    if (!lens) {
        pnetrt_io_fail(err, errlen, path, "out of memory");
        goto out;
    }
    lens[0] = header_bytes(path, n, names, ranks, shapes, data, nmeta, meta_keys, meta_values, lens, &hdr, err, errlen);
    if (!lens[0]) goto out;
    pnetrt_io_out o;
    if (pnetrt_io_out_open(&o, path, err, errlen)) goto out;
    if (!pnetrt_io_write_full(o.fd, hdr, lens[0])) {
        int e = errno;
        pnetrt_io_out_abort(&o);
        pnetrt_io_fail(err, errlen, path, "cannot write: %s", strerror(e));
        goto out;
    }
    for (int i = 0; i < n; i++)
        for (size_t off = 0; off < lens[1 + i]; off += piece) {
            size_t len = lens[1 + i] - off < piece ? lens[1 + i] - off : piece;
            char why[256] = "";
            const void *p = fn(ctx, i, off, len, why, sizeof why);
            if (!p) {
                pnetrt_io_out_abort(&o);
                pnetrt_io_fail(err, errlen, path, "%s", why[0] ? why : "a tensor's bytes could not be had");
                goto out;
            }
            if (!pnetrt_io_write_full(o.fd, p, len)) {
                int e = errno;
                pnetrt_io_out_abort(&o);
                pnetrt_io_fail(err, errlen, path, "cannot write: %s", strerror(e));
                goto out;
            }
        }
    rc = pnetrt_io_out_commit(&o, path, err, errlen);
out:
    free(lens);
    free(hdr);
    return rc;
}

/* pnetrt_st_write's tensors: whole, from the data array. */
static const void *whole_tensor(void *ctx, int i, size_t off, size_t len, char *why, size_t whylen) {
    (void)len, (void)why, (void)whylen;
    return (const char *)((const float *const *)ctx)[i] + off;
}

int pnetrt_st_write(const char *path, int n, const char *const *names, const int *ranks, const int64_t (*shapes)[8],
                    const float *const *data, int nmeta, const char *const *meta_keys, const char *const *meta_values,
                    char *err, size_t errlen) {
    return write_pieces(path, n, names, ranks, shapes, data, SIZE_MAX, whole_tensor, (void *)data, nmeta, meta_keys,
                        meta_values, err, errlen);
}

int pnetrt_st_write_pieces(const char *path, int n, const char *const *names, const int *ranks, const int64_t (*shapes)[8],
                           size_t piece, pnetrt_st_piece_fn fn, void *ctx, int nmeta, const char *const *meta_keys,
                           const char *const *meta_values, char *err, size_t errlen) {
    return write_pieces(path, n, names, ranks, shapes, NULL, piece, fn, ctx, nmeta, meta_keys, meta_values, err, errlen);
}
