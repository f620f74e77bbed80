/* Unit tests of the runtime's file formats: .npy and safetensors round trips, hand-built files, every error;
 * and the atomic writes of user-named files (links, devices, temporary files). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FILE_UTIL_PREFIX "pnetrt_io"
#include "file_util.h"
#include "fileio.h"
#include "io.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

/* ---- helpers ------------------------------------------------------------------------------ */




/* A safetensors file: 8-byte length, `json` as is, then the data block. */
static void make_st(const char *path, const char *json, const void *data, size_t len) {
    size_t jlen = strlen(json);
    unsigned char *buf = malloc(8 + jlen + len + 1);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)jlen >> (8 * i));
    memcpy(buf + 8, json, jlen);
    if (len) memcpy(buf + 8 + jlen, data, len);
    write_bytes(path, buf, 8 + jlen + len);
    free(buf);
}

/* Fails unless rc reports an error whose message is "path: ..." and contains want. */
static void assert_error(int rc, const char *err, const char *path, const char *want) {
    if (rc == 0) fail_msg("expected an error containing \"%s\", got success", want);
    size_t plen = strlen(path);
    if (strncmp(err, path, plen) || strncmp(err + plen, ": ", 2))
        fail_msg("message \"%s\" does not start with \"%s: \"", err, path);
    if (!strstr(err, want)) fail_msg("message \"%s\" lacks \"%s\"", err, want);
    if (strchr(err, '\n')) fail_msg("message \"%s\" spans lines", err);
}

static int npy_error(const char *path, const char *want) {
    char err[512] = "";
    pnetrt_array a;
    int rc = pnetrt_npy_read(path, &a, err, sizeof err);
    assert_error(rc, err, path, want);
    assert_null(a.data);
    return rc;
}

static void st_open_error(const char *path, const char *want) {
    char err[512] = "";
    pnetrt_st *st = (pnetrt_st *)&err; /* must be reset to NULL */
    int rc = pnetrt_st_open(path, &st, err, sizeof err);
    assert_error(rc, err, path, want);
    assert_null(st);
}

static int count_dir_entries(void) {
    DIR *d = opendir(tmpdir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}


/* ---- npy: round trips --------------------------------------------------------------------- */

static void round_trip(pnetrt_dtype dtype, int rank, const int64_t *shape) {
    char err[512] = "";
    pnetrt_array a = {.dtype = dtype, .rank = rank};
    size_t count = 1;
    for (int i = 0; i < rank; i++) {
        a.shape[i] = shape[i];
        count *= (size_t)shape[i];
    }
    a.nbytes = count * 4;
    a.data = malloc(a.nbytes + 1);
    assert_non_null(a.data);
    for (size_t i = 0; i < count; i++) {
        if (dtype == PNETRT_F32)
            ((float *)a.data)[i] = (float)i * 0.25f - 3.0f;
        else
            ((int32_t *)a.data)[i] = (int32_t)(i * 7919u) - 100000;
    }
    const char *path = P("rt.npy");
    assert_int_equal(pnetrt_npy_write(path, &a, err, sizeof err), 0);
    assert_string_equal(err, "");

    /* the header is numpy's: magic, version 1.0, a dict, padding to 64 bytes ending in '\n' */
    unsigned char raw[1024];
    size_t n = read_bytes(path, raw, sizeof raw);
    size_t hlen = raw[8] | (size_t)raw[9] << 8;
    assert_memory_equal(raw, "\x93NUMPY\x01\x00", 8);
    assert_int_equal((10 + hlen) % 64, 0);
    assert_int_equal(raw[10 + hlen - 1], '\n');
    if (n < sizeof raw) assert_int_equal(n, 10 + hlen + a.nbytes);

    pnetrt_array b;
    assert_int_equal(pnetrt_npy_read(path, &b, err, sizeof err), 0);
    assert_int_equal(b.dtype, dtype);
    assert_int_equal(b.rank, rank);
    for (int i = 0; i < rank; i++)
        assert_int_equal(b.shape[i], shape[i]);
    assert_int_equal(b.nbytes, a.nbytes);
    assert_non_null(b.data);
    if (a.nbytes) assert_memory_equal(a.data, b.data, a.nbytes);
    pnetrt_array_free(&b);
    assert_null(b.data);
    assert_int_equal(b.nbytes, 0);
    free(a.data);
    assert_int_equal(count_dir_entries(), 1); /* no temporary file left behind */
}

static void test_npy_round_trip_f32(void **state) {
    (void)state;
    round_trip(PNETRT_F32, 0, NULL);
    round_trip(PNETRT_F32, 1, (int64_t[]){5});
    round_trip(PNETRT_F32, 2, (int64_t[]){3, 4});
    round_trip(PNETRT_F32, 3, (int64_t[]){2, 3, 4});
    round_trip(PNETRT_F32, 8, (int64_t[]){1, 2, 1, 2, 1, 2, 1, 3});
    round_trip(PNETRT_F32, 2, (int64_t[]){1000, 300}); /* larger than one read buffer */
}

static void test_npy_round_trip_i32(void **state) {
    (void)state;
    round_trip(PNETRT_I32, 1, (int64_t[]){1});
    round_trip(PNETRT_I32, 1, (int64_t[]){17});
    round_trip(PNETRT_I32, 4, (int64_t[]){2, 1, 3, 2});
}

static void test_npy_round_trip_empty(void **state) {
    (void)state;
    round_trip(PNETRT_F32, 1, (int64_t[]){0});
    round_trip(PNETRT_F32, 3, (int64_t[]){3, 0, 2});
    round_trip(PNETRT_I32, 2, (int64_t[]){0, 5});
}

/* The exact bytes numpy 1.26 writes for np.zeros((2, 3), '<f4'): 21-digit growth room, 128-byte header. */
static void test_npy_write_matches_numpy(void **state) {
    (void)state;
    char err[512] = "";
    float zeros[6] = {0};
    pnetrt_array a = {.dtype = PNETRT_F32, .rank = 2, .shape = {2, 3}, .data = zeros, .nbytes = sizeof zeros};
    const char *path = P("np.npy");
    assert_int_equal(pnetrt_npy_write(path, &a, err, sizeof err), 0);
    unsigned char raw[256];
    assert_int_equal(read_bytes(path, raw, sizeof raw), 128 + 24);
    const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    assert_memory_equal(raw, "\x93NUMPY\x01\x00\x76\x00", 10);
    assert_memory_equal(raw + 10, dict, strlen(dict));
    for (size_t i = 10 + strlen(dict); i < 127; i++)
        assert_int_equal(raw[i], ' ');
    assert_int_equal(raw[127], '\n');

    int32_t one = 42;
    pnetrt_array b = {.dtype = PNETRT_I32, .rank = 1, .shape = {1}, .data = &one, .nbytes = 4};
    assert_int_equal(pnetrt_npy_write(path, &b, err, sizeof err), 0); /* replaces the old file */
    read_bytes(path, raw, sizeof raw);
    assert_memory_equal(raw + 10, "{'descr': '<i4', 'fortran_order': False, 'shape': (1,), }", 57);
}

/* ---- npy: files crafted byte by byte ------------------------------------------------------ */

static void test_npy_read_v1(void **state) {
    (void)state;
    char err[512] = "";
    const float v[3] = {1.5f, -2.0f, 3.25f};
    const char *path = P("v1.npy");
    make_npy(path, 1, "{'descr':'<f4','fortran_order':False,'shape':(3,)}", v, sizeof v);
    pnetrt_array a;
    assert_int_equal(pnetrt_npy_read(path, &a, err, sizeof err), 0);
    assert_int_equal(a.dtype, PNETRT_F32);
    assert_int_equal(a.rank, 1);
    assert_int_equal(a.shape[0], 3);
    assert_memory_equal(a.data, v, sizeof v);
    pnetrt_array_free(&a);

    /* keys in another order, double quotes, Python 2's "L" suffix, a scalar */
    const int32_t s = -7;
    make_npy(path, 1, "{ \"shape\" : ( ) , \"fortran_order\" : False, \"descr\" : \"<i4\" , }", &s, 4);
    assert_int_equal(pnetrt_npy_read(path, &a, err, sizeof err), 0);
    assert_int_equal(a.dtype, PNETRT_I32);
    assert_int_equal(a.rank, 0);
    assert_int_equal(*(int32_t *)a.data, -7);
    pnetrt_array_free(&a);

    const int32_t m[6] = {1, 2, 3, 4, 5, 6};
    make_npy(path, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2L, 3L), }", m, sizeof m);
    assert_int_equal(pnetrt_npy_read(path, &a, err, sizeof err), 0);
    assert_int_equal(a.rank, 2);
    assert_int_equal(a.shape[0], 2);
    assert_int_equal(a.shape[1], 3);
    assert_memory_equal(a.data, m, sizeof m);
    pnetrt_array_free(&a);
}

static void test_npy_read_v2_v3(void **state) {
    (void)state;
    char err[512] = "";
    const float v[4] = {1, 2, 3, 4};
    const char *path = P("v2.npy");
    for (int major = 2; major <= 3; major++) {
        make_npy(path, major, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", v, sizeof v);
        pnetrt_array a;
        assert_int_equal(pnetrt_npy_read(path, &a, err, sizeof err), 0);
        assert_int_equal(a.rank, 2);
        assert_int_equal(a.shape[0], 2);
        assert_int_equal(a.shape[1], 2);
        assert_memory_equal(a.data, v, sizeof v);
        pnetrt_array_free(&a);
    }
}

/* ---- npy: errors -------------------------------------------------------------------------- */

static void test_npy_missing_file(void **state) {
    (void)state;
    npy_error(P("nope.npy"), "cannot open: No such file or directory");
    npy_error(tmpdir, "cannot open: Is a directory");
}

static void test_npy_bad_magic(void **state) {
    (void)state;
    const char *path = P("bad.npy");
    write_bytes(path, "PK\x03\x04 this is a zip file", 24);
    npy_error(path, "not a .npy file (bad magic)");
    write_bytes(path, "", 0);
    npy_error(path, "not a .npy file (bad magic)");
}

static void test_npy_truncated_header(void **state) {
    (void)state;
    const char *path = P("th.npy");
    write_bytes(path, "\x93NUM", 4);
    npy_error(path, "truncated header");
    write_bytes(path, "\x93NUMPY\x01\x00\x76", 9);
    npy_error(path, "truncated header");
    write_bytes(path, "\x93NUMPY\x02\x00\x76\x00", 10);
    npy_error(path, "truncated header");
    /* the length field says 118 bytes of header but only 12 follow */
    write_bytes(path, "\x93NUMPY\x01\x00\x76\x00{'descr': '", 22);
    npy_error(path, "truncated header: header says 118 bytes of header but the file has 12");
    write_bytes(path, "\x93NUMPY\x04\x00\x00\x00", 10);
    npy_error(path, "unsupported .npy format version 4.0");
}

static void test_npy_truncated_data(void **state) {
    (void)state;
    const char *path = P("td.npy");
    float v[100] = {0};
    make_npy(path, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (32, 32), }", v, 100);
    npy_error(path, "truncated: header says 4096 bytes of data but the file has 100");
}

static void test_npy_trailing_data(void **state) {
    (void)state;
    const char *path = P("tr.npy");
    float v[4] = {0};
    make_npy(path, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", v, sizeof v);
    npy_error(path, "trailing data: header says 12 bytes of data but the file has 16");
}

static void test_npy_bad_dict(void **state) {
    (void)state;
    const char *path = P("dict.npy");
    static const struct {
        const char *dict, *want;
    } cases[] = {
        {"['descr', '<f4']", "corrupt header: expected '{' at byte 0"},
        {"{'descr': '<f4', 'fortran_order': False}", "corrupt header: dict lacks 'shape'"},
        {"{'descr' '<f4', 'fortran_order': False, 'shape': (1,)}", "expected ':' after a key at byte 9"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1}", "unexpected key at byte 56"},
        {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", "duplicate key"},
        {"{'descr': '<f4', 'fortran_order': false, 'shape': (1,)}", "expected True or False"},
        {"{'descr': '<f4', 'fortran_order': Falsey, 'shape': (1,)}", "expected True or False"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1)}", "is not a tuple"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,,)}", "expected a non-negative integer"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}", "expected a non-negative integer"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2 3)}", "expected ',' or ')'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3]}", "expected '(' to start the shape tuple"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} x", "unexpected text after the dict"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,)", "expected ',' or '}'"},
        {"{'descr': '<f4, 'fortran_order': False, 'shape': (1,)}", "expected ',' or '}' at byte 17"},
        {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,)}", "expected a string"},
        {"{'descr': '<f\\x34', 'fortran_order': False, 'shape': (1,)}", "unsupported character in string"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1)}", "more than 8 dimensions"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}", "shape dimension too large"},
    };
    const float one = 1;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        make_npy(path, 1, cases[i].dict, &one, 4);
        npy_error(path, cases[i].want);
    }
    /* A NUL or another control byte inside a string would cut a key or the dtype short ('<f4\0'
     * read as '<f4'): refused. The '@' of each dict becomes the byte under test. */
    const char *at[] = {"{'descr': '<f4@', 'fortran_order': False, 'shape': (1,)}",
                        "{'descr@': '<f4', 'fortran_order': False, 'shape': (1,)}"};
    const unsigned char bytes[] = {0x00, 0x01, 0x1b, 0x7f};
    for (size_t i = 0; i < 2; i++)
        for (size_t b = 0; b < sizeof bytes; b++) {
            make_npy(path, 1, at[i], &one, 4);
            FILE *f = fopen(path, "r+b");
            assert_non_null(f);
            unsigned char buf[256];
            size_t n = fread(buf, 1, sizeof buf, f);
            unsigned char *a = memchr(buf, '@', n);
            assert_non_null(a);
            *a = bytes[b];
            rewind(f);
            assert_int_equal(fwrite(buf, 1, n, f), n);
            fclose(f);
            npy_error(path, "unsupported character in string");
        }
}

static void test_npy_fortran_order(void **state) {
    (void)state;
    const char *path = P("f.npy");
    float v[6] = {0};
    make_npy(path, 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", v, sizeof v);
    npy_error(path, "fortran_order is True; only C-order arrays are supported");
}

static void test_npy_unsupported_dtype(void **state) {
    (void)state;
    const char *path = P("in.npy");
    double d[2] = {0};
    make_npy(path, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", d, sizeof d);
    npy_error(path, "dtype '<f8' is not supported; expected float32 ('<f4') or int32 ('<i4')");
    make_npy(path, 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (4,), }", d, sizeof d);
    npy_error(path, "dtype '>f4' is big-endian, which is not supported");
    make_npy(path, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (16,), }", d, sizeof d);
    npy_error(path, "dtype '|u1' is not supported");
}

static void test_npy_shape_overflow(void **state) {
    (void)state;
    const char *path = P("big.npy");
    float v[1] = {0};
    make_npy(path, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", v, 4);
    npy_error(path, "shape is too large");
    /* a product that fits in 64 bits but not in the file is reported as truncation, not allocated */
    make_npy(path, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }", v, 4);
    npy_error(path, "truncated: header says 4000000000000 bytes of data but the file has 4");
    /* a zero dimension makes the product 0 whatever the others are */
    make_npy(path, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 9223372036854775807), }", NULL, 0);
    char err[512] = "";
    pnetrt_array a;
    assert_int_equal(pnetrt_npy_read(path, &a, err, sizeof err), 0);
    assert_int_equal(a.nbytes, 0);
    pnetrt_array_free(&a);
}

static void test_npy_write_errors(void **state) {
    (void)state;
    char err[512] = "";
    float v[6] = {0};
    const char *path = P("w.npy");
    pnetrt_array a = {.dtype = PNETRT_F32, .rank = 2, .shape = {2, 3}, .data = v, .nbytes = 20};
    assert_error(pnetrt_npy_write(path, &a, err, sizeof err), err, path, "array holds 20 bytes but its shape needs 24");
    a.nbytes = 24;
    a.rank = 9;
    assert_error(pnetrt_npy_write(path, &a, err, sizeof err), err, path, "cannot write rank 9");
    a.rank = 2;
    a.shape[1] = -3;
    assert_error(pnetrt_npy_write(path, &a, err, sizeof err), err, path, "negative");
    a.shape[1] = 3;
    a.dtype = (pnetrt_dtype)7;
    assert_error(pnetrt_npy_write(path, &a, err, sizeof err), err, path, "cannot write dtype 7");
    a.dtype = PNETRT_F32;
    const char *bad = P("no/such/dir/w.npy");
    assert_error(pnetrt_npy_write(bad, &a, err, sizeof err), err, bad, "cannot write it: creating the temporary file ");
    assert_int_equal(count_dir_entries(), 0);
}

/* A tiny err buffer truncates the message but still terminates it; NULL err is allowed. */
static void test_npy_small_err_buffer(void **state) {
    (void)state;
    char err[8];
    pnetrt_array a;
    assert_int_not_equal(pnetrt_npy_read(P("nope.npy"), &a, err, sizeof err), 0);
    assert_int_equal(strlen(err), 7);
    assert_int_not_equal(pnetrt_npy_read(P("nope.npy"), &a, NULL, 0), 0);
}

/* ---- safetensors: round trip -------------------------------------------------------------- */

static void test_st_round_trip(void **state) {
    (void)state;
    char err[512] = "";
    const char *path = P("w.safetensors");
    float w[6] = {1, 2, 3, 4, 5, 6}, b[2] = {-1, 0.5f}, s = 9;
    /* names out of order, to check that the writer keeps the given order */
    const char *names[] = {"fc1.weight", "bias \"q\"\\", "a.scalar", "empty"};
    const int ranks[] = {2, 1, 0, 2};
    const int64_t shapes[][8] = {{2, 3}, {2}, {0}, {4, 0}};
    const float *data[] = {w, b, &s, NULL};
    const char *keys[] = {"format", "epoch"}, *values[] = {"pt", "7"};
    assert_int_equal(pnetrt_st_write(path, 4, names, ranks, shapes, data, 2, keys, values, err, sizeof err), 0);
    assert_string_equal(err, "");
    assert_int_equal(count_dir_entries(), 1);

    /* the header is the reference layout: little-endian length, JSON padded with spaces to 8 bytes */
    unsigned char raw[1024];
    size_t n = read_bytes(path, raw, sizeof raw);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | raw[i];
    assert_int_equal(hlen % 8, 0);
    assert_int_equal(n, 8 + hlen + 36);
    const char *json = "{\"__metadata__\":{\"format\":\"pt\",\"epoch\":\"7\"},"
                       "\"fc1.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                       "\"bias \\\"q\\\"\\\\\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[24,32]},"
                       "\"a.scalar\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[32,36]},"
                       "\"empty\":{\"dtype\":\"F32\",\"shape\":[4,0],\"data_offsets\":[36,36]}}";
    assert_true(hlen >= strlen(json) && hlen < strlen(json) + 8);
    assert_memory_equal(raw + 8, json, strlen(json));
    for (size_t i = 8 + strlen(json); i < 8 + hlen; i++)
        assert_int_equal(raw[i], ' ');

    pnetrt_st *st;
    assert_int_equal(pnetrt_st_open(path, &st, err, sizeof err), 0);
    assert_int_equal(pnetrt_st_count(st), 4);
    for (int i = 0; i < 4; i++)
        assert_string_equal(pnetrt_st_name(st, i), names[i]);
    assert_null(pnetrt_st_name(st, 4));
    assert_null(pnetrt_st_name(st, -1));
    float got[6] = {0};
    assert_int_equal(pnetrt_st_read_f32(st, "fc1.weight", 2, (int64_t[]){2, 3}, got, err, sizeof err), 0);
    assert_memory_equal(got, w, sizeof w);
    assert_int_equal(pnetrt_st_read_f32(st, names[1], 1, (int64_t[]){2}, got, err, sizeof err), 0);
    assert_memory_equal(got, b, sizeof b);
    assert_int_equal(pnetrt_st_read_f32(st, "a.scalar", 0, NULL, got, err, sizeof err), 0);
    assert_true(got[0] == 9.0f);
    assert_int_equal(pnetrt_st_read_f32(st, "empty", 2, (int64_t[]){4, 0}, NULL, err, sizeof err), 0);
    pnetrt_st_close(st);

    /* no metadata: no __metadata__ key at all */
    assert_int_equal(pnetrt_st_write(path, 1, names, ranks, shapes, data, 0, NULL, NULL, err, sizeof err), 0);
    read_bytes(path, raw, sizeof raw);
    assert_memory_equal(raw + 8, "{\"fc1.weight\":", 14);
}

/* Tensor bytes for pnetrt_st_write_pieces from the tensors' arrays, one piece at a time through a
 * scratch buffer (as a receive would fill it), failing at piece `fail_at` when it is not -1; the
 * offsets asked for must be each tensor's in order, in pieces of at most `piece` bytes. */
typedef struct pieces {
    const float *const *data;
    size_t piece;
    int calls, fail_at, last_i;
    size_t want_off;
    char buf[64];
} pieces;

static const void *piece_from(void *ctx, int i, size_t off, size_t len, char *why, size_t whylen) {
    pieces *p = ctx;
    if (i != p->last_i) {
        assert_true(i > p->last_i);
        p->last_i = i;
        p->want_off = 0;
    }
    assert_int_equal(off, p->want_off);
    assert_true(len >= 1 && len <= p->piece && len <= sizeof p->buf);
    p->want_off += len;
    if (p->calls++ == p->fail_at) {
        snprintf(why, whylen, "rank 2 went away");
        return NULL;
    }
    memcpy(p->buf, (const char *)p->data[i] + off, len);
    return p->buf;
}

/* Written in pieces, the file is the one pnetrt_st_write writes; a piece that cannot be had leaves
 * the file that was there, and no other. */
static void test_st_write_pieces(void **state) {
    (void)state;
    char err[512] = "";
    float w[6] = {1, 2, 3, 4, 5, 6}, b[2] = {-1, 0.5f}, s = 9;
    const char *names[] = {"fc1.weight", "b", "a.scalar", "empty"};
    const int ranks[] = {2, 1, 0, 2};
    const int64_t shapes[][8] = {{2, 3}, {2}, {0}, {4, 0}};
    const float *data[] = {w, b, &s, NULL};
    const char *keys[] = {"format"}, *values[] = {"pt"};
    unsigned char whole[1024], got[1024];
    assert_int_equal(pnetrt_st_write(P("whole.safetensors"), 4, names, ranks, shapes, data, 1, keys, values, err, sizeof err), 0);
    size_t n = read_bytes(P("whole.safetensors"), whole, sizeof whole);
    for (size_t piece = 1; piece <= 32; piece += 3) {
        pieces p = {data, piece, 0, -1, -1, 0, {0}};
        assert_int_equal(pnetrt_st_write_pieces(P("p.safetensors"), 4, names, ranks, shapes, piece, piece_from, &p, 1, keys,
                                                values, err, sizeof err),
                         0);
        assert_int_equal(read_bytes(P("p.safetensors"), got, sizeof got), n);
        assert_memory_equal(got, whole, n);
        assert_int_equal(p.calls, (int)((24 + piece - 1) / piece + (8 + piece - 1) / piece + (4 + piece - 1) / piece));
    }
    pieces p = {data, 4, 0, 3, -1, 0, {0}};
    assert_int_not_equal(pnetrt_st_write_pieces(P("p.safetensors"), 4, names, ranks, shapes, 4, piece_from, &p, 1, keys, values,
                                                err, sizeof err),
                         0);
    assert_non_null(strstr(err, "p.safetensors"));
    assert_non_null(strstr(err, "rank 2 went away"));
    assert_int_equal(p.calls, 4);
    assert_int_equal(read_bytes(P("p.safetensors"), got, sizeof got), n); /* the old file, untouched */
    assert_memory_equal(got, whole, n);
    assert_int_equal(count_dir_entries(), 2);
}

/* Many tensors: lookups by name go through the sorted index. */
static void test_st_many_tensors(void **state) {
    (void)state;
    enum { N = 300 };
    char err[512] = "", namebuf[N][16];
    const char *names[N];
    int ranks[N];
    int64_t shapes[N][8];
    float vals[N];
    const float *data[N];
    for (int i = 0; i < N; i++) {
        snprintf(namebuf[i], sizeof namebuf[i], "t%d", (i * 7) % N);
        names[i] = namebuf[i];
        ranks[i] = 1;
        shapes[i][0] = 1;
        vals[i] = (float)i;
        data[i] = &vals[i];
    }
    const char *path = P("many.safetensors");
    assert_int_equal(
        pnetrt_st_write(path, N, names, ranks, (const int64_t(*)[8])shapes, data, 0, NULL, NULL, err, sizeof err), 0);
    pnetrt_st *st;
    assert_int_equal(pnetrt_st_open(path, &st, err, sizeof err), 0);
    assert_int_equal(pnetrt_st_count(st), N);
    for (int i = 0; i < N; i++) {
        float f = -1;
        assert_int_equal(pnetrt_st_read_f32(st, names[i], 1, (int64_t[]){1}, &f, err, sizeof err), 0);
        assert_true(f == (float)i);
    }
    pnetrt_st_close(st);
}

/* ---- safetensors: conversions from hand-built files --------------------------------------- */

static void test_st_f16(void **state) {
    (void)state;
    char err[512] = "";
    const uint16_t h[] = {0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x0200, 0x7c00, 0xfc00, 0x7e00, 0x8000, 0x0000};
    const char *path = P("h.safetensors");
    make_st(path, "{\"h\":{\"dtype\":\"F16\",\"shape\":[11],\"data_offsets\":[0,22]}}", h, sizeof h);
    pnetrt_st *st;
    assert_int_equal(pnetrt_st_open(path, &st, err, sizeof err), 0);
    float f[11];
    assert_int_equal(pnetrt_st_read_f32(st, "h", 1, (int64_t[]){11}, f, err, sizeof err), 0);
    assert_true(f[0] == 1.0f);
    assert_true(f[1] == -2.0f);
    assert_true(f[2] == 0.5f);
    assert_true(f[3] == 65504.0f);
    assert_true(f[4] == 0x1p-24f); /* smallest subnormal */
    assert_true(f[5] == 0x1p-15f); /* a larger subnormal */
    assert_true(isinf(f[6]) && f[6] > 0);
    assert_true(isinf(f[7]) && f[7] < 0);
    assert_true(isnan(f[8]));
    assert_true(f[9] == 0.0f && signbit(f[9]));
    assert_true(f[10] == 0.0f && !signbit(f[10]));
    pnetrt_st_close(st);
}

/* More elements than one conversion chunk, at an odd offset in the data block (after a 1-element tensor). */
static void test_st_f16_large(void **state) {
    (void)state;
    enum { N = 70001 };
    char err[512] = "", json[256];
    uint16_t *h = malloc((N + 1) * 2);
    float *f = malloc(N * sizeof *f);
    assert_non_null(h);
    assert_non_null(f);
    h[0] = 0xffff;
    for (int i = 0; i < N; i++)
        h[1 + i] = (uint16_t)(0x3c00 + (i % 1024)); /* 1 + k/1024 */
    snprintf(json, sizeof json,
             "{\"pad\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,2]},"
             "\"big\":{\"dtype\":\"F16\",\"shape\":[%d],\"data_offsets\":[2,%d]}}",
             N, 2 + 2 * N);
    const char *path = P("big.safetensors");
    make_st(path, json, h, (N + 1) * 2);
    pnetrt_st *st;
    assert_int_equal(pnetrt_st_open(path, &st, err, sizeof err), 0);
    assert_int_equal(pnetrt_st_read_f32(st, "big", 1, (int64_t[]){N}, f, err, sizeof err), 0);
    for (int i = 0; i < N; i++)
        if (f[i] != 1.0f + (float)(i % 1024) / 1024.0f) fail_msg("element %d is %g", i, (double)f[i]);
    pnetrt_st_close(st);
    free(h);
    free(f);
}

/* A slice of a tensor, F32 and converted, and slices past its end refused with one line. */
static void test_st_read_range(void **state) {
    (void)state;
    char err[512] = "";
    const float w[6] = {1, 2, 3, 4, 5, 6};
    const uint16_t h[4] = {0x3c00, 0xc000, 0x3800, 0x0000}; /* 1, -2, 0.5, 0 */
    unsigned char data[32];
    memcpy(data, w, 24);
    memcpy(data + 24, h, 8);
    const char *path = P("range.safetensors");
    make_st(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[0,24]},"
                  "\"h\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[24,32]}}", data, sizeof data);
    pnetrt_st *st;
    assert_int_equal(pnetrt_st_open(path, &st, err, sizeof err), 0);
    float f[6] = {0};
    assert_int_equal(pnetrt_st_read_f32_range(st, "w", 2, (int64_t[]){3, 2}, 2, 4, f, err, sizeof err), 0);
    assert_memory_equal(f, w + 2, 4 * sizeof(float));
    assert_int_equal(pnetrt_st_read_f32_range(st, "h", 1, (int64_t[]){4}, 1, 2, f, err, sizeof err), 0);
    assert_true(f[0] == -2.0f && f[1] == 0.5f);
    assert_int_equal(pnetrt_st_read_f32_range(st, "w", 2, (int64_t[]){3, 2}, 6, 0, f, err, sizeof err), 0);
    assert_int_not_equal(pnetrt_st_read_f32_range(st, "w", 2, (int64_t[]){3, 2}, 4, 3, f, err, sizeof err), 0);
    assert_non_null(strstr(err, "tensor 'w': elements 4 to 7 are out of range"));
    assert_int_not_equal(pnetrt_st_read_f32_range(st, "w", 2, (int64_t[]){3, 2}, -1, 1, f, err, sizeof err), 0);
    assert_int_not_equal(pnetrt_st_read_f32_range(st, "w", 2, (int64_t[]){2, 3}, 0, 1, f, err, sizeof err), 0);
    assert_non_null(strstr(err, "has shape [3,2], expected [2,3]"));
    pnetrt_st_close(st);
}

static void test_st_bf16_f64(void **state) {
    (void)state;
    char err[512] = "";
    unsigned char data[4 * 2 + 7 * 8];
    const uint16_t bf[] = {0x3f80, 0xc040, 0x7f80, 0x0001};
    const double d[] = {1.5, -1e300, 1e-50, 0x1.fffffe8p127, 0x1.ffffffp127, -0x1.fffffe8p127, NAN};
    memcpy(data, bf, sizeof bf);
    memcpy(data + sizeof bf, d, sizeof d);
    const char *path = P("m.safetensors");
    make_st(path,
            "{\"__metadata__\":{\"x\":\"y\"},"
            "\"b\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
            "\"d\":{\"shape\":[7],\"data_offsets\":[8,64],\"dtype\":\"F64\",\"extra\":true}}",
            data, sizeof data);
    pnetrt_st *st;
    assert_int_equal(pnetrt_st_open(path, &st, err, sizeof err), 0);
    assert_int_equal(pnetrt_st_count(st), 2);
    assert_string_equal(pnetrt_st_name(st, 0), "b");
    float f[7];
    assert_int_equal(pnetrt_st_read_f32(st, "b", 2, (int64_t[]){2, 2}, f, err, sizeof err), 0);
    assert_true(f[0] == 1.0f);
    assert_true(f[1] == -3.0f);
    assert_true(isinf(f[2]) && f[2] > 0);
    assert_true(f[3] == 0x1p-133f);
    assert_int_equal(pnetrt_st_read_f32(st, "d", 1, (int64_t[]){7}, f, err, sizeof err), 0);
    assert_true(f[0] == 1.5f);
    assert_true(isinf(f[1]) && f[1] < 0);
    assert_true(f[2] == 0.0f);
    assert_true(f[3] == FLT_MAX); /* rounds down to the largest float, not to infinity */
    assert_true(isinf(f[4]) && f[4] > 0);
    assert_true(f[5] == -FLT_MAX);
    assert_true(isnan(f[6]));
    pnetrt_st_close(st);
}

/* ---- safetensors: errors ------------------------------------------------------------------ */

static void test_st_missing_file(void **state) {
    (void)state;
    st_open_error(P("nope.safetensors"), "cannot open: No such file or directory");
    st_open_error(tmpdir, "cannot open: Is a directory");
}

static void test_st_short_file(void **state) {
    (void)state;
    const char *path = P("s.safetensors");
    write_bytes(path, "\x10\x00\x00\x00\x00", 5);
    st_open_error(path, "truncated: the file has 5 bytes, too few for the 8-byte header length");
    write_bytes(path, "", 0);
    st_open_error(path, "the file has 0 bytes");
}

static void test_st_header_too_long(void **state) {
    (void)state;
    const char *path = P("l.safetensors");
    write_bytes(path, "\x00\x01\x00\x00\x00\x00\x00\x00{}", 10);
    st_open_error(path, "corrupt header: header length 256 is larger than the file (2 bytes after the length)");
    write_bytes(path, "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10);
    st_open_error(path, "header length 18446744073709551615 is larger than the file");
}

static void test_st_corrupt_json(void **state) {
    (void)state;
    const char *path = P("j.safetensors");
    static const struct {
        const char *json, *want;
    } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",", "corrupt header: invalid JSON"},
        {"not json at all", "corrupt header: invalid JSON at byte 0"},
        {"{}  x", "corrupt header: unexpected text after the JSON object at byte 4"},
        {"[1, 2]", "corrupt header: not a JSON object"},
        {"{\"a\":[]}", "corrupt header: tensor 'a' is not a JSON object"},
        {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", "tensor 'a' has no string 'dtype'"},
        {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", "tensor 'a' has no 'shape' array"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", "tensor 'a' has no 'data_offsets' array"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", "must hold non-negative integers"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", "must hold non-negative integers"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", "must hold non-negative integers"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}",
         "data_offsets of tensor 'a' must be [begin, end]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", "has 9 dimensions"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", "overflows"},
        {"{\"__metadata__\":[],\"a\":1}", "'__metadata__' is not an object"},
    };
    float v = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        make_st(path, cases[i].json, &v, 4);
        st_open_error(path, cases[i].want);
    }
    /* a NUL inside the header would cut a name short in cJSON */
    write_bytes(path, "\x0a\x00\x00\x00\x00\x00\x00\x00{\"a\0b\":1}", 18);
    st_open_error(path, "corrupt header: NUL byte at byte 3 of the header");
}

static void test_st_offsets_out_of_range(void **state) {
    (void)state;
    const char *path = P("o.safetensors");
    float v[2] = {0};
    make_st(path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", v, sizeof v);
    st_open_error(path, "tensor 'a' has data_offsets [4,12] outside the 8-byte data block");
    make_st(path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", v, sizeof v);
    st_open_error(path, "tensor 'a' has data_offsets [8,4] outside");
    make_st(path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,1e300]}}", v, sizeof v);
    st_open_error(path, "data_offsets of tensor 'a' must be [begin, end]");
}

static void test_st_offsets_disagree_with_shape(void **state) {
    (void)state;
    const char *path = P("d.safetensors");
    float v[4] = {0};
    make_st(path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", v, sizeof v);
    st_open_error(path, "tensor 'a' has data_offsets [0,16] (16 bytes) but F32 [3] needs 12 bytes");
    make_st(path, "{\"a\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", v, sizeof v);
    st_open_error(path, "but F16 [2,2] needs 8 bytes");
}

static void test_st_unknown_dtype(void **state) {
    (void)state;
    char err[512] = "";
    const char *path = P("u.safetensors");
    float v[2] = {0};
    make_st(path, "{\"a\":{\"dtype\":\"Q4_K\",\"shape\":[2],\"data_offsets\":[0,8]}}", v, sizeof v);
    st_open_error(path, "tensor 'a' has unknown dtype 'Q4_K'");
    /* a known dtype opens (its size is checked) but cannot be read as float */
    make_st(path, "{\"step\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", v, sizeof v);
    pnetrt_st *st;
    assert_int_equal(pnetrt_st_open(path, &st, err, sizeof err), 0);
    float f;
    assert_error(pnetrt_st_read_f32(st, "step", 1, (int64_t[]){1}, &f, err, sizeof err), err, path,
                 "tensor 'step' has dtype I64; only F32, F16, BF16 and F64 can be read as float");
    pnetrt_st_close(st);
}

static void test_st_missing_tensor_and_wrong_shape(void **state) {
    (void)state;
    char err[512] = "";
    const char *path = P("w.safetensors");
    static float w[128 * 63];
    const char *names[] = {"fc1.weight"};
    const int ranks[] = {2};
    const int64_t shapes[][8] = {{128, 63}};
    const float *data[] = {w};
    assert_int_equal(pnetrt_st_write(path, 1, names, ranks, shapes, data, 0, NULL, NULL, err, sizeof err), 0);
    pnetrt_st *st;
    assert_int_equal(pnetrt_st_open(path, &st, err, sizeof err), 0);
    static float dst[128 * 64];
    assert_error(pnetrt_st_read_f32(st, "fc2.bias", 1, (int64_t[]){10}, dst, err, sizeof err), err, path,
                 "missing tensor 'fc2.bias'");
    assert_error(pnetrt_st_read_f32(st, "fc1.weight", 2, (int64_t[]){128, 64}, dst, err, sizeof err), err, path,
                 "tensor 'fc1.weight' has shape [128,63], expected [128,64]");
    assert_error(pnetrt_st_read_f32(st, "fc1.weight", 1, (int64_t[]){128 * 63}, dst, err, sizeof err), err, path,
                 "has shape [128,63], expected [8064]");
    assert_error(pnetrt_st_read_f32(st, "fc1.weight", 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}, dst, err, sizeof err),
                 err, path, "expected rank 9 is out of range");
    pnetrt_st_close(st);
    pnetrt_st_close(NULL);
}

/* Names under a prefix: found with pnetrt_st_set_prefix, suggested without it; the tensors never read are
 * listed, in file order. */
static void test_st_prefix_and_unused(void **state) {
    (void)state;
    char err[512] = "", list[256];
    const char *path = P("pre.safetensors");
    static const float v[4] = {1, 2, 3, 4};
    const char *names[] = {"model.fc1.weight", "model.fc1.bias", "fc1.bias", "extra"};
    const int ranks[] = {1, 1, 1, 1};
    const int64_t shapes[][8] = {{2}, {1}, {1}, {1}};
    const float *data[] = {v, v + 2, v + 3, v + 3};
    assert_int_equal(pnetrt_st_write(path, 4, names, ranks, shapes, data, 0, NULL, NULL, err, sizeof err), 0);
    pnetrt_st *st;
    assert_int_equal(pnetrt_st_open(path, &st, err, sizeof err), 0);
    float f[2];
    assert_int_equal(pnetrt_st_unused(st, NULL, list, sizeof list), 4);
    assert_error(pnetrt_st_read_f32(st, "fc1.weight", 1, (int64_t[]){2}, f, err, sizeof err), err, path,
                 "missing tensor 'fc1.weight'; the file has 'model.fc1.weight': its names carry the prefix 'model.' "
                 "(give --weights-prefix model.)");
    assert_int_equal(pnetrt_st_read_f32(st, "fc1.bias", 1, (int64_t[]){1}, f, err, sizeof err), 0);
    assert_true(f[0] == 4);
    assert_int_equal(pnetrt_st_set_prefix(st, "model.", err, sizeof err), 0);
    assert_int_equal(pnetrt_st_read_f32(st, "fc1.weight", 1, (int64_t[]){2}, f, err, sizeof err), 0);
    assert_true(f[0] == 1 && f[1] == 2);
    int rank;
    int64_t shape[PNETRT_MAX_RANK];
    assert_int_equal(pnetrt_st_shape(st, "fc1.bias", &rank, shape), 0);
    assert_int_equal(pnetrt_st_shape(st, "extra", &rank, shape), -1);
    assert_error(pnetrt_st_read_f32(st, "extra", 1, (int64_t[]){1}, f, err, sizeof err), err, path,
                 "missing tensor 'model.extra'; the file has 'extra', without the prefix 'model.'");
    assert_error(pnetrt_st_read_f32(st, "fc1.weight", 1, (int64_t[]){3}, f, err, sizeof err), err, path,
                 "tensor 'model.fc1.weight' has shape [2], expected [3]");
    /* read so far: fc1.bias and model.fc1.weight (shape lookups and failed lookups do not count) */
    assert_int_equal(pnetrt_st_unused(st, NULL, list, sizeof list), 2);
    assert_string_equal(list, "'model.fc1.bias', 'extra'");
    assert_int_equal(pnetrt_st_unused(st, "model.", list, sizeof list), 1);
    assert_string_equal(list, "'extra'");
    assert_int_equal(pnetrt_st_unused(st, NULL, NULL, 0), 2);
    assert_int_equal(pnetrt_st_set_prefix(st, NULL, err, sizeof err), 0);
    assert_int_equal(pnetrt_st_read_f32(st, "extra", 1, (int64_t[]){1}, f, err, sizeof err), 0);
    pnetrt_st_close(st);
}

static void test_st_duplicate_name(void **state) {
    (void)state;
    char err[512] = "";
    const char *path = P("dup.safetensors");
    float v[2] = {0};
    make_st(path,
            "{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
            "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
            "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
            v, sizeof v);
    st_open_error(path, "corrupt header: duplicate tensor name 'b'");
    make_st(path, "{\"__metadata__\":{},\"__metadata__\":{}}", v, 0);
    st_open_error(path, "duplicate '__metadata__'");

    /* the writer refuses duplicates too, and leaves no file behind */
    const char *names[] = {"x", "y", "x"}, *keys[] = {"k", "k"}, *values[] = {"1", "2"};
    const int ranks[] = {1, 1, 1};
    const int64_t shapes[][8] = {{1}, {1}, {1}};
    const float *data[] = {v, v, v};
    const char *out = P("out.safetensors");
    assert_error(pnetrt_st_write(out, 3, names, ranks, shapes, data, 0, NULL, NULL, err, sizeof err), err, out,
                 "duplicate tensor name 'x'");
    assert_error(pnetrt_st_write(out, 2, names, ranks, shapes, data, 2, keys, values, err, sizeof err), err, out,
                 "duplicate metadata key 'k'");
    assert_int_equal(count_dir_entries(), 1);
}

static void test_st_write_errors(void **state) {
    (void)state;
    char err[512] = "";
    float v[4] = {0};
    const char *out = P("e.safetensors");
    const char *names[] = {"a"}, *meta[] = {"__metadata__"}, *bad_utf8[] = {"caf\xc3"};
    int ranks[] = {9};
    int64_t shapes[][8] = {{2, -1}};
    const float *data[] = {v}, *nodata[] = {NULL};
    assert_error(
        pnetrt_st_write(out, 1, names, ranks, (const int64_t(*)[8])shapes, data, 0, NULL, NULL, err, sizeof err), err,
        out, "tensor 'a' has rank 9; expected 0 to 8");
    ranks[0] = 2;
    assert_error(
        pnetrt_st_write(out, 1, names, ranks, (const int64_t(*)[8])shapes, data, 0, NULL, NULL, err, sizeof err), err,
        out, "tensor 'a' has negative dimension -1");
    shapes[0][1] = 2;
    assert_error(
        pnetrt_st_write(out, 1, names, ranks, (const int64_t(*)[8])shapes, nodata, 0, NULL, NULL, err, sizeof err), err,
        out, "tensor 'a' has NULL data");
    assert_error(
        pnetrt_st_write(out, 1, meta, ranks, (const int64_t(*)[8])shapes, data, 0, NULL, NULL, err, sizeof err), err,
        out, "cannot be named '__metadata__'");
    assert_error(
        pnetrt_st_write(out, 1, bad_utf8, ranks, (const int64_t(*)[8])shapes, data, 0, NULL, NULL, err, sizeof err),
        err, out, "is not valid UTF-8");
    const char *bad = P("missing/dir/e.safetensors");
    assert_error(
        pnetrt_st_write(bad, 1, names, ranks, (const int64_t(*)[8])shapes, data, 0, NULL, NULL, err, sizeof err), err,
        bad, "beside it failed: No such file or directory");
    assert_int_equal(count_dir_entries(), 0);
}

/* ---- safetensors: the data block must be tiled, names must be whole ----------------------- */

/* Overlapping tensors, gaps and trailing bytes are how a polyglot file hides a second payload; the format
   requires the data_offsets, sorted, to cover the data block exactly. */
static void test_st_offsets_must_tile(void **state) {
    (void)state;
    char err[512] = "";
    const char *path = P("t.safetensors");
    float v[4] = {1, 2, 3, 4};
    static const struct {
        const char *json;
        size_t len;
        const char *want;
    } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         12, "tensor 'b' has data_offsets [4,12], which overlap tensor 'a' at [0,8]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
         8, "has data_offsets [0,8], which overlap tensor '"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
         12, "tensor 'b' has data_offsets [8,12], leaving bytes 4 to 8 of the data block after tensor 'a' unused"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
         "tensor 'a' has data_offsets [4,8], leaving bytes 0 to 4 of the data block unused"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
         "4 bytes after the last tensor 'a', which ends at byte 4 of the 8-byte data block"},
        {"{}", 4, "4 bytes of data, but no tensors"},
        {"{\"__metadata__\":{\"k\":\"v\"}}", 1, "1 bytes of data, but no tensors"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        make_st(path, cases[i].json, v, cases[i].len);
        st_open_error(path, cases[i].want);
    }

    /* the file's order does not matter, and empty tensors may sit anywhere, even at the same offset */
    make_st(path,
            "{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
            "\"z1\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
            "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
            "\"z2\":{\"dtype\":\"F32\",\"shape\":[3,0],\"data_offsets\":[8,8]},"
            "\"z3\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]},"
            "\"z4\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[16,16]}}",
            v, sizeof v);
    pnetrt_st *st;
    assert_int_equal(pnetrt_st_open(path, &st, err, sizeof err), 0);
    assert_int_equal(pnetrt_st_count(st), 6);
    float f[2];
    assert_int_equal(pnetrt_st_read_f32(st, "b", 1, (int64_t[]){2}, f, err, sizeof err), 0);
    assert_true(f[0] == 3 && f[1] == 4);
    pnetrt_st_close(st);
    make_st(path, "{\"__metadata__\":{}}", v, 0);
    assert_int_equal(pnetrt_st_open(path, &st, err, sizeof err), 0);
    assert_int_equal(pnetrt_st_count(st), 0);
    pnetrt_st_close(st);
}

/* cJSON ends a string at a \u0000 escape, so "fc2.bias\u0000evil" would load as fc2.bias. */
static void test_st_nul_and_control_in_names(void **state) {
    (void)state;
    char err[512] = "";
    const char *path = P("n.safetensors");
    float v = 0;
    static const struct {
        const char *json, *want;
    } cases[] = {
        {"{\"fc2.bias\\u0000evil\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
         "corrupt header: tensor name 'fc2.bias\\u0000evil' holds a NUL character (\\u0000)"},
        {"{\"a\":{\"dtype\":\"F32\\u0000x\",\"shape\":[1],\"data_offsets\":[0,4]}}",
         "corrupt header: tensor 'a' holds a string with a NUL character (\\u0000)"},
        {"{\"__metadata__\":{\"k\":\"v\\u0000w\"},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
         "corrupt header: '__metadata__' holds a string with a NUL character (\\u0000)"},
        {"{\"a\\u001b[31mb\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
         "tensor name 'a\\u001b[31mb' holds a control character"},
        {"{\"a\nb\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
         "tensor name 'a\\u000ab' holds a control character"},
        {"{\"a\\u007f\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
         "tensor name 'a\\u007f' holds a control character"},
        {"{\"a\":{\"dtype\":\"F\\n32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "tensor 'a' has unknown dtype 'F\\u000a32'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        make_st(path, cases[i].json, &v, 4);
        st_open_error(path, cases[i].want);
    }
    /* an escaped backslash before u0000 is no NUL: the name is the 7 characters a\u0000 */
    make_st(path, "{\"a\\\\u0000\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", &v, 4);
    pnetrt_st *st;
    assert_int_equal(pnetrt_st_open(path, &st, err, sizeof err), 0);
    assert_string_equal(pnetrt_st_name(st, 0), "a\\u0000");
    pnetrt_st_close(st);
    /* non-ASCII names are fine */
    make_st(path, "{\"caf\\u00e9.w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", &v, 4);
    assert_int_equal(pnetrt_st_open(path, &st, err, sizeof err), 0);
    assert_string_equal(pnetrt_st_name(st, 0), "caf\xc3\xa9.w");
    pnetrt_st_close(st);
    /* the writer refuses what the reader would */
    const char *out = P("out.safetensors"), *names[] = {"fc1.weight\n"};
    const int ranks[] = {1};
    const int64_t shapes[][8] = {{1}};
    const float *data[] = {&v};
    assert_error(pnetrt_st_write(out, 1, names, ranks, shapes, data, 0, NULL, NULL, err, sizeof err), err, out,
                 "tensor name 'fc1.weight\\u000a' holds a control character");
}

/* The writer's offsets tile the data block: header padded to 8 bytes, then each tensor where the
   previous one ended, empty tensors and scalars included, and nothing after the last. */
static void test_st_write_tiles(void **state) {
    (void)state;
    char err[512] = "";
    const char *path = P("tiles.safetensors");
    static float a[3 * 5], s[1] = {7}, b[9];
    const char *names[] = {"a", "empty", "s", "b", "empty2"};
    const int ranks[] = {2, 2, 0, 1, 1};
    const int64_t shapes[][8] = {{3, 5}, {0, 4}, {0}, {9}, {0}};
    const float *data[] = {a, NULL, s, b, NULL};
    const char *keys[] = {"format"}, *values[] = {"pt"};
    assert_int_equal(pnetrt_st_write(path, 5, names, ranks, shapes, data, 1, keys, values, err, sizeof err), 0);

    static unsigned char raw[4096];
    size_t n = read_bytes(path, raw, sizeof raw);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | raw[i];
    assert_int_equal(hlen % 8, 0);
    assert_int_equal(n, 8 + hlen + (15 + 1 + 9) * 4);
    char *hdr = strndup((const char *)raw + 8, (size_t)hlen);
    assert_non_null(hdr);
    const char *want[] = {"\"data_offsets\":[0,60]", "\"data_offsets\":[60,60]", "\"data_offsets\":[60,64]",
                          "\"data_offsets\":[64,100]", "\"data_offsets\":[100,100]"};
    const char *at = hdr;
    for (int i = 0; i < 5; i++) {
        const char *hit = strstr(at, want[i]);
        if (!hit) fail_msg("header \"%s\" lacks %s after byte %td", hdr, want[i], at - hdr);
        at = hit + 1;
    }
    free(hdr);
    pnetrt_st *st;
    assert_int_equal(pnetrt_st_open(path, &st, err, sizeof err), 0);
    assert_int_equal(pnetrt_st_count(st), 5);
    pnetrt_st_close(st);
}

/* ---- atomic writes of user-named files (fileio.h) ----------------------------------------- */

static void assert_text(const char *path, const char *want) {
    unsigned char buf[256] = {0};
    size_t n = read_bytes(path, buf, sizeof buf - 1);
    assert_int_equal(n, strlen(want));
    assert_string_equal((char *)buf, want);
}

static int write_text(const char *path, const char *text, char *err, size_t errlen) {
    const void *bufs[1] = {text};
    size_t lens[1] = {strlen(text)};
    return pnetrt_io_write_atomic(path, 1, bufs, lens, err, errlen);
}

/* Entries of the test directory whose name starts with prefix. */
static int count_prefixed(const char *prefix) {
    DIR *d = opendir(tmpdir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

/* A symbolic link (relative, absolute, dangling, a chain) is followed: its target gets the new
 * content and the link stays a link. */
static void test_write_through_link(void **state) {
    (void)state;
    char err[512] = "", buf[PATH_MAX];
    write_bytes(P("t.bin"), "old", 3);
    assert_int_equal(symlink("t.bin", P("rel.bin")), 0);
    assert_int_equal(write_text(P("rel.bin"), "new", err, sizeof err), 0);
    assert_text(P("t.bin"), "new");
    ssize_t n = readlink(P("rel.bin"), buf, sizeof buf);
    assert_int_equal(n, 5);
    assert_memory_equal(buf, "t.bin", 5);
    assert_int_equal(symlink(P("t.bin"), P("abs.bin")), 0);
    assert_int_equal(symlink("abs.bin", P("chain.bin")), 0);
    assert_int_equal(write_text(P("chain.bin"), "chained", err, sizeof err), 0);
    assert_text(P("t.bin"), "chained");
    struct stat sb;
    assert_int_equal(lstat(P("chain.bin"), &sb), 0);
    assert_true(S_ISLNK(sb.st_mode));
    assert_int_equal(symlink("made.bin", P("dangling.bin")), 0);
    assert_int_equal(write_text(P("dangling.bin"), "made", err, sizeof err), 0);
    assert_text(P("made.bin"), "made");
    assert_int_equal(lstat(P("dangling.bin"), &sb), 0);
    assert_true(S_ISLNK(sb.st_mode));
    assert_int_equal(symlink("loop2.bin", P("loop1.bin")), 0);
    assert_int_equal(symlink("loop1.bin", P("loop2.bin")), 0);
    assert_error(write_text(P("loop1.bin"), "x", err, sizeof err), err, P("loop1.bin"), "cannot follow the link");
    assert_int_equal(count_dir_entries(), 8); /* no temporary file left */
}

/* A FIFO, a device, a link to one, a directory: refused with one line, and left as they were; the null
 * device is written in place. */
static void test_write_refuses_special_files(void **state) {
    (void)state;
    char err[512] = "";
    assert_int_equal(mkfifo(P("fifo"), 0644), 0);
    assert_error(write_text(P("fifo"), "x", err, sizeof err), err, P("fifo"),
                 "not a regular file (a FIFO); refusing to replace it");
    assert_int_equal(symlink("fifo", P("to_fifo")), 0);
    assert_error(write_text(P("to_fifo"), "x", err, sizeof err), err, P("to_fifo"), "which is not a regular file (a FIFO)");
    struct stat sb;
    assert_int_equal(lstat(P("fifo"), &sb), 0);
    assert_true(S_ISFIFO(sb.st_mode));
    /* /dev/full's numbers; mknod needs root (CAP_MKNOD), so the device case runs only there */
    if (mknod(P("full"), S_IFCHR | 0644, makedev(1, 7)) == 0) {
        assert_error(write_text(P("full"), "x", err, sizeof err), err, P("full"),
                     "not a regular file (a character device); refusing to replace it");
        assert_int_equal(lstat(P("full"), &sb), 0);
        assert_true(S_ISCHR(sb.st_mode));
        unlink(P("full"));
    }
    assert_error(write_text(tmpdir, "x", err, sizeof err), err, tmpdir, "it is a directory");
    assert_error(write_text("", "x", err, sizeof err), err, "", "no path to write to");
    assert_int_equal(write_text("/dev/null", "discarded", err, sizeof err), 0);
    assert_int_equal(stat("/dev/null", &sb), 0);
    assert_true(S_ISCHR(sb.st_mode));
    assert_int_equal(count_dir_entries(), 2);
}

/* The temporary file is `.NAME.pnet-tmp.PID.N` beside the target (a link's target), and abort leaves
 * the old file as it was. */
static void test_write_temp_name_and_abort(void **state) {
    (void)state;
    char err[512] = "", want[PATH_MAX];
    write_bytes(P("keep.bin"), "old", 3);
    assert_int_equal(symlink(P("keep.bin"), P("l.bin")), 0);
    pnetrt_io_out o;
    assert_int_equal(pnetrt_io_out_open(&o, P("l.bin"), err, sizeof err), 0);
    snprintf(want, sizeof want, "%s/.keep.bin.pnet-tmp.%ld.0", tmpdir, (long)getpid());
    assert_string_equal(o.tmp, want);
    assert_true(pnetrt_io_write_full(o.fd, "partial", 7));
    pnetrt_io_out_abort(&o);
    assert_text(P("keep.bin"), "old");
    assert_int_equal(count_dir_entries(), 2);
    assert_int_equal(pnetrt_io_check_output(P("keep.bin"), err, sizeof err), 0);
    assert_int_equal(count_dir_entries(), 2);
}

/* Temporary files of a process that is gone (SIGKILL) are removed by the next write of the same
 * target; those of a live process, and of other targets, stay. */
static void test_write_removes_stale_temps(void **state) {
    (void)state;
    char err[512] = "", name[128];
    pid_t dead = fork();
    assert_true(dead >= 0);
    if (dead == 0) _exit(0);
    assert_int_equal(waitpid(dead, NULL, 0), dead);
    snprintf(name, sizeof name, ".s.bin.pnet-tmp.%ld.0", (long)dead);
    write_bytes(P(name), "stale", 5);
    snprintf(name, sizeof name, ".s.bin.pnet-tmp.%ld.3", (long)getppid());
    write_bytes(P(name), "live", 4);
    snprintf(name, sizeof name, ".other.bin.pnet-tmp.%ld.0", (long)dead);
    write_bytes(P(name), "other", 5);
    write_bytes(P(".s.bin.pnet-tmp.x.0"), "not ours", 8);
    assert_int_equal(write_text(P("s.bin"), "saved", err, sizeof err), 0);
    assert_text(P("s.bin"), "saved");
    snprintf(name, sizeof name, ".s.bin.pnet-tmp.%ld.0", (long)dead);
    assert_int_equal(access(P(name), F_OK), -1);
    assert_int_equal(count_prefixed(".s.bin.pnet-tmp."), 2);
    assert_int_equal(count_prefixed(".other.bin.pnet-tmp."), 1);
}

/* SIGTERM, SIGINT or SIGHUP during a write, with pnetrt_io_remove_temp_on_signals, ends the process
 * as before and leaves no temporary file; the old file stays. */
static void test_write_signal_removes_temp(void **state) {
    (void)state;
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP};
    write_bytes(P("sig.bin"), "old", 3);
    for (int i = 0; i < 3; i++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            char err[512];
            pnetrt_io_out o;
            pnetrt_io_remove_temp_on_signals();
            if (pnetrt_io_out_open(&o, P("sig.bin"), err, sizeof err)) _exit(2);
            pnetrt_io_write_full(o.fd, "half", 4);
            raise(sigs[i]);
            _exit(3);
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status));
        assert_int_equal(WTERMSIG(status), sigs[i]);
        assert_int_equal(count_prefixed(".sig.bin.pnet-tmp."), 0);
        assert_text(P("sig.bin"), "old");
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_npy_round_trip_f32, clear_tmpdir),
        cmocka_unit_test_teardown(test_npy_round_trip_i32, clear_tmpdir),
        cmocka_unit_test_teardown(test_npy_round_trip_empty, clear_tmpdir),
        cmocka_unit_test_teardown(test_npy_write_matches_numpy, clear_tmpdir),
        cmocka_unit_test_teardown(test_npy_read_v1, clear_tmpdir),
        cmocka_unit_test_teardown(test_npy_read_v2_v3, clear_tmpdir),
        cmocka_unit_test_teardown(test_npy_missing_file, clear_tmpdir),
        cmocka_unit_test_teardown(test_npy_bad_magic, clear_tmpdir),
        cmocka_unit_test_teardown(test_npy_truncated_header, clear_tmpdir),
        cmocka_unit_test_teardown(test_npy_truncated_data, clear_tmpdir),
        cmocka_unit_test_teardown(test_npy_trailing_data, clear_tmpdir),
        cmocka_unit_test_teardown(test_npy_bad_dict, clear_tmpdir),
        cmocka_unit_test_teardown(test_npy_fortran_order, clear_tmpdir),
        cmocka_unit_test_teardown(test_npy_unsupported_dtype, clear_tmpdir),
        cmocka_unit_test_teardown(test_npy_shape_overflow, clear_tmpdir),
        cmocka_unit_test_teardown(test_npy_write_errors, clear_tmpdir),
        cmocka_unit_test_teardown(test_npy_small_err_buffer, clear_tmpdir),
        cmocka_unit_test_teardown(test_st_round_trip, clear_tmpdir),
        cmocka_unit_test_teardown(test_st_write_pieces, clear_tmpdir),
        cmocka_unit_test_teardown(test_st_many_tensors, clear_tmpdir),
        cmocka_unit_test_teardown(test_st_f16, clear_tmpdir),
        cmocka_unit_test_teardown(test_st_f16_large, clear_tmpdir),
        cmocka_unit_test_teardown(test_st_read_range, clear_tmpdir),
        cmocka_unit_test_teardown(test_st_bf16_f64, clear_tmpdir),
        cmocka_unit_test_teardown(test_st_missing_file, clear_tmpdir),
        cmocka_unit_test_teardown(test_st_short_file, clear_tmpdir),
        cmocka_unit_test_teardown(test_st_header_too_long, clear_tmpdir),
        cmocka_unit_test_teardown(test_st_corrupt_json, clear_tmpdir),
        cmocka_unit_test_teardown(test_st_offsets_out_of_range, clear_tmpdir),
        cmocka_unit_test_teardown(test_st_offsets_disagree_with_shape, clear_tmpdir),
        cmocka_unit_test_teardown(test_st_unknown_dtype, clear_tmpdir),
        cmocka_unit_test_teardown(test_st_missing_tensor_and_wrong_shape, clear_tmpdir),
        cmocka_unit_test_teardown(test_st_prefix_and_unused, clear_tmpdir),
        cmocka_unit_test_teardown(test_st_duplicate_name, clear_tmpdir),
        cmocka_unit_test_teardown(test_st_write_errors, clear_tmpdir),
        cmocka_unit_test_teardown(test_st_offsets_must_tile, clear_tmpdir),
        cmocka_unit_test_teardown(test_st_nul_and_control_in_names, clear_tmpdir),
        cmocka_unit_test_teardown(test_st_write_tiles, clear_tmpdir),
        cmocka_unit_test_teardown(test_write_through_link, clear_tmpdir),
        cmocka_unit_test_teardown(test_write_refuses_special_files, clear_tmpdir),
        cmocka_unit_test_teardown(test_write_temp_name_and_abort, clear_tmpdir),
        cmocka_unit_test_teardown(test_write_removes_stale_temps, clear_tmpdir),
        cmocka_unit_test_teardown(test_write_signal_removes_temp, clear_tmpdir),
    };
    return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
