/* libFuzzer target: runs the parser and the checker on arbitrary bytes. See docs/testing.md. */
#include "check/check.h"
#include "parse/parse.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static FILE *sink;
    if (!sink) sink = fopen("/dev/null", "w");
    pn_diags d;
    pn_diags_init(&d, sink);
    pn_program prog;
    pn_program_init(&prog, &d);
    pn_module *m = pn_program_load(&prog, "fuzz.pnet", (const char *)data, size);
    if (m && d.nerrors == 0) {
        pn_graph *g = NULL;
        if (pn_check(&prog, NULL, &g) && g) {
            pn_graph_print(g, sink);
            pn_graph_print_dot(g, sink);
        }
        pn_graph_free(g);
    }
    pn_diags_flush(&d);
    pn_program_free(&prog);
    pn_diags_free(&d);
    return 0;
}
