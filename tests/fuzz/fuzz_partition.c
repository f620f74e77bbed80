/* libFuzzer target: pnetc --auto-partition on whatever the parser and the checker accept, into 2 and 3 stages.
   The source it prints must parse and check again. See docs/testing.md. */
#define _GNU_SOURCE
#include "check/check.h"
#include "parse/parse.h"
#include "tools/auto_partition.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parses and checks src; the graph, or NULL. */
static pn_graph *build(pn_diags *d, FILE *out, pn_program *prog, const char *src, size_t len) {
    pn_diags_init(d, out);
    pn_program_init(prog, d);
    pn_graph *g = NULL;
    pn_module *m = pn_program_load(prog, "fuzz.pnet", src, len);
    if (m && d->nerrors == 0 && !(pn_check(prog, NULL, &g) && g)) {
        pn_graph_free(g);
        g = NULL;
    }
    return g;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static FILE *sink;
    if (!sink) sink = fopen("/dev/null", "w");
    pn_diags d;
    pn_program prog;
    pn_graph *g = build(&d, sink, &prog, (const char *)data, size);
    for (int S = 2; g && S <= 3; S++) {
        char *text = NULL, err[512];
        size_t len = 0;
        FILE *m = open_memstream(&text, &len);
        if (!m) abort();
        bool ok = pn_auto_partition(&prog, g, S, m, err, sizeof err);
        fclose(m);
        if (!ok && (!err[0] || strchr(err, '\n'))) abort(); /* an error is one non-empty line */
        if (ok) {
            pn_diags d2;
            pn_program prog2;
            pn_graph *g2 = build(&d2, stderr, &prog2, text, len);
            if (!g2) {
                pn_diags_flush(&d2);
                fprintf(stderr, "--auto-partition %d printed a source that does not check:\n%s", S, text);
                abort();
            }
            pn_graph_free(g2);
            pn_program_free(&prog2);
            pn_diags_free(&d2);
        }
        free(text);
    }
    pn_graph_free(g);
    pn_diags_flush(&d);
    pn_program_free(&prog);
    pn_diags_free(&d);
    return 0;
}
