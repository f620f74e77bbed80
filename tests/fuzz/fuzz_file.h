/* For the fuzz targets whose readers take a path: the input goes into an in-memory file (memfd) that is opened
   again through /proc/self/fd, so nothing touches the disk and every run starts from a fresh file. */
#ifndef PNET_FUZZ_FILE_H
#define PNET_FUZZ_FILE_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct fuzz_file {
    int fd;
    char path[64];
} fuzz_file;

/* Replaces the file's content by data[0..size); aborts only if the harness itself cannot work. */
static inline void fuzz_file_set(fuzz_file *f, const char *name, const uint8_t *data, size_t size) {
    if (!f->path[0]) {
        f->fd = memfd_create(name, 0);
        if (f->fd < 0) abort();
        snprintf(f->path, sizeof f->path, "/proc/self/fd/%d", f->fd);
    }
    if (ftruncate(f->fd, 0)) abort();
    size_t done = 0;
    while (done < size) {
        ssize_t w = pwrite(f->fd, data + done, size - done, (off_t)done);
        if (w <= 0) abort();
        done += (size_t)w;
    }
}

#endif
