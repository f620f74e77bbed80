/* pnetc: the driver. Runs the stages in order and stops after any stage that reported errors:
 * parse (with imports) -> check (names, blocks, shapes, directives) -> graph IR -> emit. */
#include "check/check.h"
#include "ir/graph.h"
#include "parse/parse.h"
#include "support/util.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef PNET_VERSION
#define PNET_VERSION "0.0.0"
#endif

static const char usage[] =
    "usage: pnetc [options] FILE.pnet\n"
    "       pnetc [options] FILE.graph\n"
    "\n"
    "Checks a .pnet network and prints its graph. A FILE.graph (the text printed by\n"
    "--emit=graph) is read back as graph IR, with every shape checked again.\n"
    "\n"
    "options:\n"
    "  --check            check the file; print nothing and exit 0 when it is valid\n"
    "  --emit=graph       print the checked graph IR, one node per line\n"
    "  --emit=dot         print the graph as Graphviz, one cluster per pipeline stage\n"
    "  -o FILE            write the output to FILE instead of standard output\n"
    "  -I DIR             search DIR for imports (before PNET_PATH, the file's directory and the stdlib)\n"
    "  --network NAME     pick the network NAME when the file defines several\n"
    "  --error-limit=N    stop after N errors (default 20, 0 for no limit)\n"
    "  -w                 suppress warnings\n"
    "  --help             print this help\n"
    "  --version          print the version\n";

typedef enum { ACT_NONE, ACT_CHECK, ACT_GRAPH, ACT_DOT } action;

/* The stdlib: <prefix>/share/pnet/stdlib beside an installed pnetc, else the source tree's. */
static const char *find_stdlib(char *buf, size_t n) {
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(buf, n, "%s/../share/pnet/stdlib/nn.pnet", exe);
            if (access(buf, R_OK) == 0) {
                snprintf(buf, n, "%s/../share/pnet/stdlib", exe);
                return buf;
            }
        }
    }
#ifdef PNET_SOURCE_STDLIB
    snprintf(buf, n, "%s", PNET_SOURCE_STDLIB);
    return buf;
#else
    return NULL;
#endif
}

static int fail(const char *fmt, const char *arg) {
    fprintf(stderr, "pnetc: error: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    return 1;
}

/* Writes g as the action asks, to out_path or stdout. */
static int emit(pn_graph *g, action act, const char *out_path) {
    if (act == ACT_CHECK) return 0;
    FILE *out = stdout;
    if (out_path && !(out = fopen(out_path, "w"))) {
        fprintf(stderr, "pnetc: error: cannot write '%s': %s\n", out_path, strerror(errno));
        return 1;
    }
    if (act == ACT_GRAPH) pn_graph_print(g, out);
    else pn_graph_print_dot(g, out);
    bool werr = ferror(out) != 0;
    if (out != stdout) werr |= fclose(out) != 0;
    else werr |= fflush(out) != 0;
    if (werr) {
        fprintf(stderr, "pnetc: error: cannot write '%s'\n", out_path ? out_path : "standard output");
        return 1;
    }
    return 0;
}

/* FILE.graph: the text form of the graph IR, read back and checked. */
static int run_graph_file(const char *file, action act, const char *out_path) {
    size_t len;
    char *text = pn_read_file(file, &len);
    if (!text) {
        fprintf(stderr, "pnetc: error: cannot read '%s': %s\n", file, strerror(errno));
        return 1;
    }
    char err[512];
    pn_graph *g = pn_graph_parse(text, len, err, sizeof err);
    free(text);
    if (!g) {
        fprintf(stderr, "%s: error: %s\n", file, err);
        return 1;
    }
    int rc = emit(g, act, out_path);
    pn_graph_free(g);
    return rc;
}

int main(int argc, char **argv) {
    action act = ACT_NONE;
    const char *file = NULL, *out_path = NULL, *network = NULL;
    pn_diags diags;
    pn_diags_init(&diags, stderr);
    pn_program prog;
    pn_program_init(&prog, &diags);
    int rc = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            rc = 0;
            goto done;
        } else if (strcmp(a, "--version") == 0) {
            printf("pnetc %s\n", PNET_VERSION);
            rc = 0;
            goto done;
        } else if (strcmp(a, "--check") == 0) {
            act = ACT_CHECK;
        } else if (strcmp(a, "--emit=graph") == 0) {
            act = ACT_GRAPH;
        } else if (strcmp(a, "--emit=dot") == 0) {
            act = ACT_DOT;
        } else if (strncmp(a, "--emit=", 7) == 0) {
            rc = fail("unknown --emit kind '%s'; expected graph or dot", a + 7);
            goto done;
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "-I") == 0 || strcmp(a, "--network") == 0) {
            if (i + 1 >= argc) {
                rc = fail("option '%s' needs an argument", a);
                goto done;
            }
            const char *v = argv[++i];
            if (a[1] == 'o') out_path = v;
            else if (a[1] == 'I') pn_vec_push(&prog.arena, &prog.include_dirs, (void *)v);
            else network = v;
        } else if (strncmp(a, "-I", 2) == 0) {
            pn_vec_push(&prog.arena, &prog.include_dirs, (void *)(a + 2));
        } else if (strncmp(a, "--error-limit=", 14) == 0) {
            char *end;
            long v = strtol(a + 14, &end, 10);
            if (*end || end == a + 14 || v < 0 || v > INT_MAX) {
                rc = fail("invalid --error-limit value '%s'", a + 14);
                goto done;
            }
            diags.error_limit = (int)v;
        } else if (strcmp(a, "-w") == 0) {
            diags.no_warnings = true;
        } else if (a[0] == '-' && a[1]) {
            rc = fail("unknown argument '%s'; see 'pnetc --help'", a);
            goto done;
        } else if (file) {
            rc = fail("more than one input file ('%s'); pnetc takes one", a);
            goto done;
        } else {
            file = a;
        }
    }
    if (!file) {
        rc = fail("%s", "no input file; see 'pnetc --help'");
        goto done;
    }
    if (act == ACT_NONE) {
        rc = fail("%s", "nothing to do: use --check, --emit=graph or --emit=dot (code generation is not available yet)");
        goto done;
    }
    size_t flen = strlen(file);
    if (flen > 6 && strcmp(file + flen - 6, ".graph") == 0) {
        rc = run_graph_file(file, act, out_path);
        goto done;
    }
    char stdlib[PATH_MAX];
    prog.stdlib_dir = find_stdlib(stdlib, sizeof stdlib);

    /* Stage 1: parse the file and its imports. */
    pn_module *main_mod = pn_program_load(&prog, file, NULL, 0);
    pn_diags_flush(&diags);
    if (!main_mod || diags.nerrors) goto done;

    /* Stage 2: check and build the graph IR. */
    pn_graph *g = NULL;
    bool ok = pn_check(&prog, network, act == ACT_CHECK ? NULL : &g);
    pn_diags_flush(&diags);
    if (!ok) goto done;

    /* Stage 3: emit. */
    if (emit(g, act, out_path)) {
        pn_graph_free(g);
        goto done;
    }
    pn_graph_free(g);
    rc = 0;
done:
    pn_diags_flush(&diags);
    pn_program_free(&prog);
    pn_diags_free(&diags);
    return rc;
}
