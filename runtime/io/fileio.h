/* Helpers shared by the file formats of libpnetrt (npy.c, safetensors.c). Internal. */
#ifndef PNETRT_FILEIO_H
#define PNETRT_FILEIO_H
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* Writes "path: message" to err, flattened to one line, and returns -1. */
int pnetrt_io_fail(char *err, size_t errlen, const char *path, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
int pnetrt_io_vfail(char *err, size_t errlen, const char *path, const char *fmt, va_list ap);
/* a * b into *out; false on overflow. */
bool pnetrt_io_mul_u64(uint64_t a, uint64_t b, uint64_t *out);
/* Paths a and b name the same file: equal strings, or, when both exist, the same device and inode
 * (a link, a hard link, another spelling). */
bool pnetrt_io_same_file(const char *a, const char *b);
/* Writes all of buf to fd, retrying short writes. */
bool pnetrt_io_write_full(int fd, const void *buf, size_t n);
/* Every user-named file a writer replaces (checkpoints, --output, --trace, pnetc's outputs) goes
 * through pnetrt_io_out_open: a symbolic link is followed, and its target replaced, so the link stays;
 * a directory, device, FIFO or socket is refused ("not a regular file ..."), except the null device,
 * which is written in place; the data goes to a temporary file `.NAME.pnet-tmp.PID.N` beside the
 * target, which commit fsyncs and renames over it. A failure leaves the old file and no temporary
 * one; temporary files of processes that are gone are removed by the next write of the target. */
typedef struct pnetrt_io_out {
    char *target; /* the path with its links followed: the file replaced */
    char *tmp;    /* the temporary file written, or NULL for the null device (written in place) */
    int fd;       /* open for writing tmp (or target); the caller may close it and set -1 before commit */
    bool registered;
} pnetrt_io_out;
int pnetrt_io_out_open(pnetrt_io_out *o, const char *path, char *err, size_t errlen);
/* Syncs and closes the file and renames it over the target; on failure, as abort. path names it in err. */
int pnetrt_io_out_commit(pnetrt_io_out *o, const char *path, char *err, size_t errlen);
/* Closes and removes the temporary file: the target is untouched. */
void pnetrt_io_out_abort(pnetrt_io_out *o);
/* The reason in an error "PATH: [cannot write it: ]reason" of the functions above, for callers that
 * name the file their own way ("cannot write 'PATH': reason"). */
const char *pnetrt_io_reason(const char *err, const char *path);
/* Fails now, as a write of path would: opens and aborts. */
int pnetrt_io_check_output(const char *path, char *err, size_t errlen);
/* The parts, written through pnetrt_io_out_open and committed. */
int pnetrt_io_write_atomic(const char *path, int nparts, const void *const *bufs, const size_t *lens, char *err,
                           size_t errlen);
/* For the executables: SIGINT, SIGTERM and SIGHUP, where they have their default action, remove the
 * temporary file being written before they end the process. */
void pnetrt_io_remove_temp_on_signals(void);

/* What a file of mode m (st_mode) is, for messages: "a character device", "a FIFO", ... */
const char *pnetrt_io_kind(unsigned m);

/* Opens path for reading if it is a regular file: a character or block device, a FIFO or a socket is refused
   unopened, "PATH: not a regular file (a character device)", and a directory is "PATH: cannot open: Is a
   directory". Returns the descriptor, with the file's size in *size, or -1 with the message in err. */
int pnetrt_open_regular(const char *path, uint64_t *size, char *err, size_t errlen);

#endif
