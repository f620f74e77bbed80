/* Assertion failure, checked allocation, file reading and edit distance. */
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void pn_assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "pnetc: internal error: %s:%d: assertion '%s' failed\n", file, line, expr);
    abort();
}

void *pn_xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "pnetc: fatal error: out of memory\n");
        exit(1);
    }
    return p;
}

void *pn_xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        fprintf(stderr, "pnetc: fatal error: out of memory\n");
        exit(1);
    }
    return p;
}

void *pn_xrealloc(void *p, size_t n) {
    p = realloc(p, n ? n : 1);
    if (!p) {
        fprintf(stderr, "pnetc: fatal error: out of memory\n");
        exit(1);
    }
    return p;
}

char *pn_xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(pn_xmalloc(n), s, n);
}

char *pn_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        errno = EISDIR;
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = pn_xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap) buf = pn_xrealloc(buf, cap *= 2);
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

/* Optimal string alignment distance: insertions, deletions, substitutions and swaps of two
 * adjacent characters each cost 1. */
int pn_edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return 1000;
    int d[65][65];
    for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            int best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

const char *pn_closest(const char *name, const char *const *cands, int n) {
    const char *best = NULL;
    int len = (int)strlen(name), bestd = (len + 2) / 3 + 1;
    for (int i = 0; i < n; i++) {
        if (!cands[i] || strcmp(cands[i], name) == 0) continue;
        int dist = pn_edit_distance(name, cands[i]);
        if (dist < bestd) {
            bestd = dist;
            best = cands[i];
        }
    }
    return best;
}
