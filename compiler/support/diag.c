/* Diagnostics: `file:line:col: error: msg`, the source line, and ^~~~ under the range. */
#include "diag.h"
#include "util.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void pn_diags_init(pn_diags *d, FILE *out) {
    memset(d, 0, sizeof *d);
    d->out = out;
    d->error_limit = 20;
}

void pn_diags_free(pn_diags *d) {
    for (int i = 0; i < d->nfiles; i++) {
        free(d->files[i].path);
        free(d->files[i].text);
        free(d->files[i].line_starts);
    }
    for (int i = 0; i < d->nitems; i++) free(d->items[i].msg);
    free(d->files);
    free(d->items);
    memset(d, 0, sizeof *d);
}

uint32_t pn_source_add(pn_diags *d, const char *path, char *text, size_t len) {
    if (d->nfiles == d->capfiles) {
        d->capfiles = d->capfiles ? d->capfiles * 2 : 8;
        d->files = pn_xrealloc(d->files, sizeof(pn_source) * (size_t)d->capfiles);
    }
    pn_source *s = &d->files[d->nfiles];
    memset(s, 0, sizeof *s);
    s->path = pn_xstrdup(path);
    s->text = text;
    s->len = len;
    return (uint32_t)d->nfiles++;
}

const pn_source *pn_source_get(const pn_diags *d, uint32_t file) {
    return file < (uint32_t)d->nfiles ? &d->files[file] : NULL;
}

static void compute_lines(pn_source *s) {
    if (s->line_starts) return;
    int n = 1;
    for (size_t i = 0; i < s->len; i++) n += s->text[i] == '\n';
    s->line_starts = pn_xmalloc(sizeof(uint32_t) * (size_t)n);
    s->nlines = 0;
    s->line_starts[s->nlines++] = 0;
    for (size_t i = 0; i < s->len; i++)
        if (s->text[i] == '\n') s->line_starts[s->nlines++] = (uint32_t)(i + 1);
}

static int line_index(pn_source *s, uint32_t off) {
    compute_lines(s);
    int lo = 0, hi = s->nlines - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (s->line_starts[mid] <= off) lo = mid; else hi = mid - 1;
    }
    return lo;
}

void pn_loc_linecol(pn_diags *d, pn_loc loc, int *line, int *col) {
    *line = *col = 0;
    if (loc.file >= (uint32_t)d->nfiles) return;
    pn_source *s = &d->files[loc.file];
    if (loc.off > s->len) loc.off = (uint32_t)s->len;
    int li = line_index(s, loc.off);
    *line = li + 1;
    *col = (int)(loc.off - s->line_starts[li]) + 1;
}

pn_loc pn_loc_span(pn_loc a, pn_loc b) {
    if (a.file != b.file || a.file == UINT32_MAX) return a;
    uint32_t lo = a.off < b.off ? a.off : b.off;
    uint32_t ea = a.off + a.len, eb = b.off + b.len;
    uint32_t hi = ea > eb ? ea : eb;
    return (pn_loc){a.file, lo, hi - lo};
}

static void add(pn_diags *d, pn_severity sev, pn_loc loc, const char *fmt, va_list ap) {
    if (sev == PN_SEV_NOTE) {
        if (d->dropping) return;
    } else if (sev == PN_SEV_WARNING) {
        d->dropping = d->no_warnings || d->fatal;
        if (d->dropping) return;
        d->nwarnings++;
    } else {
        d->dropping = d->fatal;
        if (d->dropping) return;
        d->nerrors++;
        if (sev == PN_SEV_FATAL) d->fatal = true;
    }
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    char *msg = pn_xmalloc((size_t)n + 1);
    vsnprintf(msg, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    if (d->nitems == d->capitems) {
        d->capitems = d->capitems ? d->capitems * 2 : 16;
        d->items = pn_xrealloc(d->items, sizeof(pn_diag) * (size_t)d->capitems);
    }
    d->items[d->nitems++] = (pn_diag){sev, loc, msg};
    if (sev == PN_SEV_ERROR && d->error_limit && d->nerrors >= d->error_limit) {
        char *m = pn_xstrdup("too many errors emitted, stopping now");
        if (d->nitems == d->capitems) {
            d->capitems *= 2;
            d->items = pn_xrealloc(d->items, sizeof(pn_diag) * (size_t)d->capitems);
        }
        d->items[d->nitems++] = (pn_diag){PN_SEV_FATAL, PN_NOLOC, m};
        d->fatal = true;
    }
}

#define DEFINE_REPORTER(fn, sev)                                  \
    void fn(pn_diags *d, pn_loc loc, const char *fmt, ...) {      \
        va_list ap;                                               \
        va_start(ap, fmt);                                        \
        add(d, sev, loc, fmt, ap);                                \
        va_end(ap);                                               \
    }
DEFINE_REPORTER(pn_error, PN_SEV_ERROR)
DEFINE_REPORTER(pn_warning, PN_SEV_WARNING)
DEFINE_REPORTER(pn_note, PN_SEV_NOTE)
DEFINE_REPORTER(pn_fatal, PN_SEV_FATAL)

enum { PN_SHOW_WIDTH = 160 };

/* Prints the source line of loc, then the caret line, windowed when the line is long. */
static void print_snippet(pn_diags *d, pn_loc loc) {
    pn_source *s = &d->files[loc.file];
    uint32_t off = loc.off > s->len ? (uint32_t)s->len : loc.off;
    int li = line_index(s, off);
    size_t start = s->line_starts[li], end = start;
    while (end < s->len && s->text[end] != '\n') end++;
    if (end > start && s->text[end - 1] == '\r') end--;
    size_t rend = (size_t)off + loc.len;
    if (rend > end) rend = end;
    if (rend <= off) rend = off + 1; /* a caret even at end of line */
    size_t wstart = start, wend = end;
    if (end - start > PN_SHOW_WIDTH) {
        wstart = off > start + PN_SHOW_WIDTH / 2 ? off - PN_SHOW_WIDTH / 2 : start;
        wend = wstart + PN_SHOW_WIDTH < end ? wstart + PN_SHOW_WIDTH : end;
    }
    /* A long line is shown as a window around the range, with "..." where it was cut. */
    bool cut_left = wstart > start, cut_right = wend < end;
    if (cut_left) fputs("...", d->out);
    for (size_t i = wstart; i < wend; i++) {
        unsigned char c = (unsigned char)s->text[i];
        fputc((c < 0x20 && c != '\t') || c == 0x7f ? '?' : c, d->out);
    }
    if (cut_right) fputs("...", d->out);
    fputc('\n', d->out);
    if (cut_left) fputs("   ", d->out);
    for (size_t i = wstart; i < rend && i <= wend; i++) {
        unsigned char c = i < s->len ? (unsigned char)s->text[i] : ' ';
        if (c >= 0x80 && c < 0xc0) continue; /* UTF-8 continuation byte */
        if (i < off) fputc(c == '\t' ? '\t' : ' ', d->out);
        else fputc(i == off ? '^' : '~', d->out);
    }
    fputc('\n', d->out);
}

void pn_diags_flush(pn_diags *d) {
    static const char *names[] = {"error", "warning", "note", "fatal error"};
    for (int i = 0; i < d->nitems; i++) {
        pn_diag *g = &d->items[i];
        if (g->loc.file < (uint32_t)d->nfiles) {
            int line, col;
            pn_loc_linecol(d, g->loc, &line, &col);
            fprintf(d->out, "%s:%d:%d: %s: %s\n", d->files[g->loc.file].path, line, col,
                    names[g->sev], g->msg);
            print_snippet(d, g->loc);
        } else {
            fprintf(d->out, "pnetc: %s: %s\n", names[g->sev], g->msg);
        }
        free(g->msg);
    }
    d->nitems = 0;
    fflush(d->out);
}
