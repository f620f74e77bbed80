/* The code generator's entry points: a planned graph in, an LLVM module and files out. */
#ifndef PN_CODEGEN_H
#define PN_CODEGEN_H
#include "cg.h"

typedef enum { PN_EMIT_OBJ, PN_EMIT_ASM, PN_EMIT_LLVM } pn_emit_kind;

/* Builds, verifies and optimises the module of g (planned by the passes). On failure returns
 * false with the error in out->error (node, location, message) for the driver to print. */
bool pn_codegen(const pn_graph *g, const pn_cg_options *opt, cg *out);
bool pn_codegen_emit(cg *c, pn_emit_kind kind, const char *path, char *err, size_t errlen);
void pn_codegen_free(cg *c);
/* Targets (target.c): the normalized triple (the host's for NULL; free it), the CPU names LLVM
 * knows for a triple (NULL when it cannot list them), and a check of a user-given CPU name that
 * puts "unknown CPU ...; did you mean ...?" in err. */
char *pn_target_triple(const char *triple);
char **pn_target_cpus(const char *triple, int *n);
void pn_target_cpus_free(char **names, int n);
bool pn_target_check_cpu(const char *triple, const char *cpu, char *err, size_t errlen);
/* Writes the embedding header for g. */
bool pn_write_header(const pn_graph *g, const char *path, char *err, size_t errlen);

#endif
