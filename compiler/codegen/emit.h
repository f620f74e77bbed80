/* The pieces of a module that emit.c puts together: the prepare function (prepare.c), the
 * descriptors (desc.c), the embedding API and main (api.c). Each builds into c->mod. */
#ifndef PN_CG_EMIT_H
#define PN_CG_EMIT_H
#include "codegen.h"
#include "train.h"

/* Plans the prepared buffer (c->pack_offset, pack_width, fold_bias, prepared_floats). */
void cg_plan_packing(cg *c);
/* void px__prepare(const float *raw, float *prepared). */
LLVMValueRef cg_gen_prepare(cg *c);
/* px__prepare_param and px__unprepare_param (prepare.c), or null pointers where the network
 * folds a batchnorm. */
void cg_gen_param_fns(cg *c, LLVMValueRef *prepare, LLVMValueRef *unprepare);
/* The training descriptor, or a null pointer without a train block. */
LLVMValueRef cg_gen_train_desc(cg *c, const pn_train_fns *fns);
/* px__desc, the pnetrt_desc constant; target is "triple cpu". */
void cg_gen_desc(cg *c, LLVMValueRef forward, LLVMValueRef stages, LLVMValueRef layers, LLVMValueRef prepare, const pn_cg_options *opt,
                 const char *target, LLVMValueRef train);
/* The exported px_* functions over px__desc, and main(). */
void cg_gen_api(cg *c);
void cg_gen_main(cg *c);

#endif
