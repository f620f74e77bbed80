/* Helpers shared by the file formats: one-line errors, overflow-checked sizes, atomic writes. */
#define _POSIX_C_SOURCE 200809L
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Writes "path: message" to err, flattened to one line, and returns -1. */
int pnetrt_io_vfail(char *err, size_t errlen, const char *path, const char *fmt, va_list ap) {
    if (!err || errlen == 0) return -1;
    int n = snprintf(err, errlen, "%s: ", path);
    if (n >= 0 && (size_t)n < errlen) vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    for (char *p = err; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?'; /* names from files may hold newlines */
    return -1;
}

int pnetrt_io_fail(char *err, size_t errlen, const char *path, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    pnetrt_io_vfail(err, errlen, path, fmt, ap);
    va_end(ap);
    return -1;
}

/* a * b into *out; false on overflow. */
bool pnetrt_io_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    if (b != 0 && a > UINT64_MAX / b) return false;
    *out = a * b;
    return true;
}

/* Writes all of buf to fd, retrying short writes. */
bool pnetrt_io_write_full(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Writes the parts to a fresh file beside `path`, fsyncs it, and renames it over `path`, so readers
   see either the old file or the complete new one. */
int pnetrt_io_write_atomic(const char *path, int nparts, const void *const *bufs, const size_t *lens, char *err,
                        size_t errlen) {
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return pnetrt_io_fail(err, errlen, path, "cannot write it: it is a directory");
    size_t tlen = strlen(path) + 48;
    char *tmp = malloc(tlen);
    if (!tmp) return pnetrt_io_fail(err, errlen, path, "out of memory");
    int fd = -1;
    for (unsigned attempt = 0; fd < 0 && attempt < 100; attempt++) {
        snprintf(tmp, tlen, "%s.tmp.%ld.%u", path, (long)getpid(), attempt);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        /* The file is written through a temporary one beside it, so its directory must take new files. */
        int e = errno;
        int r = pnetrt_io_fail(err, errlen, path, "cannot write it: creating the temporary file %s beside it failed: %s",
                               tmp, strerror(e));
        free(tmp);
        return r;
    }
    const char *what = NULL;
    int e = 0;
    for (int i = 0; i < nparts && !what; i++)
        if (lens[i] && !pnetrt_io_write_full(fd, bufs[i], lens[i])) {
            what = "cannot write";
            e = errno;
        }
    if (!what && fsync(fd)) {
        what = "cannot sync";
        e = errno;
    }
    if (close(fd) && !what) {
        what = "cannot write";
        e = errno;
    }
    if (!what && rename(tmp, path)) {
        what = "cannot rename the temporary file into place";
        e = errno;
    }
    if (what) {
        unlink(tmp);
        free(tmp);
        return pnetrt_io_fail(err, errlen, path, "%s: %s", what, strerror(e));
    }
    free(tmp);
    /* make the rename itself durable; a failure here leaves a correct file, so it is not reported */
    char *dir = strdup(path);
    if (dir) {
        char *slash = strrchr(dir, '/');
        const char *d = ".";
        if (slash == dir) {
            d = "/";
        } else if (slash) {
            *slash = '\0';
            d = dir;
        }
        int dfd = open(d, O_RDONLY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        free(dir);
    }
    return 0;
}


bool pnetrt_io_same_file(const char *a, const char *b) {
    if (strcmp(a, b) == 0) return true;
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}
