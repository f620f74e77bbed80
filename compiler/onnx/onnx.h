/* The ONNX front end: reads an ONNX ModelProto into the graph IR that the .pnet checker builds, and
 * its initializers into the network's weights (docs/onnx.md).
 *
 *     pn_onnx_weights w;
 *     char err[512];
 *     pn_graph *g = pn_onnx_import(data, len, &w, err, sizeof err);
 *     if (!g) fprintf(stderr, "model.onnx: error: %s\n", err);
 *
 * The caller owns the graph (pn_graph_free) and the weights (pn_onnx_weights_free). */
#ifndef PN_ONNX_H
#define PN_ONNX_H
#include "../ir/graph.h"

#include <stddef.h>
#include <stdint.h>

/* The network's parameters, named NODE.SUFFIX as the graph names them, in PyTorch's layout. */
typedef struct pn_onnx_weights {
    int n, cap;
    char **names;
    int *ranks;
    int64_t (*shapes)[8];
    float **data;
} pn_onnx_weights;

/* The graph of the model in data[0..len), checked as the .pnet checker checks a network. Returns NULL
 * with one line in err (without the file's name) on malformed protobuf, an unsupported op or
 * attribute, or a shape error; and also when this pnetc was built without ONNX support. */
/* False in a pnetc built without protobuf-c and onnx.proto (compiler/onnx/absent.c). */
extern const bool pn_onnx_supported;
pn_graph *pn_onnx_import(const uint8_t *data, size_t len, pn_onnx_weights *w, char *err, size_t errlen);
void pn_onnx_weights_free(pn_onnx_weights *w);

#endif
