/* The ONNX front end of a pnetc built without protobuf-c or onnx.proto (CMake's PNET_HAVE_ONNX off):
 * every model is refused with one line that says so. */
#include "onnx.h"

#include <stdio.h>
#include <string.h>

const bool pn_onnx_supported = false;

pn_graph *pn_onnx_import(const uint8_t *data, size_t len, pn_onnx_weights *w, char *err, size_t errlen) {
    memset(w, 0, sizeof *w);
    snprintf(err, errlen, "this pnetc was built without ONNX support");
    return NULL;
}

void pn_onnx_weights_free(pn_onnx_weights *w) { (void)w; }
