/* The executables' training commands (train_cli.c), dispatched by pnetrt_main (main.c). The strings stay the
 * caller's. */
#ifndef PNETRT_CLI_TRAIN_CLI_H
#define PNETRT_CLI_TRAIN_CLI_H

#include "pnetrt_abi.h"

/* The executables' train, eval and bench --train commands. */
int pnetrt_cmd_train(const pnetrt_desc *d, int argc, char **argv);
int pnetrt_cmd_eval(const pnetrt_desc *d, int argc, char **argv);
int pnetrt_cmd_bench_train(const pnetrt_desc *d, int argc, char **argv);

#endif
