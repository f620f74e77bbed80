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

/* Field col (from 0) of the line [ls, le), without its blanks: [*ts, *te). false when the line has fewer. */
static bool csv_field(const char *ls, const char *le, int64_t col, const char **ts, const char **te) {
    for (; col > 0; col--) {
        const char *comma = memchr(ls, ',', (size_t)(le - ls));
        if (!comma) return false;
        ls = comma + 1;
    }
    const char *fe = memchr(ls, ',', (size_t)(le - ls));
    if (!fe) fe = le;
    while (ls < fe && (*ls == ' ' || *ls == '\t'))
        ls++;
    while (fe > ls && (fe[-1] == ' ' || fe[-1] == '\t'))
        fe--;
    *ts = ls;
    *te = fe;
    return true;
}

/* A class id: an integer written in decimal ("3", "3.0", "3e0"), in [0, classes). */
static bool is_class(const char *ts, const char *te, int64_t classes, int64_t *id) {
    char *stop;
    if (ts == te || !starts_number(ts)) return false;
    double v = strtod(ts, &stop);
    if (stop != te || !is_decimal(ts, te) || !isfinite(v) || v != floor(v) || v < 0 || v >= (double)classes)
        return false;
    *id = (int64_t)v;
    return true;
}

/* Whether column col holds a class id on every non-blank line, and how many distinct ids (counted for at most
   2^24 classes, else 0). */
static bool column_of_classes(const char *start, const char *end, int64_t col, int64_t classes, int64_t *distinct) {
    unsigned char *seen = classes <= (1 << 24) ? calloc((size_t)(classes + 7) / 8, 1) : NULL;
    bool ok = true;
    *distinct = 0;
    const char *le, *ts, *te;
    for (const char *p = start; ok && p < end;) {
        const char *ls = p;
        p = next_line(p, end, &le);
        if (is_blank(ls, le)) continue;
        int64_t id;
        ok = csv_field(ls, le, col, &ts, &te) && is_class(ts, te, classes, &id);
        if (ok && seen && !(seen[id / 8] & 1u << (id % 8))) {
            seen[id / 8] |= (unsigned char)(1u << (id % 8));
            ++*distinct;
        }
    }
    free(seen);
    return ok;
}

/* What a bad label's message adds: where labels are read from, and a column that would do. */
static void label_hint(char *buf, size_t len, const char *start, const char *end, int64_t lc, int64_t cols,
                       int64_t classes) {
    int64_t d, other = lc == cols - 1 ? 0 : cols - 1;
    int n = snprintf(buf, len, "; labels are read from column %" PRId64 "%s", lc + 1,
                     lc == cols - 1 ? " (the last)" : lc == 0 ? " (the first)" : "");
    if (n < 0 || (size_t)n >= len) return;
    if (column_of_classes(start, end, other, classes, &d))
        snprintf(buf + n, len - (size_t)n, ", but column %" PRId64 " holds class ids on every row: give --label-column %s",
                 other + 1, other == 0 ? "first" : "last");
    else
        snprintf(buf + n, len - (size_t)n, "; --label-column first|last|N reads another");
}

/* row := field (',' field)*    field := [ \t]* number [ \t]*
   with `features` values and the label(s): the last column(s), or those from o->label_column on */
int pnetrt_data_load_csv(const char *path, const blob *b, int64_t features, int kind, int64_t classes,
                         int64_t target_elems, const pnetrt_data_opts *o, pnetrt_data *out, char *err,
                         size_t errlen) {
    const char *start = (const char *)b->buf, *end = start + b->len, *le;
    if (b->len >= 3 && !memcmp(start, "\xEF\xBB\xBF", 3)) start += 3;
    int64_t label_cols = kind == PNETRT_LABELS_CLASS ? 1 : target_elems;
    if (features > INT64_MAX - label_cols) return pnetrt_io_fail(err, errlen, path, "too many columns");
    int64_t cols = features + label_cols;
    const char *lwhat = kind == PNETRT_LABELS_CLASS ? "label" : label_cols == 1 ? "target" : "targets";
    /* lc: the first label column, from 0 */
    int64_t lc = o && o->label_column > 0 ? o->label_column - 1 : features;
    if (lc > features)
        return pnetrt_io_fail(err, errlen, path,
                              "a row holds %" PRId64 " columns (%" PRId64 " features + %" PRId64 " %s), so the %s column "
                              "must lie in [1, %" PRId64 "], not %" PRId64,
                              cols, features, label_cols, lwhat, kind == PNETRT_LABELS_CLASS ? "label" : "first target",
                              features + 1, o->label_column);

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
                            cols, features, label_cols, lwhat, found);
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
            bool is_label = c >= lc && c < lc + label_cols;
            int64_t f = c < lc ? c : c - label_cols; /* the feature of a column that is not a label */
            double v;
            if (!is_label || kind == PNETRT_LABELS_TARGET) {
                const char *problem = csv_number(ts, fe, &v);
                if (problem)
                    return csv_fail(
                        err, errlen, path, line, "field %" PRId64 " '%.*s%s' %s%s", c + 1, flen, ts, more, problem,
                        row == 0 && c == 0 && !strcmp(problem, "is not a number") ? " (a CSV file has no header row)"
                                                                                  : "");
                if (!is_label)
                    out->x[row * features + f] = (float)v;
                else
                    out->targets[row * target_elems + (c - lc)] = (float)v;
            } else {
                char *stop, hint[256];
                v = strtod(ts, &stop); /* any finite integer written in decimal ("3", "3.0", "3e0"); then its range */
                bool integer = stop == fe && starts_number(ts) && isfinite(v) && v == floor(v);
                if (integer && !is_decimal(ts, fe))
                    return csv_fail(err, errlen, path, line, "label '%.*s%s' is not a decimal integer", flen, ts,
                                    more);
                /* a label that cannot be one: say where labels are read from, and which column would do */
                if (!integer || v < 0 || v >= (double)classes) {
                    label_hint(hint, sizeof hint, start, end, lc, cols, classes);
                    if (!integer)
                        return csv_fail(err, errlen, path, line, "label '%.*s%s' is not an integer%s", flen, ts, more,
                                        hint);
                    return csv_fail(err, errlen, path, line, "label '%.*s%s' is out of range [0, %" PRId64 ")%s", flen,
                                    ts, more, classes, hint);
                }
                out->labels[row] = (int32_t)v;
            }
            fs = next;
        }
        row++;
    }
    /* The label column read by default, the last, may be a feature while the first column is the label: say so
       when the first column also holds class ids on every row, and more distinct ones than the last. */
    int64_t first, last;
    if (kind == PNETRT_LABELS_CLASS && !(o && o->label_column) && features >= 1 && classes > 1 &&
        column_of_classes(start, end, 0, classes, &first) && column_of_classes(start, end, cols - 1, classes, &last) &&
        first > last)
        snprintf(out->warning, sizeof out->warning,
                 "%s: column %" PRId64 " holds the labels (%" PRId64 " distinct class%s), but column 1 also holds class "
                 "ids on every row (%" PRId64 " distinct); if the labels are there, give --label-column first",
                 path, cols, last, last == 1 ? "" : "es", first);
    return 0;
}
