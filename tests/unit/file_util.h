/* Test helper shared by the file-format tests (test_io, test_data): a temporary directory that
 * each test empties, paths in it, and files written byte for byte. Include after <cmocka.h>,
 * with FILE_UTIL_PREFIX naming the directory ("pnetrt_io", ...). */
#ifndef PNET_TESTS_FILE_UTIL_H
#define PNET_TESTS_FILE_UTIL_H

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[PATH_MAX];

/* A path inside the test's temporary directory. */
static char *tpath(char *buf, const char *name) {
    if (snprintf(buf, PATH_MAX, "%s/%s", tmpdir, name) >= PATH_MAX) fail_msg("path too long");
    return buf;
}
#define P(name) tpath((char[PATH_MAX]){0}, (name))

static void write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (len) assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static size_t read_bytes(const char *path, unsigned char *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

/* A .npy file of the given major version whose header is `dict` padded with spaces and '\n' to 64 bytes. */
static void make_npy(const char *path, int major, const char *dict, const void *data, size_t len) {
    unsigned char buf[4096];
    size_t pre = major == 1 ? 10 : 12, dlen = strlen(dict);
    size_t total = (pre + dlen + 1 + 63) / 64 * 64;
    assert_true(total + len <= sizeof buf);
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)major;
    buf[7] = 0;
    size_t hlen = total - pre;
    for (size_t i = 0; i < pre - 8; i++)
        buf[8 + i] = (unsigned char)(hlen >> (8 * i));
    memcpy(buf + pre, dict, dlen);
    memset(buf + pre + dlen, ' ', total - pre - dlen - 1);
    buf[total - 1] = '\n';
    if (len) memcpy(buf + total, data, len);
    write_bytes(path, buf, total + len);
}

static int make_tmpdir(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "%s/" FILE_UTIL_PREFIX "_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

/* Empties the directory between tests, so each test sees only its own files. */
static int clear_tmpdir(void **state) {
    (void)state;
    DIR *d = opendir(tmpdir);
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlink(P(e->d_name));
    closedir(d);
    return 0;
}

static int remove_tmpdir(void **state) {
    clear_tmpdir(state);
    return rmdir(tmpdir);
}

#endif
