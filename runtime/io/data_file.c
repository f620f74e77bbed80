/* The data loaders' files: each read whole into memory, within a size limit, gunzipped if its first bytes say so;
   then its format is found from its content. */
#define _POSIX_C_SOURCE 200809L
#define ZLIB_CONST
#include "data.h"
#include "data_internal.h"
#include "fileio.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define DATA_MAX_GUNZIP ((uint64_t)4 << 30) /* bound on a decompressed file: a bad file must not eat memory */
#define DATA_LIMIT_WHY "half of physical memory"
#define NPY_MAGIC "\x93NUMPY"

/* ---- whole files ------------------------------------------------------------------------- */

void pnetrt_data_blob_free(blob *b) {
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
int pnetrt_data_read_whole(const char *path, blob *out, char *err, size_t errlen) {
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
            pnetrt_data_blob_free(out);
            return -1;
        }
        out->gz = true;
    }
    return 0;
}

#define DATA_TEXT_PROBE 4096 /* bytes of a first line looked at to tell text from binary */

/* A control byte: never part of a CSV file's text (tab, CR and LF are). */
bool pnetrt_data_is_control(unsigned c) {
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
            if (pnetrt_data_is_control(c)) return false;
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
int pnetrt_data_detect_format(const blob *b) {
    if (b->len == 0) return FMT_EMPTY;
    size_t m = b->len < 6 ? b->len : 6;
    if (!memcmp(b->buf, NPY_MAGIC, m)) return FMT_NPY; /* a cut-off magic is a truncated .npy */
    if (b->len >= 2 && b->buf[0] == 0 && b->buf[1] == 0) return FMT_IDX;
    return looks_text(b) ? FMT_CSV : FMT_BINARY;
}

/* The error of a file whose format does not fit its role: an empty file, binary bytes of no known format, or (for
   a labels file) text. */
int pnetrt_data_wrong_format(const char *path, const blob *b, int fmt, bool labels, char *err, size_t errlen) {
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
