/* The option helpers of the executables' commands (main.c: infer, bench, info; train_cli.c: train, eval,
 * bench --train): one-line errors, option values checked the same way by every command, and the clock. */
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
#include <time.h>
#include <unistd.h>

int pnetrt_rank = -1;

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
