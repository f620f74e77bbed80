/* The code generator's entry points: a planned graph in, an LLVM module and files out. */
#ifndef PN_CODEGEN_H
#define PN_CODEGEN_H
#include "cg.h"

typedef enum { PN_EMIT_OBJ, PN_EMIT_ASM, PN_EMIT_LLVM } pn_emit_kind;

/* Builds, verifies and optimises the module of g (planned by the passes). On failure returns
 * false with a message in err. */
bool pn_codegen(const pn_graph *g, const pn_cg_options *opt, cg *out, char *err, size_t errlen);
bool pn_codegen_emit(cg *c, pn_emit_kind kind, const char *path, char *err, size_t errlen);
void pn_codegen_free(cg *c);
/* Writes the embedding header for g. */
bool pn_write_header(const pn_graph *g, const char *path, char *err, size_t errlen);

#endif
