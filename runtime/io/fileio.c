/* Helpers shared by the file formats: one-line errors, overflow-checked sizes, and atomic writes
 * of user-named files (links followed, devices refused, temporary files never left behind). */
#define _POSIX_C_SOURCE 200809L
#include "fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
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

/* The temporary file being written, for the signal handler of pnetrt_io_remove_temp_on_signals:
 * state 0 none, 1 being named, 2 named. One at a time; a second writer goes unregistered. */
static char active_tmp[PATH_MAX + 64];
static atomic_int active_state;

static void register_tmp(pnetrt_io_out *o) {
    if (!o->registered) {
        int expected = 0;
        if (strlen(o->tmp) >= sizeof active_tmp || !atomic_compare_exchange_strong(&active_state, &expected, 1)) return;
        o->registered = true;
    } else {
        atomic_store(&active_state, 1);
    }
    memcpy(active_tmp, o->tmp, strlen(o->tmp) + 1);
    atomic_store(&active_state, 2);
}

static void unregister_tmp(pnetrt_io_out *o) {
    if (o->registered) atomic_store(&active_state, 0);
    o->registered = false;
}

static void on_fatal_signal(int sig) {
    int e = errno;
    if (atomic_load(&active_state) == 2) unlink(active_tmp);
    errno = e;
    raise(sig); /* SA_RESETHAND: the default action now, which ends the process */
}

/* SIGINT, SIGTERM and SIGHUP, where they still have their default action, first remove the
 * temporary file being written, then end the process as before. */
void pnetrt_io_remove_temp_on_signals(void) {
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction old;
        if (sigaction(sigs[i], NULL, &old) || old.sa_handler != SIG_DFL) continue; /* nohup's SIG_IGN stays */
        struct sigaction sa = {0};
        sa.sa_handler = on_fatal_signal;
        sa.sa_flags = SA_RESETHAND | SA_NODEFER;
        sigemptyset(&sa.sa_mask);
        sigaction(sigs[i], &sa, NULL);
    }
}

/* path with its symbolic links followed (a dangling link gives the path it points at), malloc'd;
 * NULL with errno set on a loop or an unreadable link. */
static char *follow_links(const char *path) {
    char *p = strdup(path);
    for (int hops = 0; p; hops++) {
        struct stat sb;
        if (lstat(p, &sb) != 0 || !S_ISLNK(sb.st_mode)) return p;
        char buf[PATH_MAX];
        ssize_t n = hops < 40 ? readlink(p, buf, sizeof buf - 1) : -1;
        if (n < 0) {
            int e = hops < 40 ? errno : ELOOP;
            free(p);
            errno = e;
            return NULL;
        }
        buf[n] = '\0';
        const char *slash = strrchr(p, '/');
        size_t dlen = buf[0] == '/' || !slash ? 0 : (size_t)(slash - p) + 1; /* a relative link is read from its directory */
        char *next = malloc(dlen + (size_t)n + 1);
        if (next) {
            memcpy(next, p, dlen);
            memcpy(next + dlen, buf, (size_t)n + 1);
        }
        free(p);
        p = next;
    }
    errno = ENOMEM;
    return NULL;
}

const char *pnetrt_io_kind(unsigned m) {
    return S_ISCHR(m) ? "a character device" : S_ISBLK(m) ? "a block device" : S_ISFIFO(m) ? "a FIFO" : S_ISSOCK(m) ? "a socket" : "not a plain file";
}

/* Looked at before it is opened, so that a device is never opened and a FIFO never waited on; then checked
   again on the open descriptor, which is what is read. */
int pnetrt_open_regular(const char *path, uint64_t *size, char *err, size_t errlen) {
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode) && !S_ISDIR(sb.st_mode))
        return pnetrt_io_fail(err, errlen, path, "not a regular file (%s)", pnetrt_io_kind(sb.st_mode));
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return pnetrt_io_fail(err, errlen, path, "cannot open: %s", strerror(errno));
    const char *problem = NULL;
    int e = 0;
    if (fstat(fd, &sb)) {
        e = errno;
        problem = "cannot stat";
    } else if (S_ISDIR(sb.st_mode)) {
        e = EISDIR;
        problem = "cannot open";
    } else if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return pnetrt_io_fail(err, errlen, path, "not a regular file (%s)", pnetrt_io_kind(sb.st_mode));
    } else {
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK)) {
            e = errno;
            problem = "cannot open";
        }
    }
    if (problem) {
        close(fd);
        return pnetrt_io_fail(err, errlen, path, "%s: %s", problem, strerror(e));
    }
    *size = (uint64_t)sb.st_size;
    return fd;
}

/* The null device: writes to it are discarded, so it is written in place, never replaced. */
static bool is_null_device(const struct stat *sb) {
    struct stat nb;
    return S_ISCHR(sb->st_mode) && stat("/dev/null", &nb) == 0 && S_ISCHR(nb.st_mode) && nb.st_rdev == sb->st_rdev;
}

/* Removes the temporary files of an earlier write of dir/base whose process has gone (SIGKILL, a
 * crash, a power cut): `.BASE.pnet-tmp.PID.N` with no process PID. */
static void remove_stale(const char *dir, const char *base, size_t blen) {
    DIR *d = opendir(dir);
    if (!d) return;
    char prefix[NAME_MAX + 16];
    int plen = snprintf(prefix, sizeof prefix, ".%.*s.pnet-tmp.", (int)blen, base);
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *name = de->d_name;
        if (strncmp(name, prefix, (size_t)plen) != 0) continue;
        char *end;
        errno = 0;
        long pid = strtol(name + plen, &end, 10);
        if (errno || end == name + plen || *end != '.' || pid <= 0 || pid == (long)getpid()) continue;
        const char *n = end + 1;
        if (!*n || strspn(n, "0123456789") != strlen(n)) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive, or not ours to judge */
        struct stat sb;
        if (fstatat(dirfd(d), name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(sb.st_mode)) unlinkat(dirfd(d), name, 0);
    }
    closedir(d);
}

int pnetrt_io_out_open(pnetrt_io_out *o, const char *path, char *err, size_t errlen) {
    *o = (pnetrt_io_out){.fd = -1};
    if (!path || !*path) return pnetrt_io_fail(err, errlen, "", "no path to write to");
    char *target = follow_links(path);
    if (!target) return pnetrt_io_fail(err, errlen, path, "cannot follow the link: %s", strerror(errno));
    struct stat sb;
    bool exists = stat(target, &sb) == 0;
    char via[PATH_MAX + 32] = "";
    if (strcmp(target, path) != 0) snprintf(via, sizeof via, "links to %s, which is ", target);
    if (exists && S_ISDIR(sb.st_mode)) {
        free(target);
        return pnetrt_io_fail(err, errlen, path, "cannot write it: %sa directory", via[0] ? via : "it is ");
    }
    if (exists && is_null_device(&sb)) {
        o->fd = open(target, O_WRONLY | O_CLOEXEC);
        if (o->fd < 0) {
            int e = errno;
            free(target);
            return pnetrt_io_fail(err, errlen, path, "cannot write it: %s", strerror(e));
        }
        o->target = target;
        return 0;
    }
    if (exists && !S_ISREG(sb.st_mode)) {
        free(target);
        return pnetrt_io_fail(err, errlen, path, "%snot a regular file (%s); refusing to replace it", via, pnetrt_io_kind(sb.st_mode));
    }
    /* The temporary file goes beside the target, so the rename stays in one directory (one file system). */
    const char *slash = strrchr(target, '/');
    const char *base = slash ? slash + 1 : target;
    size_t blen = strlen(base) > 200 ? 200 : strlen(base); /* room for the suffix within NAME_MAX */
    size_t dlen = slash ? (size_t)(slash - target) : 0;
    char *dir = malloc(dlen + 2), *tmp = malloc(dlen + blen + 64);
    if (!dir || !tmp) {
        free(dir), free(tmp), free(target);
        return pnetrt_io_fail(err, errlen, path, "out of memory");
    }
    if (slash) {
        memcpy(dir, target, dlen ? dlen : 1);
        dir[dlen ? dlen : 1] = '\0';
    } else {
        strcpy(dir, ".");
    }
    remove_stale(dir, base, blen);
    o->target = target;
    o->tmp = tmp;
    int e = 0;
    for (unsigned attempt = 0; o->fd < 0 && attempt < 100; attempt++) {
        snprintf(tmp, dlen + blen + 64, "%.*s%s.%.*s.pnet-tmp.%ld.%u", (int)dlen, target, slash ? "/" : "", (int)blen, base,
                 (long)getpid(), attempt);
        register_tmp(o); /* named before it exists, so a signal never leaves it behind */
        o->fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        e = errno;
        if (o->fd < 0 && e != EEXIST) break;
    }
    free(dir);
    if (o->fd < 0) {
        /* The file is written through a temporary one beside it, so its directory must take new files. */
        pnetrt_io_fail(err, errlen, path, "cannot write it: creating the temporary file %s beside it failed: %s", tmp, strerror(e));
        unregister_tmp(o);
        free(o->tmp), free(o->target);
        *o = (pnetrt_io_out){.fd = -1};
        return -1;
    }
    if (exists) fchmod(o->fd, sb.st_mode & 07777); /* the replacement keeps the file's permissions */
    return 0;
}

void pnetrt_io_out_abort(pnetrt_io_out *o) {
    if (o->fd >= 0) close(o->fd);
    if (o->tmp) unlink(o->tmp);
    unregister_tmp(o);
    free(o->tmp);
    free(o->target);
    *o = (pnetrt_io_out){.fd = -1};
}

int pnetrt_io_out_commit(pnetrt_io_out *o, const char *path, char *err, size_t errlen) {
    const char *what = NULL;
    int e = 0;
    if (o->fd >= 0 && o->tmp && fsync(o->fd)) {
        what = "cannot sync";
        e = errno;
    }
    if (o->fd >= 0 && close(o->fd) && !what) {
        what = "cannot write";
        e = errno;
    }
    o->fd = -1;
    if (!what && o->tmp && rename(o->tmp, o->target)) {
        what = "cannot rename the temporary file into place";
        e = errno;
    }
    if (what) {
        pnetrt_io_out_abort(o);
        return pnetrt_io_fail(err, errlen, path, "%s: %s", what, strerror(e));
    }
    unregister_tmp(o);
    if (o->tmp) {
        /* make the rename itself durable; a failure here leaves a correct file, so it is not reported */
        char *slash = strrchr(o->target, '/');
        if (slash) *(slash == o->target ? slash + 1 : slash) = '\0';
        int dfd = open(slash ? o->target : ".", O_RDONLY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    free(o->tmp);
    free(o->target);
    *o = (pnetrt_io_out){.fd = -1};
    return 0;
}

const char *pnetrt_io_reason(const char *err, const char *path) {
    size_t n = strlen(path);
    if (strncmp(err, path, n) == 0 && strncmp(err + n, ": ", 2) == 0) err += n + 2;
    if (strncmp(err, "cannot write it: ", 17) == 0) err += 17;
    return err;
}

int pnetrt_io_check_output(const char *path, char *err, size_t errlen) {
    pnetrt_io_out o;
    if (pnetrt_io_out_open(&o, path, err, errlen)) return -1;
    pnetrt_io_out_abort(&o);
    return 0;
}

/* Writes the parts through pnetrt_io_out_open: readers see either the old file or the complete
 * new one, and a failure leaves the old one and no temporary file. */
int pnetrt_io_write_atomic(const char *path, int nparts, const void *const *bufs, const size_t *lens, char *err,
                           size_t errlen) {
    pnetrt_io_out o;
    if (pnetrt_io_out_open(&o, path, err, errlen)) return -1;
    for (int i = 0; i < nparts; i++)
        if (lens[i] && !pnetrt_io_write_full(o.fd, bufs[i], lens[i])) {
            int e = errno;
            pnetrt_io_out_abort(&o);
            return pnetrt_io_fail(err, errlen, path, "cannot write: %s", strerror(e));
        }
    return pnetrt_io_out_commit(&o, path, err, errlen);
}

bool pnetrt_io_same_file(const char *a, const char *b) {
    if (strcmp(a, b) == 0) return true;
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}
