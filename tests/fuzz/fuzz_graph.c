/* libFuzzer target: the .graph text reader and what pnetc runs on a FILE.graph before code generation: the stage
   balance, the report, the text and dot printers, then every pass (compiler/main.c run_graph_file and compile).
   A graph that parses must also print back to text that parses. See docs/testing.md. */
#define _GNU_SOURCE
#include "ir/graph.h"
#include "ir/report.h"
#include "passes/passes.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static FILE *sink;
    if (!sink) sink = fopen("/dev/null", "w");
    char err[512];
    pn_graph *g = pn_graph_parse((const char *)data, size, err, sizeof err);
    if (!g) {
        if (!err[0] || strchr(err, '\n')) abort(); /* every error is one non-empty line */
        return 0;
    }
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    if (!m) abort();
    pn_graph_print(g, m);
    fclose(m);
    pn_graph *back = pn_graph_parse(text, len, err, sizeof err);
    if (!back) {
        fprintf(stderr, "printed graph does not parse back: %s\n%s", err, text);
        abort();
    }
    pn_graph_free(back);
    free(text);

    pn_stage_stats *st = calloc((size_t)g->nstages, sizeof *st);
    if (!st) abort();
    pn_report_stats(g, st, g->nstages);
    free(st);
    pn_graph_report(g, sink);
    free(pn_graph_report_text(g));
    pn_graph_print_dot(g, sink);
    for (int i = 0; i < pn_npasses; i++) pn_passes[i].run(g);
    pn_graph_print(g, sink);
    pn_graph_free(g);
    return 0;
}
