/* libFuzzer target: the ONNX front end (compiler/onnx), on any bytes as a ModelProto. A model that
 * imports must also print as .pnet source; every error is one non-empty line. See docs/testing.md. */
#define _GNU_SOURCE
#include "ir/pnet_source.h"
#include "onnx/onnx.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static FILE *sink;
    if (!sink) sink = fopen("/dev/null", "w");
    char err[1024];
    pn_onnx_weights w;
    pn_graph *g = pn_onnx_import(data, size, &w, err, sizeof err);
    if (!g) {
        if (!err[0] || strchr(err, '\n')) abort();
        return 0;
    }
    pn_graph_print_pnet(g, sink, err, sizeof err);
    pn_onnx_weights_free(&w);
    pn_graph_free(g);
    return 0;
}
