/* Training data loaders of libpnetrt: a CSV file, a .npy pair or an MNIST-style IDX pair, each optionally
   gzip-compressed, read into one float matrix plus class ids or float targets. */
#ifndef PNETRT_DATA_H
#define PNETRT_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Example:
 *
 *     char err[256];
 *     pnetrt_data d;
 *     if (pnetrt_data_load("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 28 * 28,
 *                          PNETRT_LABELS_CLASS, 10, 0, &d, err, sizeof err)) {
 *         fprintf(stderr, "%s\n", err);
 *         return 1;
 *     }
 *     for (int64_t i = 0; i < d.n; i++) use(d.x + i * d.features, d.labels[i]);
 *     pnetrt_data_free(&d);
 *
 * Ownership: pnetrt_data_load fills a caller-owned pnetrt_data whose arrays it mallocs; pnetrt_data_free
 * frees them. The paths and err stay the caller's.
 *
 * Files. Only a regular file is read: a device, FIFO or socket is refused unopened, "PATH: not a regular file
 * (a character device)". A file may hold at most half of physical memory. A gzip file (found by its magic bytes
 * 1f 8b, whatever its name) is decompressed in memory first, to at most 4 GiB and at most half of physical
 * memory; both limits are checked as the bytes come. The format is then found from the content:
 *   - .npy ("\x93NUMPY"): X holds float32, float64, int32, int64 or uint8. The labels .npy holds int32, int64 or
 *     uint8 class ids of shape (n,) or (n, 1), or float32/float64 targets of shape (n, ...) with target_elems
 *     values per sample.
 *   - IDX (bytes 00 00 then type 08 = uint8 or 0D = float32, then the number of dims; big-endian dims): images
 *     like a .npy X. Labels: an idx1 uint8 file of class ids, or a float32 IDX of targets. The two files of a
 *     pair may mix .npy and IDX.
 *   - text is CSV: numbers written in decimal (strtod's hexadecimal forms, "0x3", are errors), comma-separated,
 *     no header; each row holds one sample: its `features` values in C order (a row of a f32[batch, 1, 28, 28]
 *     input holds 784 values, pixel (r, c) the value 28 r + c + 1), and the label: one integer column (class
 *     kind; "3.0" and "3e0" are accepted) or target_elems float columns (target kind), in the last column(s)
 *     by default, else in those from opts->label_column on. Blank lines are skipped; CRLF line ends and a
 *     UTF-8 BOM are accepted. labels_path must be NULL. Text means: the first line (at most its first 4 KiB)
 *     holds no control byte but tab and CR, and is well-formed UTF-8. A control byte on a later line is a
 *     "PATH:LINE:" error.
 *   - anything else is an error: an empty file "is empty"; other bytes are "not a .npy, IDX or CSV file (it
 *     starts with bytes ff fe 08 03)". A labels file must be .npy or IDX.
 * The shape rule, the same for every loader and for infer (pnetrt_data_read_npy): a file of shape
 * (n, d1, ..., dk) holds n samples of d1 * ... * dk values each, which must equal `features`; the dims need not
 * match the input's, so (n, 28, 28) and (n, 784) both feed f32[batch, 1, 28, 28].
 * The scaling rule, the same for every loader and for infer: uint8 samples (a .npy or IDX of bytes) for an f32
 * input are divided by 255, to [0, 1]; every other dtype, CSV text, and samples for an i32 input (ids) are
 * kept as they are. opts->no_scale keeps uint8 samples 0..255 too. source.scaled says what was done.
 * Every value must be finite, and class ids must lie in [0, classes).
 *
 * Errors: non-zero, with a one-line message in err (size errlen; err may be NULL): "PATH: problem",
 * "PATH:LINE: problem" for CSV, or "PATH: record N: problem" for a bad value of sample N (counting from 0).
 * Nothing aborts on bad input, and *out is left zeroed on failure. Callers that check the samples further name
 * a bad one the same way through pnetrt_data_where. A load that succeeds may leave a one-line warning in
 * out->warning (a CSV label column that looks like a feature column).
 */

#ifdef __cplusplus
extern "C" {
#endif

/* What the samples were in their file, and what the loader did to them. */
typedef struct pnetrt_data_source {
    const char *type; /* "uint8", "int32", "int64", "float32", "float64" or "text" (CSV); static; NULL before a load */
    bool scaled;      /* uint8 values were divided by 255 */
} pnetrt_data_source;

typedef struct pnetrt_data {
    int64_t n;            /* samples */
    int64_t features;     /* floats per sample */
    float *x;             /* n * features, malloc'd */
    int32_t *labels;      /* n class ids (kind PNETRT_LABELS_CLASS), else NULL */
    float *targets;       /* n * target_elems floats (kind PNETRT_LABELS_TARGET), else NULL */
    int64_t target_elems; /* 0 for kind PNETRT_LABELS_CLASS */
    int64_t *line;        /* n 1-based line numbers of a CSV file's samples (blank lines counted), else NULL */
    pnetrt_data_source source; /* what the samples were in the file, and whether they were scaled */
    char warning[512];    /* "" or a one-line warning, "PATH: ..." */
} pnetrt_data;

enum { PNETRT_LABELS_CLASS = 0, PNETRT_LABELS_TARGET = 1 };
enum { PNETRT_LABEL_LAST = -1 }; /* pnetrt_data_opts.label_column */

/* How samples are read. A zeroed struct, or NULL, gives the defaults. */
typedef struct pnetrt_data_opts {
    int64_t label_column; /* CSV: the label's column (a target's first), counted from 1; PNETRT_LABEL_LAST: the last
                             column(s); 0: the last, with a warning when the first looks likelier */
    bool no_scale;        /* keep uint8 samples 0..255 instead of dividing them by 255 */
    bool int_input;       /* the samples feed an i32 input (ids), whose values are never scaled */
    const char *input;    /* for messages, or NULL: the input the samples feed, "input 'x' f32[batch,1,28,28]" */
} pnetrt_data_opts;

/* Loads a data set. data_path: CSV, .npy or IDX (see above). labels_path: NULL for CSV, required for .npy and
   IDX. features: floats per sample the network expects (the product of the input's non-batch dims).
   kind: PNETRT_LABELS_CLASS with `classes` (target_elems ignored), or PNETRT_LABELS_TARGET with
   `target_elems` floats per sample (classes ignored). */
int pnetrt_data_load(const char *data_path, const char *labels_path, int64_t features, int kind, int64_t classes,
                     int64_t target_elems, pnetrt_data *out, char *err, size_t errlen);
/* pnetrt_data_load with opts (NULL: the defaults). */
int pnetrt_data_load_opts(const char *data_path, const char *labels_path, int64_t features, int kind,
                          int64_t classes, int64_t target_elems, const pnetrt_data_opts *opts, pnetrt_data *out,
                          char *err, size_t errlen);
/* Frees the arrays and clears *d; safe on a zeroed struct. */
void pnetrt_data_free(pnetrt_data *d);
/* Where sample i of d (loaded from path) was read, for a message: "PATH:LINE" for CSV, else "PATH: record I".
   Writes buf (size len) and returns it. */
const char *pnetrt_data_where(const pnetrt_data *d, const char *path, int64_t i, char *buf, size_t len);

/* Reads infer's .npy file (gzip-compressed or not) for an input of dtype PNETRT_F32 or PNETRT_I32 (io.h) that
   takes `features` values per sample when batched (its first dim is the batch), else `features` values in all.
   The shape and scaling rules above hold (opts: NULL or no_scale and input; int_input follows dtype), so a
   (3, 28, 28) uint8 file feeds f32[batch, 1, 28, 28] as 3 samples divided by 255; out keeps the file's shape.
   Float values outside float32's range, and for PNETRT_I32 values that are not int32 integers, are a
   "PATH: record N: ..." error; a file of another shape is "PATH: expected 784 values per sample (input 'x'
   f32[batch,1,28,28]), found uint8 of shape (3, 27, 28)". Fills *out like pnetrt_npy_read (free it with
   pnetrt_array_free) and *source (may be NULL). */
struct pnetrt_array;
int pnetrt_data_read_npy(const char *path, int dtype, int64_t features, bool batched, const pnetrt_data_opts *opts,
                         struct pnetrt_array *out, pnetrt_data_source *source, char *err, size_t errlen);

/* ---- internal: for tests ------------------------------------------------------------------ */

/* Lowers the most bytes read from one data file, or decompressed from it, from half of physical memory to n (0: back
   to the default). Not thread-safe. */
void pnetrt_data_set_max_bytes(uint64_t n);

/* ---- internal: implemented in npy.c for data.c -------------------------------------------- */


/* A .npy file parsed in place: data points into the caller's buffer, unconverted (little-endian). */
typedef struct pnetrt_npy_view {
    char descr[16]; /* as written, e.g. "<f8" or "|u1" */
    char kind;      /* 'f', 'i', 'u' or 'b' */
    int itemsize;   /* bytes per element */
    int rank;
    int64_t shape[8]; /* PNETRT_MAX_RANK */
    const unsigned char *data;
    size_t nbytes;
} pnetrt_npy_view;

/* Parses a whole .npy file (format 1.0, 2.0 or 3.0) held in buf[0..len): any little-endian or byte-order-free
   bool, int, uint or float dtype in C order. Errors read "path: problem" like pnetrt_npy_read's. */
int pnetrt_npy_parse(const void *buf, size_t len, const char *path, pnetrt_npy_view *out, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
