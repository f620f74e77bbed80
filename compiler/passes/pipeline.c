/* The list of inference passes, read top to bottom. */
#include "passes.h"

const pn_pass pn_passes[] = {
    {"prune", pass_prune},
    {"fold_batchnorm", pass_fold_batchnorm},
    {"fuse", pass_fuse},
    {"fuse_pool", pass_fuse_pool},
    {"plan_params", pass_plan_params},
    {"plan_memory", pass_plan_memory},
    {"plan_train", pass_plan_train},
};
const int pn_npasses = (int)(sizeof pn_passes / sizeof pn_passes[0]);
