/* The data loaders' CSV files: numbers in decimal, comma-separated, the label(s) in the last column(s). */
#define _POSIX_C_SOURCE 200809L
#include "data.h"
#include "data_internal.h"
#include "fileio.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
int pnetrt_data_load_csv(const char *path, const blob *b, int64_t features, int kind, int64_t classes,
                         int64_t target_elems, const pnetrt_data_opts *o, pnetrt_data *out, char *err,
                         size_t errlen) {
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
    out->source.type = "text";

    int64_t line = 0, row = 0;
    for (const char *p = start; p < end;) {
        const char *ls = p;
        p = next_line(p, end, &le);
        line++;
        for (const char *q = ls; q < le; q++)
            if (pnetrt_data_is_control((unsigned char)*q))
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
