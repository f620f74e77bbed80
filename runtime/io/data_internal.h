/* The data loaders' private header: what data.c, data_file.c, data_array.c and data_csv.c share. Internal to
   runtime/io. A blob owns its bytes (pnetrt_data_blob_free); an array borrows its blob's. */
#ifndef PNETRT_DATA_INTERNAL_H
#define PNETRT_DATA_INTERNAL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pnetrt_data;      /* data.h */
struct pnetrt_data_opts; /* data.h */

/* ---- data_file.c: whole files and their formats ----------------------------------------- */

/* A file's bytes; buf[len] is always 0, so text can be scanned with strtod. gz: they were gunzipped. */
typedef struct {
    unsigned char *buf;
    size_t len;
    bool gz;
} blob;

enum { FMT_CSV, FMT_NPY, FMT_IDX, FMT_EMPTY, FMT_BINARY };

void pnetrt_data_blob_free(blob *b);
/* Reads path whole, and decompresses it if it starts with the gzip magic 1f 8b. Only a regular file is read (see
   pnetrt_open_regular), and never more than the data limit of it. */
int pnetrt_data_read_whole(const char *path, blob *out, char *err, size_t errlen);
/* A control byte: never part of a CSV file's text (tab, CR and LF are). */
bool pnetrt_data_is_control(unsigned c);
/* FMT_*: found from the content. */
int pnetrt_data_detect_format(const blob *b);
/* The error of a file whose format does not fit its role: an empty file, binary bytes of no known format, or (for
   a labels file) text. Returns -1. */
int pnetrt_data_wrong_format(const char *path, const blob *b, int fmt, bool labels, char *err, size_t errlen);

/* ---- data_array.c: .npy and IDX arrays ---------------------------------------------------- */

typedef enum { T_U8, T_I32, T_I64, T_F32, T_F64, T_F32BE } elem_type;

/* A parsed array, still in its file's encoding; data points into the file's blob. */
typedef struct {
    elem_type type;
    int rank;
    int64_t shape[8];
    const unsigned char *data;
} array;

/* What a parsed array is read as: the samples, class ids or targets; the dtypes it may hold differ. */
enum { ROLE_X, ROLE_CLASS, ROLE_TARGET };

/* Element i as a double; element i of an integer array. */
double pnetrt_data_get(const array *a, size_t i);
int64_t pnetrt_data_get_int(const array *a, size_t i);
/* Product of the dims after the first: values per sample. false on overflow. */
bool pnetrt_data_per_sample(const array *a, uint64_t *out);
/* Parses a .npy blob; role (ROLE_*) picks the message for a dtype it may not hold. */
int pnetrt_data_parse_npy(const char *path, const blob *b, int role, array *a, char *err, size_t errlen);
/* Parses a blob of format FMT_NPY or FMT_IDX. */
int pnetrt_data_parse_binary(const char *path, const blob *b, int fmt, int role, array *a, char *err,
                             size_t errlen);
/* "uint8", "float32", ... */
const char *pnetrt_data_type_name(elem_type t);
/* The shape rule (data.h): batched, a's dims after the first hold `features` values; else all of a's do. */
int pnetrt_data_check_shape(const char *path, const array *a, int64_t features, bool batched,
                            const struct pnetrt_data_opts *o, char *err, size_t errlen);
/* The scaling rule (data.h): whether a's values are divided by 255. o may be NULL. */
bool pnetrt_data_scales(const array *a, const struct pnetrt_data_opts *o);
/* The samples of X: n = shape[0], each `features` values converted to float, scaled by the rule. */
int pnetrt_data_take_x(const char *path, const array *a, int64_t features, const struct pnetrt_data_opts *o,
                       struct pnetrt_data *out, char *err, size_t errlen);
/* The labels of the n samples: class ids in [0, classes), or target_elems finite floats each. */
int pnetrt_data_take_labels(const char *path, const char *data_path, const array *a, int kind, int64_t classes,
                            int64_t target_elems, struct pnetrt_data *out, char *err, size_t errlen);

/* ---- data_csv.c ---------------------------------------------------------------------------- */

/* Reads a CSV blob: `features` values and the label(s) on each row, the label(s) in the column(s) o picks. */
int pnetrt_data_load_csv(const char *path, const blob *b, int64_t features, int kind, int64_t classes,
                         int64_t target_elems, const struct pnetrt_data_opts *o, struct pnetrt_data *out, char *err,
                         size_t errlen);

#endif
