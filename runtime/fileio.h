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
/* Writes the parts to a temporary file beside path, fsyncs it and renames it into place. */
int pnetrt_io_write_atomic(const char *path, int nparts, const void *const *bufs, const size_t *lens, char *err,
                           size_t errlen);

#endif
