/* Unit tests of the training data loaders: CSV, .npy and IDX files, gzip-compressed or not, and every error. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define FILE_UTIL_PREFIX "pnetrt_data"
#include "file_util.h"
#include "data.h"
#include "io.h"

/* ---- helpers ------------------------------------------------------------------------------ */



static void write_text(const char *path, const char *text) {
    write_bytes(path, text, strlen(text));
}

/* Appends one gzip member holding data to path (mode "wb" starts the file afresh). */
static void write_gzip(const char *path, const char *mode, const void *data, size_t len) {
    gzFile g = gzopen(path, mode);
    assert_non_null(g);
    if (len) assert_int_equal(gzwrite(g, data, (unsigned)len), (int)len);
    assert_int_equal(gzclose(g), Z_OK);
}



/* An IDX file: 00 00 type ndim, big-endian dims, then `len` bytes of data; its size in bytes is returned in buf. */
static size_t idx_bytes(unsigned char *buf, int type, int ndim, const uint32_t *dims, const void *data, size_t len) {
    buf[0] = buf[1] = 0;
    buf[2] = (unsigned char)type;
    buf[3] = (unsigned char)ndim;
    for (int i = 0; i < ndim; i++)
        for (int k = 0; k < 4; k++)
            buf[4 + 4 * i + k] = (unsigned char)(dims[i] >> (24 - 8 * k));
    memcpy(buf + 4 + 4 * ndim, data, len);
    return 4 + 4 * (size_t)ndim + len;
}

/* Two uint8 images of 2x3 and their labels, as MNIST stores them. */
static const unsigned char idx_pixels[12] = {0, 255, 51, 102, 0, 0, 255, 255, 255, 1, 2, 3};
static const unsigned char idx_classes[2] = {7, 2};

static void make_idx_pair(const char *images, const char *labels, bool gz) {
    unsigned char buf[256];
    size_t n = idx_bytes(buf, 0x08, 3, (uint32_t[]){2, 2, 3}, idx_pixels, sizeof idx_pixels);
    if (gz)
        write_gzip(images, "wb", buf, n);
    else
        write_bytes(images, buf, n);
    n = idx_bytes(buf, 0x08, 1, (uint32_t[]){2}, idx_classes, sizeof idx_classes);
    if (gz)
        write_gzip(labels, "wb", buf, n);
    else
        write_bytes(labels, buf, n);
}

/* Fails unless the load fails with a one-line message "path: ..." (or "path:line: ..." when line > 0) containing
   want, and leaves the struct zeroed. */
static void expect_error(const char *data, const char *labels, int64_t features, int kind, int64_t classes,
                         int64_t target_elems, const char *path, int line, const char *want) {
    char err[512] = "", prefix[PATH_MAX + 32];
    pnetrt_data d;
    memset(&d, 0x5a, sizeof d);
    int rc = pnetrt_data_load(data, labels, features, kind, classes, target_elems, &d, err, sizeof err);
    if (rc == 0) fail_msg("expected an error containing \"%s\", got success", want);
    if (line > 0)
        snprintf(prefix, sizeof prefix, "%s:%d: ", path, line);
    else
        snprintf(prefix, sizeof prefix, "%s: ", path);
    if (strncmp(err, prefix, strlen(prefix))) fail_msg("message \"%s\" does not start with \"%s\"", err, prefix);
    if (!strstr(err, want)) fail_msg("message \"%s\" lacks \"%s\"", err, want);
    if (strchr(err, '\n')) fail_msg("message \"%s\" spans lines", err);
    pnetrt_data zero;
    memset(&zero, 0, sizeof zero);
    assert_memory_equal(&d, &zero, sizeof d);
}

/* A CSV file of class rows with 3 features and 4 classes that must fail at `line` with `want`. */
static void expect_csv_error(const char *text, int line, const char *want) {
    const char *path = P("bad.csv");
    write_text(path, text);
    expect_error(path, NULL, 3, PNETRT_LABELS_CLASS, 4, 0, path, line, want);
}

static void load_ok(const char *data, const char *labels, int64_t features, int kind, int64_t classes,
                    int64_t target_elems, pnetrt_data *d) {
    char err[512] = "";
    int rc = pnetrt_data_load(data, labels, features, kind, classes, target_elems, d, err, sizeof err);
    if (rc) fail_msg("load failed: %s", err);
    assert_string_equal(err, "");
}

static void assert_floats(const float *got, const float *want, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i]) fail_msg("value %zu: got %.9g, want %.9g", i, (double)got[i], (double)want[i]);
}


/* ---- CSV ---------------------------------------------------------------------------------- */

static void test_csv_good(void **state) {
    (void)state;
    const char *path = P("good.csv");
    /* a BOM, spaces, CRLF, a float-formatted label as numpy.savetxt writes it, a blank line, trailing blanks */
    write_text(path, "\xEF\xBB\xBF"
                     "1, 2.5 ,-3,0\r\n"
                     "\n"
                     "4e-1,5,6,2.000000000000000000e+00\r\n"
                     "+16,0,1e3,+3\n"
                     "\n  \n");
    pnetrt_data d;
    load_ok(path, NULL, 3, PNETRT_LABELS_CLASS, 4, 0, &d);
    assert_int_equal(d.n, 3);
    assert_int_equal(d.features, 3);
    assert_floats(d.x, (const float[]){1, 2.5f, -3, 0.4f, 5, 6, 16, 0, 1000}, 9);
    assert_int_equal(d.labels[0], 0);
    assert_int_equal(d.labels[1], 2);
    assert_int_equal(d.labels[2], 3);
    assert_null(d.targets);
    assert_int_equal(d.target_elems, 0);
    pnetrt_data_free(&d);
    assert_null(d.x);
    pnetrt_data_free(&d); /* safe twice, and on a zeroed struct */
    pnetrt_data zero = {0};
    pnetrt_data_free(&zero);
    pnetrt_data_free(NULL);
}

static void test_csv_no_final_newline(void **state) {
    (void)state;
    const char *path = P("nonl.csv");
    write_text(path, "1,2,3,1\n4,5,6,0");
    pnetrt_data d;
    load_ok(path, NULL, 3, PNETRT_LABELS_CLASS, 2, 0, &d);
    assert_int_equal(d.n, 2);
    assert_floats(d.x, (const float[]){1, 2, 3, 4, 5, 6}, 6);
    assert_int_equal(d.labels[1], 0);
    pnetrt_data_free(&d);
}

static void test_csv_targets(void **state) {
    (void)state;
    const char *path = P("reg.csv");
    write_text(path, "1,2,0.5,-0.5\n3,4,1.5,2\n");
    pnetrt_data d;
    load_ok(path, NULL, 2, PNETRT_LABELS_TARGET, 0, 2, &d);
    assert_int_equal(d.n, 2);
    assert_null(d.labels);
    assert_int_equal(d.target_elems, 2);
    assert_floats(d.x, (const float[]){1, 2, 3, 4}, 4);
    assert_floats(d.targets, (const float[]){0.5f, -0.5f, 1.5f, 2}, 4);
    pnetrt_data_free(&d);

    write_text(path, "1,2,0.5\n");
    expect_error(path, NULL, 2, PNETRT_LABELS_TARGET, 0, 2, path, 1,
                 "expected 4 columns (2 features + 2 targets), found 3");
    write_text(path, "1,2,0.5,x\n");
    expect_error(path, NULL, 2, PNETRT_LABELS_TARGET, 0, 2, path, 1, "field 4 'x' is not a number");
    write_text(path, "1,2,0.5,1e39\n");
    expect_error(path, NULL, 2, PNETRT_LABELS_TARGET, 0, 2, path, 1, "field 4 '1e39' is not a finite float32 value");
}

static void test_csv_columns(void **state) {
    (void)state;
    expect_csv_error("1,2,3,0\n1,2,0\n", 2, "expected 4 columns (3 features + 1 label), found 3");
    expect_csv_error("1,2,3,0\n\n1,2,3,4,0\n", 3, "expected 4 columns (3 features + 1 label), found 5");
    expect_csv_error("1;2;3;0\n", 1, "expected 4 columns (3 features + 1 label), found 1");
    expect_csv_error("1,2,3,\n", 1, "field 4 is empty");
    expect_csv_error("1,,3,0\n", 1, "field 2 is empty");
}

static void test_csv_not_numbers(void **state) {
    (void)state;
    expect_csv_error("1,2,3,0\n1,abc,3,0\n", 2, "field 2 'abc' is not a number");
    expect_csv_error("1,2,3,0\n1,2 5,3,0\n", 2, "field 2 '2 5' is not a number");
    expect_csv_error("x,y,z,label\n1,2,3,0\n", 1, "field 1 'x' is not a number (a CSV file has no header row)");
    expect_csv_error("1,2,3,0\n1,nan,3,0\n", 2, "field 2 'nan' is not a finite float32 value");
    expect_csv_error("1,2,-inf,0\n", 1, "field 3 '-inf' is not a finite float32 value");
    expect_csv_error("1,2,3,0\n1,\"2\",3,0\n", 2, "field 2 '\"2\"' is not a number");
    /* a long field is quoted cut to 32 characters */
    char text[128], want[64];
    snprintf(text, sizeof text, "1,%s,3,0\n", "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN");
    snprintf(want, sizeof want, "field 2 '%s...' is not a number", "abcdefghijklmnopqrstuvwxyzABCDEF");
    expect_csv_error(text, 1, want);
    /* control characters do not break the message onto two lines */
    expect_csv_error("1,2\r3,3,0\n", 1, "field 2 '2?3' is not a number");
}

static void test_csv_labels(void **state) {
    (void)state;
    expect_csv_error("1,2,3,0\n1,2,3,1\n1,2,3,1.5\n", 3, "label '1.5' is not an integer");
    expect_csv_error("1,2,3,cat\n", 1, "label 'cat' is not an integer");
    expect_csv_error("1,2,3,0\n1,2,3,4\n", 2, "label '4' is out of range [0, 4)");
    expect_csv_error("1,2,3,-1\n", 1, "label '-1' is out of range [0, 4)");
    expect_csv_error("1,2,3,1e300\n", 1, "label '1e300' is out of range [0, 4)");
    /* decimal only: strtod's hexadecimal forms are refused, by name of file and line */
    expect_csv_error("1,2,3,0\n1,2,3,0x3\n", 2, "label '0x3' is not a decimal integer");
    {
        char err[512];
        pnetrt_data d;
        assert_int_not_equal(pnetrt_data_load(P("bad.csv"), NULL, 3, PNETRT_LABELS_CLASS, 4, 0, &d, err, sizeof err), 0);
        assert_non_null(strstr(err, "is not a decimal integer")); /* the form is wrong, not the column: no hint */
        assert_null(strstr(err, "--label-column"));
    }
    expect_csv_error("1,2,3,0X1\n", 1, "label '0X1' is not a decimal integer");
    expect_csv_error("1,2,3,0x1p1\n", 1, "label '0x1p1' is not a decimal integer");
    expect_csv_error("1,2,3,.\n", 1, "label '.' is not an integer");
    expect_csv_error("1,2,3,3e\n", 1, "label '3e' is not an integer");
}

/* Every integer a CSV file holds is written in decimal: labels, and features (embedding ids are features). */
static void test_csv_decimal(void **state) {
    (void)state;
    const char *path = P("dec.csv");
    write_text(path, "-0,1.,.5,-0\n 2 ,3.0e0,4E+0, 3.00 \n");
    pnetrt_data d;
    load_ok(path, NULL, 3, PNETRT_LABELS_CLASS, 4, 0, &d);
    assert_floats(d.x, (const float[]){0, 1, 0.5f, 2, 3, 4}, 6);
    assert_int_equal(d.labels[0], 0);
    assert_int_equal(d.labels[1], 3);
    pnetrt_data_free(&d);
    expect_csv_error("0x10,2,3,0\n", 1, "field 1 '0x10' is not a decimal number");
    expect_csv_error("1,2,-0x1p3,0\n", 1, "field 3 '-0x1p3' is not a decimal number");
    write_text(path, "1,2,3,0.5,0x2\n");
    expect_error(path, NULL, 3, PNETRT_LABELS_TARGET, 0, 2, path, 1, "field 5 '0x2' is not a decimal number");
}

static void test_csv_empty(void **state) {
    (void)state;
    const char *path = P("empty.csv");
    write_text(path, "");
    expect_error(path, NULL, 3, PNETRT_LABELS_CLASS, 4, 0, path, 0, "is empty");
    write_text(path, "\n \r\n\n");
    expect_error(path, NULL, 3, PNETRT_LABELS_CLASS, 4, 0, path, 0, "empty file: no data rows");
}

static void test_csv_gzip(void **state) {
    (void)state;
    const char *path = P("train.csv.gz"), *plain = P("train.data");
    const char *text = "1,2,3,1\n4,5,6,0\n";
    write_gzip(path, "wb", text, strlen(text));
    pnetrt_data d;
    load_ok(path, NULL, 3, PNETRT_LABELS_CLASS, 2, 0, &d);
    assert_int_equal(d.n, 2);
    assert_floats(d.x, (const float[]){1, 2, 3, 4, 5, 6}, 6);
    assert_int_equal(d.labels[0], 1);
    pnetrt_data_free(&d);

    /* found by content, not name: a gzip file without .gz, and a plain file named .gz */
    rename(path, plain);
    load_ok(plain, NULL, 3, PNETRT_LABELS_CLASS, 2, 0, &d);
    assert_int_equal(d.n, 2);
    pnetrt_data_free(&d);
    write_text(path, text);
    load_ok(path, NULL, 3, PNETRT_LABELS_CLASS, 2, 0, &d);
    assert_int_equal(d.n, 2);
    pnetrt_data_free(&d);

    /* concatenated members, as `cat a.gz b.gz` makes */
    write_gzip(path, "wb", "1,2,3,1\n", 8);
    write_gzip(path, "ab", "4,5,6,0\n7,8,9,1\n", 16);
    load_ok(path, NULL, 3, PNETRT_LABELS_CLASS, 2, 0, &d);
    assert_int_equal(d.n, 3);
    assert_floats(d.x, (const float[]){1, 2, 3, 4, 5, 6, 7, 8, 9}, 9);
    pnetrt_data_free(&d);

    /* line numbers count lines of the decompressed text */
    write_gzip(path, "wb", "1,2,3,1\n1,2,3,9\n", 16);
    expect_error(path, NULL, 3, PNETRT_LABELS_CLASS, 2, 0, path, 2, "label '9' is out of range [0, 2)");
}

static void test_csv_with_labels_file(void **state) {
    (void)state;
    const char *path = P("a.csv");
    write_text(path, "1,2,3,1\n");
    expect_error(path, P("labels.npy"), 3, PNETRT_LABELS_CLASS, 2, 0, path, 0, "pass no labels file");
}

/* ---- gzip errors -------------------------------------------------------------------------- */

static void test_bad_gzip(void **state) {
    (void)state;
    const char *path = P("bad.gz");
    write_bytes(path, "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03garbage-garbage", 24);
    expect_error(path, NULL, 3, PNETRT_LABELS_CLASS, 2, 0, path, 0, "corrupt gzip data: ");

    /* a cut-off stream */
    unsigned char big[4000], gz[8192];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (unsigned char)"0123456789,\n"[(i * 7919) % 12];
    write_gzip(path, "wb", big, sizeof big);
    size_t n = read_bytes(path, gz, sizeof gz);
    assert_true(n > 40);
    write_bytes(path, gz, n / 2);
    expect_error(path, NULL, 3, PNETRT_LABELS_CLASS, 2, 0, path, 0, "truncated gzip data");

    /* the trailer's CRC does not match */
    write_gzip(path, "wb", "1,2,3,1\n", 8);
    n = read_bytes(path, gz, sizeof gz);
    gz[n - 8] ^= 0xff;
    write_bytes(path, gz, n);
    expect_error(path, NULL, 3, PNETRT_LABELS_CLASS, 2, 0, path, 0, "corrupt gzip data: incorrect data check");

    /* bytes after the stream that are not another member */
    write_gzip(path, "wb", "1,2,3,1\n", 8);
    n = read_bytes(path, gz, sizeof gz);
    memcpy(gz + n, "junk", 4);
    write_bytes(path, gz, n + 4);
    expect_error(path, NULL, 3, PNETRT_LABELS_CLASS, 2, 0, path, 0, "trailing bytes after the gzip data");

    /* only the magic */
    write_bytes(path, "\x1f\x8b", 2);
    expect_error(path, NULL, 3, PNETRT_LABELS_CLASS, 2, 0, path, 0, "truncated gzip data");
}

/* ---- what is read, and how much ---------------------------------------------------------- */

/* Only regular files are read: a device is never read until memory runs out, a FIFO never waited on. */
static void test_not_regular(void **state) {
    (void)state;
    const char *fifo = P("fifo");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    const char *csv = P("good.csv");
    write_text(csv, "1,2,3,1\n");
    expect_error("/dev/zero", NULL, 3, PNETRT_LABELS_CLASS, 2, 0, "/dev/zero", 0, "not a regular file (a character device)");
    expect_error(fifo, NULL, 3, PNETRT_LABELS_CLASS, 2, 0, fifo, 0, "not a regular file (a FIFO)");
    expect_error(csv, "/dev/zero", 3, PNETRT_LABELS_CLASS, 2, 0, csv, 0, "pass no labels file");
    const char *x = P("x.idx"), *y = P("y.idx");
    make_idx_pair(x, y, false);
    expect_error(x, "/dev/zero", 6, PNETRT_LABELS_CLASS, 10, 0, "/dev/zero", 0, "not a regular file (a character device)");
    expect_error(x, fifo, 6, PNETRT_LABELS_CLASS, 10, 0, fifo, 0, "not a regular file (a FIFO)");
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", P("."));
    expect_error(dir, NULL, 3, PNETRT_LABELS_CLASS, 2, 0, dir, 0, "cannot open: Is a directory");
    char err[512] = "";
    pnetrt_array a;
    assert_int_not_equal(pnetrt_data_read_npy("/dev/zero", 0, 1, true, NULL, &a, NULL, err, sizeof err), 0);
    assert_string_equal(err, "/dev/zero: not a regular file (a character device)");
    assert_int_not_equal(pnetrt_data_read_npy(fifo, 0, 1, true, NULL, &a, NULL, err, sizeof err), 0);
    assert_non_null(strstr(err, "not a regular file (a FIFO)"));
    assert_int_not_equal(pnetrt_npy_read(fifo, &a, err, sizeof err), 0);
    assert_non_null(strstr(err, "not a regular file (a FIFO)"));
    assert_int_not_equal(pnetrt_npy_read("/dev/zero", &a, err, sizeof err), 0);
    assert_string_equal(err, "/dev/zero: not a regular file (a character device)");
}

/* A file, or its decompressed content, larger than the limit (half of physical memory, lowered here) is refused
   as it is read: a gzip bomb never exhausts memory. */
static void test_size_limit(void **state) {
    (void)state;
    enum { LIMIT = 1 << 20 };
    size_t n = 8 * LIMIT;
    char *text = malloc(n);
    assert_non_null(text);
    for (size_t i = 0; i < n; i += 8)
        memcpy(text + i, "1,2,3,1\n", 8);
    const char *gz = P("bomb.csv.gz"), *plain = P("big.csv"), *small = P("small.csv.gz");
    write_gzip(gz, "wb", text, n);
    write_bytes(plain, text, LIMIT + 8);
    write_gzip(small, "wb", text, LIMIT - 8);
    pnetrt_data_set_max_bytes(LIMIT);
    expect_error(gz, NULL, 3, PNETRT_LABELS_CLASS, 2, 0, gz, 0, "gzip data decompresses to more than 1 MiB");
    expect_error(plain, NULL, 3, PNETRT_LABELS_CLASS, 2, 0, plain, 0,
                 "is larger than 1 MiB, the most a data file may hold (half of physical memory)");
    pnetrt_data d;
    load_ok(small, NULL, 3, PNETRT_LABELS_CLASS, 2, 0, &d);
    assert_int_equal(d.n, (LIMIT - 8) / 8);
    pnetrt_data_free(&d);
    pnetrt_data_set_max_bytes(0);
    load_ok(gz, NULL, 3, PNETRT_LABELS_CLASS, 2, 0, &d);
    assert_int_equal(d.n, (int64_t)n / 8);
    pnetrt_data_free(&d);
    free(text);
}

/* ---- .npy pairs --------------------------------------------------------------------------- */

static void test_npy_f4_i4(void **state) {
    (void)state;
    const char *x = P("x.npy"), *y = P("y.npy");
    const float xv[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12.5f};
    make_npy(x, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2, 2), }", xv, sizeof xv);
    make_npy(y, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", (const int32_t[]){2, 0, 1}, 12);
    pnetrt_data d;
    load_ok(x, y, 4, PNETRT_LABELS_CLASS, 3, 0, &d);
    assert_int_equal(d.n, 3);
    assert_int_equal(d.features, 4);
    assert_floats(d.x, xv, 12);
    assert_int_equal(d.labels[0], 2);
    assert_int_equal(d.labels[1], 0);
    assert_int_equal(d.labels[2], 1);
    pnetrt_data_free(&d);

    expect_error(x, y, 5, PNETRT_LABELS_CLASS, 3, 0, x, 0, "expected 5 values per sample, found float32 of shape (3, 2, 2)");
    expect_error(x, NULL, 4, PNETRT_LABELS_CLASS, 3, 0, x, 0, "is a .npy file, which needs a labels file");
    expect_error(x, y, 4, PNETRT_LABELS_CLASS, 2, 0, y, 0, "record 0: label 2 is out of range [0, 2)");
    expect_error(x, P("missing.npy"), 4, PNETRT_LABELS_CLASS, 3, 0, P("missing.npy"), 0,
                 "cannot open: No such file or directory");
}

static void test_npy_f8_i8_u8(void **state) {
    (void)state;
    const char *x = P("x.npy"), *y = P("y.npy");
    make_npy(x, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }", (const double[]){0.25, -1, 3, 1e10}, 32);
    make_npy(y, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }", (const int64_t[]){9, 4}, 16);
    pnetrt_data d;
    load_ok(x, y, 2, PNETRT_LABELS_CLASS, 10, 0, &d);
    assert_floats(d.x, (const float[]){0.25f, -1, 3, 1e10f}, 4);
    assert_int_equal(d.labels[0], 9);
    assert_int_equal(d.labels[1], 4);
    pnetrt_data_free(&d);
    make_npy(y, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }", (const int64_t[]){9, 1ll << 40}, 16);
    expect_error(x, y, 2, PNETRT_LABELS_CLASS, 10, 0, y, 0, "record 1: label 1099511627776 is out of range [0, 10)");
    make_npy(y, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }", (const int64_t[]){-3, 1}, 16);
    expect_error(x, y, 2, PNETRT_LABELS_CLASS, 10, 0, y, 0, "record 0: label -3 is out of range [0, 10)");

    /* uint8 X is divided by 255, as IDX bytes are (test_scaling_rule); (n, 1) labels are accepted */
    make_npy(x, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), }", "\x00\x01\xff\x10\x20\x30", 6);
    make_npy(y, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 1), }", (const int32_t[]){1, 0}, 8);
    load_ok(x, y, 3, PNETRT_LABELS_CLASS, 2, 0, &d);
    assert_floats(d.x, (const float[]){0, (float)(1 / 255.0), 1, (float)(16 / 255.0), (float)(32 / 255.0),
                                       (float)(48 / 255.0)}, 6);
    assert_int_equal(d.labels[0], 1);
    pnetrt_data_free(&d);

    /* int32 X */
    make_npy(x, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 1), }", (const int32_t[]){-7, 70000}, 8);
    load_ok(x, y, 1, PNETRT_LABELS_CLASS, 2, 0, &d);
    assert_floats(d.x, (const float[]){-7, 70000}, 2);
    pnetrt_data_free(&d);

    /* a float64 value beyond float32 */
    make_npy(x, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 1), }", (const double[]){1, 1e300}, 16);
    expect_error(x, y, 1, PNETRT_LABELS_CLASS, 2, 0, x, 0, "record 1: value 0 (1e+300) is not a finite float32");
}

static void test_npy_mismatch(void **state) {
    (void)state;
    const char *x = P("x.npy"), *y = P("y.npy");
    make_npy(x, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", (const float[6]){0}, 24);
    make_npy(y, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", (const int32_t[]){0, 1}, 8);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "holds 2 labels but %s holds 3 samples", x);
    expect_error(x, y, 2, PNETRT_LABELS_CLASS, 3, 0, y, 0, want);

    make_npy(y, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (3, 2), }", (const int32_t[6]){0}, 24);
    expect_error(x, y, 2, PNETRT_LABELS_CLASS, 3, 0, y, 0, "class ids have shape (3, 2); expected (3,)");
    make_npy(y, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", (const float[3]){0}, 12);
    expect_error(x, y, 2, PNETRT_LABELS_CLASS, 3, 0, y, 0, "holds float32 values; class ids must be int32");
    make_npy(y, 1, "{'descr': '<i2', 'fortran_order': False, 'shape': (3,), }", (const int16_t[3]){0}, 6);
    expect_error(x, y, 2, PNETRT_LABELS_CLASS, 3, 0, y, 0,
                 "dtype '<i2' is not supported; class ids must be int32, int64 or uint8");
    make_npy(y, 1, "{'descr': '<f2', 'fortran_order': False, 'shape': (3,), }", (const int16_t[3]){0}, 6);
    expect_error(x, y, 2, PNETRT_LABELS_TARGET, 0, 1, y, 0,
                 "dtype '<f2' is not supported; targets must be float32 or float64");
    expect_error(y, y, 1, PNETRT_LABELS_TARGET, 0, 1, y, 0,
                 "dtype '<f2' is not supported; expected float32, float64, int32, int64 or uint8");
    make_npy(y, 1, "{'descr': '>i4', 'fortran_order': False, 'shape': (3,), }", (const int32_t[3]){0}, 12);
    expect_error(x, y, 2, PNETRT_LABELS_CLASS, 3, 0, y, 0, "dtype '>i4' is big-endian");
    write_text(y, "0\n1\n2\n");
    expect_error(x, y, 2, PNETRT_LABELS_CLASS, 3, 0, y, 0, "is not a .npy or IDX file (it is text;");

    /* errors of the .npy format itself */
    make_npy(x, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", (const float[5]){0}, 20);
    expect_error(x, y, 2, PNETRT_LABELS_CLASS, 3, 0, x, 0,
                 "truncated: header says 24 bytes of data but the file has 20");
    make_npy(x, 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (3, 2), }", (const float[6]){0}, 24);
    expect_error(x, y, 2, PNETRT_LABELS_CLASS, 3, 0, x, 0, "fortran_order is True");
    make_npy(x, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 2), }", NULL, 0);
    expect_error(x, y, 2, PNETRT_LABELS_CLASS, 3, 0, x, 0, "holds no samples");
    make_npy(x, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", (const float[]){1, 2, 3, NAN, 5, 6}, 24);
    expect_error(x, y, 2, PNETRT_LABELS_CLASS, 3, 0, x, 0, "record 1: value 1 (nan) is not a finite float32");
    write_bytes(x, "\x93NUM", 4);
    expect_error(x, y, 2, PNETRT_LABELS_CLASS, 3, 0, x, 0, "not a .npy file");
}

static void test_npy_targets(void **state) {
    (void)state;
    const char *x = P("x.npy"), *y = P("y.npy.gz");
    make_npy(x, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", (const float[]){1, 2, 3, 4, 5, 6}, 24);
    /* the targets compressed: write the .npy, then gzip its bytes */
    unsigned char buf[256];
    make_npy(P("plain.npy"), 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }",
             (const float[]){0.5f, 1, -2, 4}, 16);
    size_t n = read_bytes(P("plain.npy"), buf, sizeof buf);
    write_gzip(y, "wb", buf, n);
    pnetrt_data d;
    load_ok(x, y, 3, PNETRT_LABELS_TARGET, 0, 2, &d);
    assert_int_equal(d.n, 2);
    assert_int_equal(d.target_elems, 2);
    assert_null(d.labels);
    assert_floats(d.targets, (const float[]){0.5f, 1, -2, 4}, 4);
    pnetrt_data_free(&d);

    expect_error(x, y, 3, PNETRT_LABELS_TARGET, 0, 3, y, 0, "expected 3 targets per sample, found shape (2, 2)");
    make_npy(P("plain.npy"), 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", (const int32_t[]){0, 1}, 8);
    expect_error(x, P("plain.npy"), 3, PNETRT_LABELS_TARGET, 0, 1, P("plain.npy"), 0,
                 "holds int32 values; targets must be float32 or float64");
    make_npy(P("plain.npy"), 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", (const float[]){0, INFINITY},
             8);
    expect_error(x, P("plain.npy"), 3, PNETRT_LABELS_TARGET, 0, 1, P("plain.npy"), 0,
                 "record 1: target 0 (inf) is not a finite float32");
}

/* ---- IDX pairs ---------------------------------------------------------------------------- */

static void check_idx(const pnetrt_data *d) {
    assert_int_equal(d->n, 2);
    assert_int_equal(d->features, 6);
    for (int i = 0; i < 12; i++)
        assert_true(d->x[i] == (float)(idx_pixels[i] / 255.0));
    assert_true(d->x[1] == 1.0f && d->x[2] == 0.2f);
    assert_int_equal(d->labels[0], 7);
    assert_int_equal(d->labels[1], 2);
}

static void test_idx(void **state) {
    (void)state;
    const char *x = P("images-idx3-ubyte"), *y = P("labels-idx1-ubyte");
    make_idx_pair(x, y, false);
    pnetrt_data d;
    load_ok(x, y, 6, PNETRT_LABELS_CLASS, 10, 0, &d);
    check_idx(&d);
    pnetrt_data_free(&d);

    const char *xg = P("images-idx3-ubyte.gz"), *yg = P("labels-idx1-ubyte.gz");
    make_idx_pair(xg, yg, true);
    load_ok(xg, yg, 6, PNETRT_LABELS_CLASS, 10, 0, &d);
    check_idx(&d);
    pnetrt_data_free(&d);

    expect_error(x, y, 784, PNETRT_LABELS_CLASS, 10, 0, x, 0, "expected 784 values per sample, found uint8 of shape (2, 2, 3)");
    expect_error(xg, yg, 6, PNETRT_LABELS_CLASS, 5, 0, yg, 0, "record 0: label 7 is out of range [0, 5)");
    expect_error(x, NULL, 6, PNETRT_LABELS_CLASS, 10, 0, x, 0, "is an IDX file, which needs a labels file");

    /* labels of another count, or the images file given as labels */
    unsigned char buf[256];
    write_bytes(y, buf, idx_bytes(buf, 0x08, 1, (uint32_t[]){3}, "\x01\x02\x03", 3));
    expect_error(x, y, 6, PNETRT_LABELS_CLASS, 10, 0, y, 0, "holds 3 labels but");
    expect_error(x, x, 6, PNETRT_LABELS_CLASS, 256, 0, x, 0, "class ids have shape (2, 2, 3); expected (2,)");

    /* float32 IDX (big-endian) images are kept as is, and float32 IDX targets are read */
    unsigned char f[8] = {0x3f, 0x80, 0, 0, 0xc0, 0x20, 0, 0}; /* 1.0, -2.5 */
    write_bytes(x, buf, idx_bytes(buf, 0x0D, 2, (uint32_t[]){2, 1}, f, 8));
    write_bytes(y, buf, idx_bytes(buf, 0x0D, 1, (uint32_t[]){2}, f, 8));
    load_ok(x, y, 1, PNETRT_LABELS_TARGET, 0, 1, &d);
    assert_floats(d.x, (const float[]){1, -2.5f}, 2);
    assert_floats(d.targets, (const float[]){1, -2.5f}, 2);
    pnetrt_data_free(&d);

    /* a .npy image file with IDX labels */
    make_npy(x, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1), }", (const float[]){3, 4}, 8);
    write_bytes(y, buf, idx_bytes(buf, 0x08, 1, (uint32_t[]){2}, "\x01\x00", 2));
    load_ok(x, y, 1, PNETRT_LABELS_CLASS, 2, 0, &d);
    assert_floats(d.x, (const float[]){3, 4}, 2);
    assert_int_equal(d.labels[0], 1);
    pnetrt_data_free(&d);
}

static void test_idx_errors(void **state) {
    (void)state;
    const char *x = P("images-idx3-ubyte"), *y = P("labels-idx1-ubyte");
    make_idx_pair(x, y, false);
    unsigned char buf[256];
    size_t n = read_bytes(x, buf, sizeof buf);

    write_bytes(x, buf, n - 1);
    expect_error(x, y, 6, PNETRT_LABELS_CLASS, 10, 0, x, 0,
                 "truncated: IDX header says 12 bytes of data (shape (2, 2, 3)) but the file has 11");
    write_bytes(x, buf, 10);
    expect_error(x, y, 6, PNETRT_LABELS_CLASS, 10, 0, x, 0,
                 "truncated IDX header: 16 bytes of header but the file has 10");
    write_bytes(x, buf, 3);
    expect_error(x, y, 6, PNETRT_LABELS_CLASS, 10, 0, x, 0, "truncated IDX header: the file has only 3 bytes");
    buf[n] = 0;
    write_bytes(x, buf, n + 1);
    expect_error(x, y, 6, PNETRT_LABELS_CLASS, 10, 0, x, 0, "trailing data: IDX header says 12 bytes");

    /* a truncated labels file, plain and compressed */
    n = read_bytes(y, buf, sizeof buf);
    write_bytes(y, buf, n - 1);
    make_idx_pair(x, P("unused"), false);
    expect_error(x, y, 6, PNETRT_LABELS_CLASS, 10, 0, y, 0, "truncated: IDX header says 2 bytes of data (shape (2,))");
    write_gzip(y, "wb", buf, n - 1);
    expect_error(x, y, 6, PNETRT_LABELS_CLASS, 10, 0, y, 0, "truncated: IDX header says 2 bytes");

    n = idx_bytes(buf, 0x0C, 1, (uint32_t[]){2}, "\0\0\0\0\0\0\0\0", 8);
    write_bytes(x, buf, n);
    expect_error(x, y, 6, PNETRT_LABELS_CLASS, 10, 0, x, 0, "IDX data type 0x0C is not supported");
    write_bytes(x, "\0\0\x08\0", 4);
    expect_error(x, y, 6, PNETRT_LABELS_CLASS, 10, 0, x, 0, "IDX header has no dimensions");
    /* dims whose product overflows 64 bits */
    n = idx_bytes(buf, 0x08, 3, (uint32_t[]){0xffffffffu, 0xffffffffu, 0xffffffffu}, "", 0);
    write_bytes(x, buf, n);
    expect_error(x, y, 6, PNETRT_LABELS_CLASS, 10, 0, x, 0, "IDX shape is too large");
}

/* ---- the one scaling rule and the one shape rule ----------------------------------------- */

static void load_opts_ok(const char *data, const char *labels, int64_t features, int kind, int64_t classes,
                         int64_t target_elems, const pnetrt_data_opts *o, pnetrt_data *d) {
    char err[512] = "";
    if (pnetrt_data_load_opts(data, labels, features, kind, classes, target_elems, o, d, err, sizeof err))
        fail_msg("load failed: %s", err);
}

/* uint8 samples mean the same thing in every loader: an IDX file and a .npy of the same bytes give the same
   floats, divided by 255 for an f32 input, kept 0..255 with no_scale or for an i32 input; nothing else scales. */
static void test_scaling_rule(void **state) {
    (void)state;
    const char *xi = P("images-idx3-ubyte"), *y = P("labels-idx1-ubyte"), *xn = P("x.npy");
    make_idx_pair(xi, y, false);
    make_npy(xn, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2, 3), }", idx_pixels, 12);
    float scaled[12], raw[12];
    for (int i = 0; i < 12; i++) {
        scaled[i] = (float)(idx_pixels[i] / 255.0);
        raw[i] = idx_pixels[i];
    }
    const pnetrt_data_opts keep = {.no_scale = true}, ids = {.int_input = true};
    for (int f = 0; f < 2; f++) {
        const char *x = f ? xn : xi;
        pnetrt_data d;
        load_ok(x, y, 6, PNETRT_LABELS_CLASS, 10, 0, &d);
        assert_floats(d.x, scaled, 12);
        assert_string_equal(d.source.type, "uint8");
        assert_true(d.source.scaled);
        pnetrt_data_free(&d);
        load_opts_ok(x, y, 6, PNETRT_LABELS_CLASS, 10, 0, &keep, &d);
        assert_floats(d.x, raw, 12);
        assert_string_equal(d.source.type, "uint8");
        assert_false(d.source.scaled);
        pnetrt_data_free(&d);
        load_opts_ok(x, y, 6, PNETRT_LABELS_CLASS, 10, 0, &ids, &d);
        assert_floats(d.x, raw, 12);
        assert_false(d.source.scaled);
        pnetrt_data_free(&d);
    }
    /* float32 .npy and CSV text are kept as they are */
    make_npy(xn, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 6), }", raw, sizeof raw);
    pnetrt_data d;
    load_ok(xn, y, 6, PNETRT_LABELS_CLASS, 10, 0, &d);
    assert_floats(d.x, raw, 12);
    assert_string_equal(d.source.type, "float32");
    assert_false(d.source.scaled);
    pnetrt_data_free(&d);
    const char *csv = P("u.csv");
    write_text(csv, "0,255,1\n");
    load_ok(csv, NULL, 2, PNETRT_LABELS_CLASS, 2, 0, &d);
    assert_floats(d.x, (const float[]){0, 255}, 2);
    assert_string_equal(d.source.type, "text");
    assert_false(d.source.scaled);
    pnetrt_data_free(&d);

    /* infer's reader applies the same rule */
    make_npy(xn, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2, 3), }", idx_pixels, 12);
    char err[512];
    pnetrt_array a;
    pnetrt_data_source src;
    assert_int_equal(pnetrt_data_read_npy(xn, PNETRT_F32, 6, true, NULL, &a, &src, err, sizeof err), 0);
    assert_floats(a.data, scaled, 12);
    assert_string_equal(src.type, "uint8");
    assert_true(src.scaled);
    pnetrt_array_free(&a);
    assert_int_equal(pnetrt_data_read_npy(xn, PNETRT_F32, 6, true, &keep, &a, &src, err, sizeof err), 0);
    assert_floats(a.data, raw, 12);
    assert_false(src.scaled);
    pnetrt_array_free(&a);
    assert_int_equal(pnetrt_data_read_npy(xn, PNETRT_I32, 6, true, NULL, &a, &src, err, sizeof err), 0);
    assert_int_equal(a.dtype, PNETRT_I32);
    for (int i = 0; i < 12; i++)
        assert_int_equal(((int32_t *)a.data)[i], idx_pixels[i]);
    assert_false(src.scaled);
    pnetrt_array_free(&a);
}

/* Fails unless infer's reader fails with the one-line message "path: want". */
static void expect_read_error(const char *path, int dtype, int64_t features, bool batched, const pnetrt_data_opts *o,
                              const char *want) {
    char err[512], full[PATH_MAX + 256];
    pnetrt_array a;
    assert_int_not_equal(pnetrt_data_read_npy(path, dtype, features, batched, o, &a, NULL, err, sizeof err), 0);
    snprintf(full, sizeof full, "%s: %s", path, want);
    assert_string_equal(err, full);
    assert_null(a.data);
}

/* One shape rule for training and infer: (n, ...) holds n samples of the trailing dims' product. */
static void test_shape_rule(void **state) {
    (void)state;
    const char *x = P("x.npy");
    unsigned char px[3 * 4 * 2];
    for (int i = 0; i < 24; i++)
        px[i] = (unsigned char)(i * 10);
    make_npy(x, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 4, 2), }", px, sizeof px);
    char err[512];
    pnetrt_array a;
    /* (3, 4, 2) feeds an input of 8 values per sample, f32[batch, 1, 2, 4] or f32[batch, 8] alike */
    assert_int_equal(pnetrt_data_read_npy(x, PNETRT_F32, 8, true, NULL, &a, NULL, err, sizeof err), 0);
    assert_int_equal(a.rank, 3);
    assert_int_equal(a.shape[0], 3);
    assert_true(((float *)a.data)[23] == (float)(230 / 255.0));
    pnetrt_array_free(&a);
    /* an input without a batch dim takes as many values, in all */
    assert_int_equal(pnetrt_data_read_npy(x, PNETRT_F32, 24, false, NULL, &a, NULL, err, sizeof err), 0);
    pnetrt_array_free(&a);
    /* the error names the file's real dtype and shape, and the input */
    const pnetrt_data_opts in = {.input = "input 'x' f32[batch,1,3,3]"};
    expect_read_error(x, PNETRT_F32, 9, true, &in,
                      "expected 9 values per sample (input 'x' f32[batch,1,3,3]), found uint8 of shape (3, 4, 2)");
    expect_read_error(x, PNETRT_F32, 8, false, NULL, "expected 8 values, found uint8 of shape (3, 4, 2)");
    make_npy(x, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (), }", (const double[]){2}, 8);
    expect_read_error(x, PNETRT_F32, 1, true, NULL, "holds a float64 scalar; expected one sample per row");
    assert_int_equal(pnetrt_data_read_npy(x, PNETRT_F32, 1, false, NULL, &a, NULL, err, sizeof err), 0);
    pnetrt_array_free(&a);
    /* the training loader says the same */
    const char *y = P("y.npy");
    make_npy(x, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 4, 2), }", px, sizeof px);
    make_npy(y, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", (const int32_t[]){0, 1, 0}, 12);
    pnetrt_data d;
    load_ok(x, y, 8, PNETRT_LABELS_CLASS, 2, 0, &d);
    assert_int_equal(d.n, 3);
    pnetrt_data_free(&d);
    char want[PATH_MAX + 128];
    snprintf(want, sizeof want, "%s: expected 9 values per sample (input 'x' f32[batch,1,3,3]), found uint8 of "
                                "shape (3, 4, 2)", x);
    memset(&d, 0, sizeof d);
    assert_int_not_equal(pnetrt_data_load_opts(x, y, 9, PNETRT_LABELS_CLASS, 2, 0, &in, &d, err, sizeof err), 0);
    assert_string_equal(err, want);
}

/* ---- the CSV label column ------------------------------------------------------------------- */

static void test_csv_label_column(void **state) {
    (void)state;
    const char *path = P("lc.csv");
    write_text(path, "2,10,11,12\n0,20,21,22\n");
    pnetrt_data d;
    const pnetrt_data_opts first = {.label_column = 1}, second = {.label_column = 2}, bad = {.label_column = 5};
    load_opts_ok(path, NULL, 3, PNETRT_LABELS_CLASS, 3, 0, &first, &d);
    assert_floats(d.x, (const float[]){10, 11, 12, 20, 21, 22}, 6);
    assert_int_equal(d.labels[0], 2);
    assert_int_equal(d.labels[1], 0);
    assert_string_equal(d.warning, "");
    pnetrt_data_free(&d);
    write_text(path, "10,2,11,12\n20,0,21,22\n");
    load_opts_ok(path, NULL, 3, PNETRT_LABELS_CLASS, 3, 0, &second, &d);
    assert_floats(d.x, (const float[]){10, 11, 12, 20, 21, 22}, 6);
    assert_int_equal(d.labels[0], 2);
    pnetrt_data_free(&d);
    /* targets start at the column */
    write_text(path, "0.5,1.5,7,8\n2.5,3.5,9,10\n");
    load_opts_ok(path, NULL, 2, PNETRT_LABELS_TARGET, 0, 2, &first, &d);
    assert_floats(d.x, (const float[]){7, 8, 9, 10}, 4);
    assert_floats(d.targets, (const float[]){0.5f, 1.5f, 2.5f, 3.5f}, 4);
    pnetrt_data_free(&d);
    /* a column past the row, and a label column for a .npy */
    char err[512];
    assert_int_not_equal(pnetrt_data_load_opts(path, NULL, 3, PNETRT_LABELS_CLASS, 3, 0, &bad, &d, err, sizeof err), 0);
    assert_non_null(strstr(err, "a row holds 4 columns (3 features + 1 label), so the label column must lie in [1, 4], "
                                "not 5"));
    assert_int_not_equal(pnetrt_data_load_opts(path, NULL, 2, PNETRT_LABELS_TARGET, 0, 2, &(pnetrt_data_opts){.label_column = 4},
                                               &d, err, sizeof err), 0);
    assert_non_null(strstr(err, "the first target column must lie in [1, 3], not 4"));
    const char *x = P("x.npy"), *y = P("y.npy");
    make_npy(x, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1), }", (const float[]){1}, 4);
    make_npy(y, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (1,), }", (const int32_t[]){0}, 4);
    assert_int_not_equal(pnetrt_data_load_opts(x, y, 1, PNETRT_LABELS_CLASS, 3, 0, &first, &d, err, sizeof err), 0);
    assert_non_null(strstr(err, "is a .npy file, whose labels come from a labels file; a label column is chosen only in "
                                "CSV data"));
}

/* A label in the first column, read as the last: a bad label says where labels are read from and which column
   would do; labels that pass but look like a feature column are a warning. */
static void test_csv_label_hints(void **state) {
    (void)state;
    expect_csv_error("5,2,3,0.5\n", 1, "label '0.5' is not an integer; labels are read from column 4 (the last); "
                                       "--label-column first|last|N reads another");
    expect_csv_error("1,2,3,0\n2,0.5,0.5,7\n", 2, "label '7' is out of range [0, 4); labels are read from column 4 "
                                                  "(the last), but column 1 holds class ids on every row: give "
                                                  "--label-column first");
    const char *path = P("w.csv");
    char err[512], want[PATH_MAX + 256];
    pnetrt_data d;
    write_text(path, "3,0.5,1\n1,2.5,1\n0,1.5,1\n");
    assert_int_not_equal(pnetrt_data_load_opts(path, NULL, 2, PNETRT_LABELS_CLASS, 2, 0,
                                               &(pnetrt_data_opts){.label_column = 1}, &d, err, sizeof err), 0);
    assert_non_null(strstr(err, ":1: label '3' is out of range [0, 2); labels are read from column 1 (the first), but "
                                "column 3 holds class ids on every row: give --label-column last"));
    /* the warning: the first column holds more distinct class ids than the last */
    write_text(path, "2,0.5,1\n1,2.5,1\n0,1.5,0\n");
    load_ok(path, NULL, 2, PNETRT_LABELS_CLASS, 3, 0, &d);
    snprintf(want, sizeof want, "%s: column 3 holds the labels (2 distinct classes), but column 1 also holds class ids on "
             "every row (3 distinct); if the labels are there, give --label-column first", path);
    assert_string_equal(d.warning, want);
    pnetrt_data_free(&d);
    load_opts_ok(path, NULL, 2, PNETRT_LABELS_CLASS, 3, 0, &(pnetrt_data_opts){.label_column = 0}, &d);
    assert_string_equal(d.warning, want);
    pnetrt_data_free(&d);
    /* none when the label column is given, nor when the first column varies less (digits: pixel 0 is always 0) */
    load_opts_ok(path, NULL, 2, PNETRT_LABELS_CLASS, 3, 0, &(pnetrt_data_opts){.label_column = 3}, &d);
    assert_string_equal(d.warning, "");
    pnetrt_data_free(&d);
    load_opts_ok(path, NULL, 2, PNETRT_LABELS_CLASS, 3, 0, &(pnetrt_data_opts){.label_column = PNETRT_LABEL_LAST}, &d);
    assert_string_equal(d.warning, "");
    assert_int_equal(d.labels[2], 0);
    pnetrt_data_free(&d);
    write_text(path, "0,0.5,1\n0,2.5,2\n0,1.5,0\n");
    load_ok(path, NULL, 2, PNETRT_LABELS_CLASS, 3, 0, &d);
    assert_string_equal(d.warning, "");
    pnetrt_data_free(&d);
}

/* ---- files of no known format --------------------------------------------------------------- */

/* Empty and binary files, as data or labels, with or without a labels file: named as such, never taken for
   CSV. */
static void test_unknown_format(void **state) {
    (void)state;
    const char *x = P("images-idx3-ubyte"), *y = P("labels-idx1-ubyte"), *e = P("e.idx"), *b = P("b.idx");
    const char *g = P("b.gz");
    make_idx_pair(x, y, false);
    write_bytes(e, "", 0);
    expect_error(e, y, 6, PNETRT_LABELS_CLASS, 10, 0, e, 0, "is empty");
    expect_error(e, NULL, 6, PNETRT_LABELS_CLASS, 10, 0, e, 0, "is empty");
    expect_error(x, e, 6, PNETRT_LABELS_CLASS, 10, 0, e, 0, "is empty");
    write_gzip(g, "wb", "", 0);
    expect_error(g, y, 6, PNETRT_LABELS_CLASS, 10, 0, g, 0, "is empty once decompressed");

    /* an IDX file whose magic is broken */
    unsigned char buf[256];
    size_t n = read_bytes(x, buf, sizeof buf);
    buf[0] = 0xff;
    buf[1] = 0xfe;
    write_bytes(b, buf, n);
    expect_error(b, y, 6, PNETRT_LABELS_CLASS, 10, 0, b, 0,
                 "is not a .npy, IDX or CSV file (it starts with bytes ff fe 08 03)");
    expect_error(b, NULL, 6, PNETRT_LABELS_CLASS, 10, 0, b, 0,
                 "is not a .npy, IDX or CSV file (it starts with bytes ff fe 08 03)");
    expect_error(x, b, 6, PNETRT_LABELS_CLASS, 10, 0, b, 0,
                 "is not a .npy or IDX file (it starts with bytes ff fe 08 03)");
    write_bytes(b, "\x01", 1);
    expect_error(b, y, 6, PNETRT_LABELS_CLASS, 10, 0, b, 0, "(it starts with byte 01)");

    /* compressed binary, and binary after a text-looking start on the same line */
    write_gzip(g, "wb", "\x88\x08\x6f\x84\x00\x00", 6);
    expect_error(g, y, 6, PNETRT_LABELS_CLASS, 10, 0, g, 0, "(its decompressed content starts with bytes 88 08 6f 84)");
    write_bytes(b, "1,2,3\x00\x05", 7);
    expect_error(b, NULL, 3, PNETRT_LABELS_CLASS, 4, 0, b, 0,
                 "is not a .npy, IDX or CSV file (it starts with bytes 31 2c 32 2c)");
    /* bytes that are not UTF-8: a lone continuation byte, a UTF-16 byte order mark */
    write_bytes(b, "1,\x80,3,0\n", 8);
    expect_error(b, NULL, 3, PNETRT_LABELS_CLASS, 4, 0, b, 0, "is not a .npy, IDX or CSV file");
    write_bytes(b,
                "\xff\xfe"
                "1\0,\0",
                6);
    expect_error(b, NULL, 3, PNETRT_LABELS_CLASS, 4, 0, b, 0,
                 "is not a .npy, IDX or CSV file (it starts with bytes ff fe 31 00)");

    /* text stays CSV: UTF-8 in a field is a CSV error with its line, and so is a control byte on a later line */
    expect_csv_error("1,2,3,0\n1,\xc3\xa9,3,0\n", 2, "field 2 '\xc3\xa9' is not a number");
    write_bytes(b, "1,2,3,0\n\n1,2\x00,3,0\n", 17);
    expect_error(b, NULL, 3, PNETRT_LABELS_CLASS, 4, 0, b, 3, "byte 0x00 at position 4 is a control character");
    expect_csv_error("1,2,3,0\n1,2,3,0\x1a\n", 2, "byte 0x1a at position 8 is a control character");
    /* a text file given with a labels file is still called CSV */
    write_text(b, "1,2,3,0\n");
    expect_error(b, y, 3, PNETRT_LABELS_CLASS, 4, 0, b, 0, "is CSV, whose last column(s) hold the labels");
}

/* ---- where a sample came from --------------------------------------------------------------- */

static void test_where(void **state) {
    (void)state;
    const char *path = P("lines.csv");
    write_text(path, "\n1,2,3,0\n\n  \n4,5,6,1\r\n7,8,9,2");
    pnetrt_data d;
    load_ok(path, NULL, 3, PNETRT_LABELS_CLASS, 4, 0, &d);
    assert_int_equal(d.n, 3);
    assert_non_null(d.line);
    assert_int_equal(d.line[0], 2);
    assert_int_equal(d.line[1], 5);
    assert_int_equal(d.line[2], 6);
    char buf[64];
    assert_string_equal(pnetrt_data_where(&d, "f.csv", 1, buf, sizeof buf), "f.csv:5");
    assert_string_equal(pnetrt_data_where(&d, "f.csv", 9, buf, sizeof buf), "f.csv: record 9");
    pnetrt_data_free(&d);
    assert_null(d.line);

    const char *x = P("images-idx3-ubyte"), *y = P("labels-idx1-ubyte");
    make_idx_pair(x, y, false);
    load_ok(x, y, 6, PNETRT_LABELS_CLASS, 10, 0, &d);
    assert_null(d.line);
    assert_string_equal(pnetrt_data_where(&d, "x.idx", 1, buf, sizeof buf), "x.idx: record 1");
    pnetrt_data_free(&d);
    char small[6];
    assert_string_equal(pnetrt_data_where(&d, "x.idx", 1, small, sizeof small), "x.idx");
}

/* ---- arguments and files ------------------------------------------------------------------ */

static void test_arguments(void **state) {
    (void)state;
    const char *path = P("a.csv");
    write_text(path, "1,2,3,1\n");
    expect_error(path, NULL, 0, PNETRT_LABELS_CLASS, 2, 0, path, 0, "features must be at least 1");
    expect_error(path, NULL, 3, PNETRT_LABELS_CLASS, 0, 0, path, 0, "classes must lie in [1, 2147483647]");
    expect_error(path, NULL, 3, PNETRT_LABELS_TARGET, 0, 0, path, 0, "target_elems must be at least 1");
    expect_error(path, NULL, 3, 7, 2, 0, path, 0, "unknown label kind 7");
    expect_error(P("none.csv"), NULL, 3, PNETRT_LABELS_CLASS, 2, 0, P("none.csv"), 0,
                 "cannot open: No such file or directory");
    expect_error(tmpdir, NULL, 3, PNETRT_LABELS_CLASS, 2, 0, tmpdir, 0, "cannot open: Is a directory");

    /* a NULL or small err buffer is fine */
    pnetrt_data d;
    assert_int_not_equal(pnetrt_data_load(P("none.csv"), NULL, 3, PNETRT_LABELS_CLASS, 2, 0, &d, NULL, 0), 0);
    char small[8];
    assert_int_not_equal(pnetrt_data_load(P("none.csv"), NULL, 3, PNETRT_LABELS_CLASS, 2, 0, &d, small, sizeof small),
                         0);
    assert_int_equal(strlen(small), 7);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_csv_good, clear_tmpdir),
        cmocka_unit_test_teardown(test_csv_no_final_newline, clear_tmpdir),
        cmocka_unit_test_teardown(test_csv_targets, clear_tmpdir),
        cmocka_unit_test_teardown(test_csv_columns, clear_tmpdir),
        cmocka_unit_test_teardown(test_csv_not_numbers, clear_tmpdir),
        cmocka_unit_test_teardown(test_csv_labels, clear_tmpdir),
        cmocka_unit_test_teardown(test_csv_decimal, clear_tmpdir),
        cmocka_unit_test_teardown(test_csv_empty, clear_tmpdir),
        cmocka_unit_test_teardown(test_csv_gzip, clear_tmpdir),
        cmocka_unit_test_teardown(test_csv_with_labels_file, clear_tmpdir),
        cmocka_unit_test_teardown(test_bad_gzip, clear_tmpdir),
        cmocka_unit_test_teardown(test_not_regular, clear_tmpdir),
        cmocka_unit_test_teardown(test_size_limit, clear_tmpdir),
        cmocka_unit_test_teardown(test_npy_f4_i4, clear_tmpdir),
        cmocka_unit_test_teardown(test_npy_f8_i8_u8, clear_tmpdir),
        cmocka_unit_test_teardown(test_npy_mismatch, clear_tmpdir),
        cmocka_unit_test_teardown(test_npy_targets, clear_tmpdir),
        cmocka_unit_test_teardown(test_idx, clear_tmpdir),
        cmocka_unit_test_teardown(test_idx_errors, clear_tmpdir),
        cmocka_unit_test_teardown(test_scaling_rule, clear_tmpdir),
        cmocka_unit_test_teardown(test_shape_rule, clear_tmpdir),
        cmocka_unit_test_teardown(test_csv_label_column, clear_tmpdir),
        cmocka_unit_test_teardown(test_csv_label_hints, clear_tmpdir),
        cmocka_unit_test_teardown(test_unknown_format, clear_tmpdir),
        cmocka_unit_test_teardown(test_where, clear_tmpdir),
        cmocka_unit_test_teardown(test_arguments, clear_tmpdir),
    };
    return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
