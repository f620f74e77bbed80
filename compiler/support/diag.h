/* Source files and clang-style diagnostics, collected as data and printed per stage. */
#ifndef PN_DIAG_H
#define PN_DIAG_H
#include <stdint.h>
#include <stdio.h>
#include <stdbool.h>
#include <stddef.h>

/* A source range: file index plus byte offset and length. Lines are computed only to print. */
typedef struct pn_loc {
    uint32_t file, off, len;
} pn_loc;

#define PN_NOLOC ((pn_loc){UINT32_MAX, 0, 0})

typedef enum { PN_SEV_ERROR, PN_SEV_WARNING, PN_SEV_NOTE, PN_SEV_FATAL } pn_severity;

typedef struct pn_source {
    char *path;   /* as given, used in messages */
    char *text;   /* owned, NUL-terminated (may contain NULs) */
    size_t len;
    uint32_t *line_starts;  /* computed lazily */
    int nlines;
} pn_source;

typedef struct pn_diag {
    pn_severity sev;
    pn_loc loc;
    char *msg;
} pn_diag;

typedef struct pn_diags {
    pn_source *files;
    int nfiles, capfiles;
    pn_diag *items;  /* pending, printed by pn_diags_flush */
    int nitems, capitems;
    int nerrors, nwarnings;
    int error_limit;     /* 0 = unlimited */
    bool fatal;          /* too many errors or a fatal error: stages should stop */
    bool dropping;       /* the last error was dropped, so its notes are dropped too */
    bool no_warnings;
    FILE *out;
} pn_diags;

void pn_diags_init(pn_diags *d, FILE *out);
void pn_diags_free(pn_diags *d);
/* Takes ownership of text (malloc'ed, NUL-terminated). Returns the file index. */
uint32_t pn_source_add(pn_diags *d, const char *path, char *text, size_t len);
const pn_source *pn_source_get(const pn_diags *d, uint32_t file);
/* 1-based line and column of a byte offset. */
void pn_loc_linecol(pn_diags *d, pn_loc loc, int *line, int *col);

void pn_error(pn_diags *d, pn_loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void pn_warning(pn_diags *d, pn_loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void pn_note(pn_diags *d, pn_loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void pn_fatal(pn_diags *d, pn_loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prints and clears pending diagnostics. */
void pn_diags_flush(pn_diags *d);
/* Joins two ranges of one file into the range that covers both. */
pn_loc pn_loc_span(pn_loc a, pn_loc b);

#endif
