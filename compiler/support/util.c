/* Assertion failure, checked allocation, heap strings, file reading and edit distance. */
#include "util.h"
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

char *pn_xvasprintf(const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    PN_ASSERT(n >= 0);
    char *p = pn_xmalloc((size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    return p;
}

char *pn_xasprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *p = pn_xvasprintf(fmt, ap);
    va_end(ap);
    return p;
}

/* Why a file cannot be read as a source, into err; false when it can. */
static bool refuse(const struct stat *st, size_t limit, char *err, size_t errlen) {
    if (S_ISDIR(st->st_mode)) snprintf(err, errlen, "%s", strerror(EISDIR));
    else if (!S_ISREG(st->st_mode)) snprintf(err, errlen, "not a regular file (%s)", pnetrt_io_kind(st->st_mode));
    else if ((uintmax_t)st->st_size > limit) snprintf(err, errlen, "file is larger than %zu MiB", limit >> 20);
    else return false;
    return true;
}

char *pn_read_file(const char *path, size_t limit, size_t *len, char *err, size_t errlen) {
    PN_ASSERT(limit % ((size_t)1 << 20) == 0 && limit < SIZE_MAX - 2);
    bool in = strcmp(path, "-") == 0, failed = false;
    struct stat st;
    err[0] = 0;
    int fd = STDIN_FILENO;
    if (!in) {
        /* The kind first: opening a FIFO blocks until something writes to it, and opening a
         * device may do something. O_NONBLOCK covers a file swapped for a FIFO meanwhile. */
        if (stat(path, &st) != 0) return snprintf(err, errlen, "%s", strerror(errno)), NULL;
        if (refuse(&st, limit, err, errlen)) return NULL;
        fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) return snprintf(err, errlen, "%s", strerror(errno)), NULL;
        if (fstat(fd, &st) != 0 || refuse(&st, limit, err, errlen)) {
            if (!*err) snprintf(err, errlen, "%s", strerror(errno));
            close(fd);
            return NULL;
        }
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    }
    /* Standard input may be a pipe or a device: read at most limit + 1 bytes, whatever it is. */
    size_t cap = 4096, n = 0;
    char *buf = pn_xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap) buf = pn_xrealloc(buf, cap = cap * 2 < limit + 2 ? cap * 2 : limit + 2);
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            snprintf(err, errlen, "%s", strerror(errno));
            failed = true;
            break;
        }
        n += (size_t)r;
        if (r == 0 || n > limit) break;
    }
    if (!in) close(fd);
    if (!failed && n > limit) {
        snprintf(err, errlen, "file is larger than %zu MiB", limit >> 20);
        failed = true;
    }
    if (failed) {
        free(buf);
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
