/* The option helpers of the executables' commands (main.c: infer, bench, info; train_cli.c: train, eval,
 * bench --train): one-line errors, option values checked the same way by every command, --opt=value,
 * "did you mean" for an unknown option, and the clock. */
#include "options.h"
#include "comm.h"
#include "data.h"
#include "fileio.h"
#include "rt.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

int pnetrt_rank = -1;
const char *pnetrt_cmd = "this command";

bool pnetrt_bench_more(bool want) { return pnetrt_comm_all_ok(pnetrt_comm_default(), want); }

void pnetrt_bench_comm_report(double comm_seconds, double wall) {
    pnetrt_comm *c = pnetrt_comm_default();
    int K = pnetrt_comm_size(c);
    if (K < 2) return;
    double *all = pnetrt_rank == 0 ? calloc((size_t)K, sizeof *all) : NULL;
    pnetrt_comm_gather_f64(c, comm_seconds, all);
    if (!all) return;
    printf("ranks: %d; time in communication (waiting on messages included):", K);
    for (int r = 0; r < K; r++) printf(" rank %d %.1f ms (%.1f%%)%s", r, all[r] * 1e3, wall > 0 ? 100 * all[r] / wall : 0.0, r + 1 < K ? "," : "\n");
    free(all);
}

void pnetrt_bench_memory_report(int64_t param_floats) {
    /* ru_maxrss: the process's peak resident set in KiB, weights, arenas and all. */
    struct rusage ru;
    double rss = getrusage(RUSAGE_SELF, &ru) == 0 ? (double)ru.ru_maxrss / 1024.0 : -1;
    double params = (double)param_floats * 4.0 / (1024.0 * 1024.0);
    pnetrt_comm *c = pnetrt_comm_default();
    int K = pnetrt_comm_size(c);
    if (K > 1) {
        double *all = pnetrt_rank == 0 ? calloc((size_t)K, sizeof *all) : NULL;
        pnetrt_comm_gather_f64(c, rss, all);
        if (!all) return;
        printf("memory: peak resident per rank:");
        for (int k = 0; k < K; k++) printf(" rank %d %.1f MiB%s", k, all[k], k + 1 < K ? "," : ";");
        printf(" parameters %.1f MiB in all\n", params);
        free(all);
    } else if (rss >= 0) {
        printf("memory: peak resident %.1f MiB, parameters %.1f MiB\n", rss, params);
    }
}

int pnetrt_die(const char *fmt, ...) {
    /* One write per message: under mpirun the ranks' stderr streams are merged, and a message
       written in pieces can be split by another rank's. */
    char buf[2048];
    int n = pnetrt_rank >= 0 ? snprintf(buf, sizeof buf, "%s: rank %d: error: ", pnetrt_prog, pnetrt_rank)
                             : snprintf(buf, sizeof buf, "%s: error: ", pnetrt_prog);
    if (n < 0 || (size_t)n >= sizeof buf) n = 0;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0) m = 0;
    n += m;
    if ((size_t)n > sizeof buf - 2) n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    fflush(stderr);
    for (const char *p = buf; n > 0;) {
        ssize_t w = write(STDERR_FILENO, p, (size_t)n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        p += w;
        n -= (int)w;
    }
    return 1;
}

void pnetrt_note_scaling(const char *path, const pnetrt_data_source *s, bool no_scale, bool int_input) {
    if (pnetrt_rank > 0 || !s->type) return;
    bool u8 = !strcmp(s->type, "uint8");
    if (u8 && s->scaled)
        fprintf(stderr, "%s: note: %s: uint8 samples divided by 255, to [0, 1] (--no-scale keeps 0..255)\n", pnetrt_prog,
                path);
    else if (u8 && !int_input)
        fprintf(stderr, "%s: note: %s: uint8 samples kept as 0..255 (--no-scale)\n", pnetrt_prog, path);
    else if (no_scale && u8)
        fprintf(stderr, "%s: note: --no-scale has no effect on %s: the ids of an i32 input are never scaled\n",
                pnetrt_prog, path);
    else if (no_scale)
        fprintf(stderr, "%s: note: --no-scale has no effect on %s: it holds %s, and only uint8 samples are scaled\n",
                pnetrt_prog, path, s->type);
}

void pnetrt_warn(const char *msg) {
    if (pnetrt_rank <= 0 && msg && *msg) fprintf(stderr, "%s: warning: %s\n", pnetrt_prog, msg);
}

int pnetrt_opt_int(const char *opt, const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return pnetrt_die("%s needs an integer from %lld to %lld, not '%s'", opt, lo, hi, s);
    *out = v;
    return 0;
}

int pnetrt_opt_num(const char *opt, const char *s, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v > 0 && v <= hi) || !isfinite(v)) {
        if (isinf(hi)) return pnetrt_die("%s needs a finite positive number, not '%s'", opt, s);
        return pnetrt_die("%s needs a number in (0, %g], not '%s'", opt, hi, s);
    }
    *out = v;
    return 0;
}

int pnetrt_opt_once(char *seen, size_t len, const char *opt) {
    char key[64];
    snprintf(key, sizeof key, " %s ", opt);
    if (strstr(seen, key)) return pnetrt_die("%s given twice; give each option once", opt);
    size_t n = strlen(seen);
    snprintf(seen + n, len - n, "%s", n ? key + 1 : key);
    return 0;
}

int pnetrt_check_overwrite(const char *out_opt, const char *out, const char *what, const char *in_opt, const char *in) {
    if (!out || !in || !pnetrt_io_same_file(out, in)) return 0;
    if (strcmp(out, in) == 0)
        return pnetrt_die("%s: %s and %s name the same file; %s would overwrite it", out, out_opt, in_opt, what);
    return pnetrt_die("%s and %s are the same file (%s and %s); %s would overwrite it", out, in, out_opt, in_opt, what);
}

double pnetrt_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* --stage-threads N,N,...: at most cap integers from 1 to 4096 into out[0..cap). Returns the count, or -1 after
 * reporting the problem. */
int pnetrt_parse_stage_list(const char *s, int *out, int cap) {
    int n = 0;
    for (const char *p = s;;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 1 || v > 4096 || (*end && *end != ','))
            return pnetrt_die("--stage-threads needs comma-separated integers from 1 to 4096, not '%s'", s), -1;
        if (n == cap) return pnetrt_die("--stage-threads takes at most %d counts, not '%s'", cap, s), -1;
        out[n++] = (int)v;
        if (!*end) return n;
        p = end + 1;
    }
}

int pnetrt_parse_stage_threads(const char *s, int *out) {
    return pnetrt_parse_stage_list(s, out, PNETRT_MAX_STAGES);
}

/* The arguments pnetrt_opt_split was given: a split value is found by its address in them. */
static char **split_argv;
static int split_argc;

char **pnetrt_opt_split(int argc, char **argv, int *out_argc) {
    size_t keys = 0, n = (size_t)argc;
    for (int i = 1; i < argc; i++) {
        const char *eq = strncmp(argv[i], "--", 2) == 0 ? strchr(argv[i], '=') : NULL;
        if (eq && eq > argv[i] + 2) keys += (size_t)(eq - argv[i]) + 1, n++;
    }
    /* One block: the new argv, then the "--opt" names. */
    char **args = malloc((n + 1) * sizeof *args + keys);
    if (!args) return NULL;
    char *k = (char *)(args + n + 1);
    int m = 0;
    for (int i = 0; i < argc; i++) {
        char *eq = i && strncmp(argv[i], "--", 2) == 0 ? strchr(argv[i], '=') : NULL;
        if (!eq || eq == argv[i] + 2) {
            args[m++] = argv[i];
            continue;
        }
        size_t len = (size_t)(eq - argv[i]);
        memcpy(k, argv[i], len);
        k[len] = 0;
        args[m++] = k;
        args[m++] = eq + 1;
        k += len + 1;
    }
    args[m] = NULL;
    split_argv = argv;
    split_argc = argc;
    *out_argc = m;
    return args;
}

void pnetrt_opt_split_free(char **args) {
    free(args);
    split_argv = NULL;
    split_argc = 0;
}

/* "--flag=value" when a is the value split from it, else NULL. */
static const char *split_from(const char *a) {
    for (int i = 1; i < split_argc; i++) {
        const char *eq = strncmp(split_argv[i], "--", 2) == 0 ? strchr(split_argv[i], '=') : NULL;
        if (eq && eq + 1 == a) return split_argv[i];
    }
    return NULL;
}

/* Edit distance with adjacent swaps counting 1, as pnetc's suggestions count it; 1000 past 64 characters. */
static int distance(const char *a, size_t la, const char *b, size_t lb) {
    if (la > 64 || lb > 64) return 1000;
    int d[65][65];
    for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[la][lb];
}

const char *pnetrt_opt_closest(const char *word, const char *words, char *buf, size_t n) {
    while (*word == '-') word++;
    size_t lw = strlen(word);
    int bestd = (int)(lw + 2) / 3 + 1; /* within a third of the word, as pnetc suggests */
    const char *best = NULL;
    size_t bestl = 0;
    for (const char *p = words; *p;) {
        p += strspn(p, " ");
        size_t l = strcspn(p, " ");
        const char *name = p;
        while (l && *name == '-') name++, l--;
        int dist = l && lw >= 2 ? distance(word, lw, name, l) : 1000;
        if (dist < bestd) bestd = dist, best = p, bestl = (size_t)(name - p) + l;
        p = name + l;
    }
    if (!best || bestl >= n) return NULL;
    memcpy(buf, best, bestl);
    buf[bestl] = 0;
    return buf;
}

/* Other tools' names for the executables' options (PyTorch scripts, Keras): each applies where the
 * command takes pnet's. */
static const char *const option_aliases[][2] = {
    {"--learning-rate", "--lr"}, {"--learning_rate", "--lr"}, {"--batch-size", "--batch"},
    {"--batch_size", "--batch"}, {"--num-epochs", "--epochs"}, {"--checkpoint", "--save"},
    {"--num-threads", "--threads"}, {"--jobs", "--threads"},
    {"--data", "--input"},       {"--input", "--data"}, /* infer reads --input, train --data */
};

static bool listed(const char *opt, size_t len, const char *opts) {
    char key[80];
    if (len + 3 > sizeof key) return false;
    snprintf(key, sizeof key, " %.*s ", (int)len, opt);
    return strstr(opts, key) != NULL;
}

int pnetrt_opt_unknown(const char *arg, const char *opts) {
    const char *cmd = pnetrt_cmd;
    const char *joined = split_from(arg);
    if (joined) {
        size_t len = (size_t)(arg - 1 - joined);
        return pnetrt_die("%.*s takes no value ('%s')", (int)len, joined, joined);
    }
    if (listed(arg, strlen(arg), opts)) return pnetrt_die("%s needs a value", arg);
    char buf[80];
    const char *best = NULL;
    for (size_t i = 0; !best && i < sizeof option_aliases / sizeof option_aliases[0]; i++)
        if (!strcmp(arg, option_aliases[i][0]) && listed(option_aliases[i][1], strlen(option_aliases[i][1]), opts))
            best = option_aliases[i][1];
    if (!best && arg[0] == '-') best = pnetrt_opt_closest(arg, opts, buf, sizeof buf);
    /* The options every command takes, which main.c takes out of the arguments first. */
    if (!best && arg[0] == '-') best = pnetrt_opt_closest(arg, " --rank-layout ", buf, sizeof buf);
    if (best) return pnetrt_die("unknown option '%s' for %s; did you mean '%s'?", arg, cmd, best);
    if (arg[0] != '-') return pnetrt_die("unexpected argument '%s' for %s: each value follows its option; see '%s --help'", arg, cmd, pnetrt_prog);
    return pnetrt_die("unknown option '%s' for %s; see '%s --help'", arg, cmd, pnetrt_prog);
}
