/* File formats of libpnetrt: NumPy .npy arrays (inputs, outputs) and safetensors files (weights). */
#ifndef PNETRT_IO_H
#define PNETRT_IO_H

#include <stddef.h>
#include <stdint.h>

/*
 * Example:
 *
 *     char err[256];
 *     pnetrt_array x;
 *     if (pnetrt_npy_read("x.npy", &x, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
 *     pnetrt_st *st;
 *     if (pnetrt_st_open("w.safetensors", &st, err, sizeof err)) { ... }
 *     float w[128 * 64];
 *     if (pnetrt_st_read_f32(st, "fc1.weight", 2, (int64_t[]){128, 64}, w, err, sizeof err)) { ... }
 *     pnetrt_st_close(st);
 *     pnetrt_array_free(&x);
 *
 * Ownership: pnetrt_npy_read fills a caller-owned pnetrt_array whose data it mallocs (free it with
 * pnetrt_array_free); a pnetrt_st owns its names until pnetrt_st_close; all other pointers stay the caller's.
 *
 * Every int-returning function returns 0 on success and non-zero on failure, and then writes a one-line
 * message "FILE: problem" to err (size errlen; err may be NULL). Nothing aborts on bad input.
 * Data is read and written little-endian, which must be the host's byte order.
 */

#ifdef __cplusplus
extern "C" {
#endif

#define PNETRT_MAX_RANK 8

typedef enum { PNETRT_F32 = 0, PNETRT_I32 = 1 } pnetrt_dtype;

/* A dense C-order array; nbytes == product(shape[0..rank)) * 4. */
typedef struct pnetrt_array {
    pnetrt_dtype dtype;
    int rank;
    int64_t shape[PNETRT_MAX_RANK];
    void *data;
    size_t nbytes;
} pnetrt_array;

/* Reads a .npy file (format 1.0, 2.0 or 3.0) holding little-endian '<f4' or '<i4' data in C order. Only a regular
   file is read: a device or FIFO is "PATH: not a regular file (a FIFO)", never opened or waited on. */
int pnetrt_npy_read(const char *path, pnetrt_array *out, char *err, size_t errlen);
/* Writes a .npy 1.0 file like numpy.save; atomic: a temporary file beside `path`, fsync, then rename. */
int pnetrt_npy_write(const char *path, const pnetrt_array *a, char *err, size_t errlen);
/* Frees a->data and clears *a; safe on a zeroed array. */
void pnetrt_array_free(pnetrt_array *a);

typedef struct pnetrt_st pnetrt_st; /* an open safetensors file */

/* Opens `path` and validates its whole header; tensor data is read later, on demand. */
int pnetrt_st_open(const char *path, pnetrt_st **out, char *err, size_t errlen);
/* Number of tensors (not counting __metadata__), and the name of tensor i in file order (NULL if out of range). */
int pnetrt_st_count(const pnetrt_st *st);
const char *pnetrt_st_name(const pnetrt_st *st, int i);
/* The shape of tensor `name` into *rank and shape[0..*rank); -1 (and nothing written) if there is no such tensor. */
int pnetrt_st_shape(const pnetrt_st *st, const char *name, int *rank, int64_t shape[PNETRT_MAX_RANK]);
/* Finds `name`, checks that its shape is exactly shape[0..rank), converts F32/F16/BF16/F64 to float into dst. */
int pnetrt_st_read_f32(pnetrt_st *st, const char *name, int rank, const int64_t *shape, float *dst, char *err,
                       size_t errlen);
/* Like pnetrt_st_read_f32, but only elements [first, first + count) of the tensor (in C order), into
   dst[0..count): a large tensor is read a slice at a time, straight from the file. */
int pnetrt_st_read_f32_range(pnetrt_st *st, const char *name, int rank, const int64_t *shape, int64_t first,
                             int64_t count, float *dst, char *err, size_t errlen);
/* Looks every tensor up as prefix + name from now on (PyTorch's "model.fc1.weight" as "fc1.weight"); NULL or ""
   for none. A name that is missing but that the file holds under a prefix gets the error "missing tensor
   'fc1.weight'; the file has 'model.fc1.weight': its names carry the prefix 'model.' (give --weights-prefix model.)". */
int pnetrt_st_set_prefix(pnetrt_st *st, const char *prefix, char *err, size_t errlen);
/* The tensors no read has asked for, except those whose names start with skip (may be NULL): their count, and
   the first 8 names into buf as "'a', 'b' and 3 more" (buf may be NULL). */
int pnetrt_st_unused(const pnetrt_st *st, const char *skip, char *buf, size_t len);
/* The string value of key in the file's __metadata__, or NULL. Valid until pnetrt_st_close. */
const char *pnetrt_st_meta(const pnetrt_st *st, const char *key);
/* Closes the file and frees st; safe on NULL. */
void pnetrt_st_close(pnetrt_st *st);
/* Writes n F32 tensors in the given order, with an optional __metadata__ object of string pairs (may be
   NULL/0), atomically (temp + fsync + rename); the result loads with Python's safetensors. */
int pnetrt_st_write(const char *path, int n, const char *const *names, const int *ranks, const int64_t (*shapes)[8],
                    const float *const *data, int nmeta, const char *const *meta_keys, const char *const *meta_values,
                    char *err, size_t errlen);
/* Tensor i's bytes [off, off + len) for pnetrt_st_write_pieces, valid until the next call; NULL
   with why set when they cannot be had. */
typedef const void *(*pnetrt_st_piece_fn)(void *ctx, int i, size_t off, size_t len, char *why, size_t whylen);
/* pnetrt_st_write with the tensors' bytes from fn, asked for in file order, in pieces of at most
   `piece` bytes (whole tensors need never be in memory at once). A failure from fn or the write
   stops the asking; the caller learns how far it got from its own ctx. */
int pnetrt_st_write_pieces(const char *path, int n, const char *const *names, const int *ranks, const int64_t (*shapes)[8],
                           size_t piece, pnetrt_st_piece_fn fn, void *ctx, int nmeta, const char *const *meta_keys,
                           const char *const *meta_values, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
