/* The executables' option helpers (runtime/cli/options.c): "--opt=value" split into "--opt" and
 * "value", the closest option for a suggestion, and the one-line message for an option a command
 * does not take. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cli/options.h"
#include "rt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_split(void **state) {
    (void)state;
    char a0[] = "net", a1[] = "train", a2[] = "--data=x.csv", a3[] = "--epochs", a4[] = "3", a5[] = "--input=x=a=b.npy",
         a6[] = "-o=x", a7[] = "--=x", a8[] = "--save=", a9[] = "plain=1";
    char *argv[] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, NULL};
    int n = 0;
    char **s = pnetrt_opt_split(10, argv, &n);
    assert_non_null(s);
    const char *want[] = {"net", "train", "--data", "x.csv", "--epochs", "3", "--input", "x=a=b.npy", "-o=x", "--=x",
                          "--save", "", "plain=1"};
    assert_int_equal(n, 13);
    for (int i = 0; i < n; i++) assert_string_equal(s[i], want[i]);
    assert_null(s[n]);
    assert_ptr_equal(s[3], a2 + 7); /* the value is the argument's own text */
    pnetrt_opt_split_free(s);
}

static void test_closest(void **state) {
    (void)state;
    const char *opts = " --data --labels --epochs --batch --lr --weights --val-labels --no-shuffle ";
    char buf[64];
    assert_string_equal(pnetrt_opt_closest("--epoch", opts, buf, sizeof buf), "--epochs");
    assert_string_equal(pnetrt_opt_closest("--weight", opts, buf, sizeof buf), "--weights");
    assert_string_equal(pnetrt_opt_closest("--val_labels", opts, buf, sizeof buf), "--val-labels");
    assert_string_equal(pnetrt_opt_closest("--noshuffle", opts, buf, sizeof buf), "--no-shuffle");
    assert_string_equal(pnetrt_opt_closest("-epochs", opts, buf, sizeof buf), "--epochs"); /* dashes aside */
    assert_string_equal(pnetrt_opt_closest("trian", " infer train eval bench info ", buf, sizeof buf), "train");
    assert_null(pnetrt_opt_closest("--frobnicate", opts, buf, sizeof buf));
    assert_null(pnetrt_opt_closest("--x", opts, buf, sizeof buf)); /* one letter suggests nothing */
    assert_null(pnetrt_opt_closest("--epoch", opts, buf, 5));      /* no room: nothing */
}

/* The message pnetrt_opt_unknown writes for arg, read back from stderr. */
static void unknown_message(const char *arg, const char *opts, char *out, size_t n) {
    char path[] = "/tmp/pnet-test-options-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    assert_int_equal(pnetrt_opt_unknown(arg, opts), 1);
    dup2(saved, STDERR_FILENO);
    close(saved);
    lseek(fd, 0, SEEK_SET);
    ssize_t r = read(fd, out, n - 1);
    out[r > 0 ? r : 0] = 0;
    close(fd);
    unlink(path);
}

static void test_unknown(void **state) {
    (void)state;
    const char *opts = " --data --epochs --lr --batch --no-shuffle ";
    char msg[512];
    pnetrt_prog = "net";
    pnetrt_cmd = "train";
    unknown_message("--epoch", opts, msg, sizeof msg);
    assert_string_equal(msg, "net: error: unknown option '--epoch' for train; did you mean '--epochs'?\n");
    unknown_message("--learning-rate", opts, msg, sizeof msg);
    assert_string_equal(msg, "net: error: unknown option '--learning-rate' for train; did you mean '--lr'?\n");
    unknown_message("--batch-size", " --data ", msg, sizeof msg); /* no alias to an option the command lacks */
    assert_string_equal(msg, "net: error: unknown option '--batch-size' for train; see 'net --help'\n");
    pnetrt_cmd = "infer";
    unknown_message("--data", " --input --output ", msg, sizeof msg);
    assert_string_equal(msg, "net: error: unknown option '--data' for infer; did you mean '--input'?\n");
    pnetrt_cmd = "train";
    unknown_message("--rank-layuot", opts, msg, sizeof msg); /* every command's, taken out by main.c */
    assert_string_equal(msg, "net: error: unknown option '--rank-layuot' for train; did you mean '--rank-layout'?\n");
    unknown_message("--epochs", opts, msg, sizeof msg);
    assert_string_equal(msg, "net: error: --epochs needs a value\n");
    unknown_message("stray", opts, msg, sizeof msg);
    assert_string_equal(msg, "net: error: unexpected argument 'stray' for train: each value follows its option; see 'net --help'\n");
    /* A flag's split value: the flag takes none. */
    char a0[] = "net", a1[] = "train", a2[] = "--no-shuffle=1";
    char *argv[] = {a0, a1, a2, NULL};
    int n;
    char **s = pnetrt_opt_split(3, argv, &n);
    unknown_message(s[3], opts, msg, sizeof msg);
    assert_string_equal(msg, "net: error: --no-shuffle takes no value ('--no-shuffle=1')\n");
    pnetrt_opt_split_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_closest),
        cmocka_unit_test(test_unknown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
