/* The option helpers of the executables' commands: main.c (infer, bench, info) and train_cli.c (train, eval,
 * bench --train) both call down into options.c, never into each other's helpers. Strings stay the caller's;
 * pnetrt_parse_stage_list fills the caller's table. */
#ifndef PNETRT_CLI_OPTIONS_H
#define PNETRT_CLI_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The executables' one-line error: "NAME: error: ..." (NAME: pnetrt_prog, rt.h), or "NAME: rank R: error: ..."
 * in a distributed run; returns 1. */
int pnetrt_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* This process's rank in a distributed run (mpirun), or -1. */
extern int pnetrt_rank;
/* Option values, checked the same way by every command; each returns 0, or 1 after the one-line error
 * "OPT needs an integer from LO to HI, not 'S'" ("a number in (0, HI]", "a finite positive number"). */
int pnetrt_opt_int(const char *opt, const char *s, long long lo, long long hi, long long *out);
int pnetrt_opt_num(const char *opt, const char *s, double hi, double *out);
/* Records opt in seen (" --a --b ", size len); 1 after an error when it was given before. */
int pnetrt_opt_once(char *seen, size_t len, const char *opt);
/* 1 after an error when the file `out` (written, as `what`, through option out_opt) is the file `in`
 * (read through in_opt): the same path, or the same device and inode. NULL paths never clash. */
int pnetrt_check_overwrite(const char *out_opt, const char *out, const char *what, const char *in_opt, const char *in);
/* Every command's arguments with each "--opt=value" split into "--opt" and "value", so every option
 * takes either form: a new argv of *out_argc entries (argv[0] kept; the values point into argv's
 * strings), freed with pnetrt_opt_split_free. NULL when out of memory. */
char **pnetrt_opt_split(int argc, char **argv, int *out_argc);
void pnetrt_opt_split_free(char **args);
/* The one-line error for an argument `arg` the command pnetrt_cmd does not take, given the options it
 * does take (`opts`: " --a --b ", the list its parser checks): "OPT needs a value" for one of them
 * at the end, "--flag takes no value ('--flag=1')" for a split value, else "unknown option 'A' for
 * CMD; did you mean '--b'?" with the closest option (or another tool's name for one: --learning-rate
 * is --lr), or "; see 'PROG --help'". Returns 1. */
int pnetrt_opt_unknown(const char *arg, const char *opts);
/* The command being run (infer, train, ...), for pnetrt_opt_unknown's message. */
extern const char *pnetrt_cmd;
/* The word of the space-separated `words` closest to `word` (leading dashes aside), into buf; NULL
 * when none is close. */
const char *pnetrt_opt_closest(const char *word, const char *words, char *buf, size_t n);
/* --stage-threads N,N,...: at most cap integers from 1 to 4096 into out[0..cap). Returns the count, or -1 after
 * reporting the problem. pnetrt_parse_stage_threads fills a fixed table of PNETRT_MAX_STAGES (64). */
int pnetrt_parse_stage_list(const char *s, int *out, int cap);
int pnetrt_parse_stage_threads(const char *s, int *out);
/* bench's loops on ranks: true while every rank wants another round (each rank's clock alone would
 * let one rank start a step that the others never join). Alone: want. */
bool pnetrt_bench_more(bool want);
/* bench's report of the time each rank spent in communication over `wall` seconds (nothing alone). */
void pnetrt_bench_comm_report(double comm_seconds, double wall);
/* bench's line of the peak resident memory, as the operating system counts it (getrusage): this
 * process's, or on ranks every rank's (rank 0 prints; every rank calls it). */
void pnetrt_bench_memory_report(int64_t param_floats);
/* The line on stderr (rank 0's alone) that says how the loader scaled the samples read from path (data.h's one
 * rule: uint8 samples of an f32 input are divided by 255, unless --no-scale): "NAME: note: PATH: uint8 samples
 * divided by 255, to [0, 1] (--no-scale keeps 0..255)". Nothing for data the rule leaves alone, unless
 * --no-scale was given for it. */
struct pnetrt_data_source;
void pnetrt_note_scaling(const char *path, const struct pnetrt_data_source *s, bool no_scale, bool int_input);
/* "NAME: warning: MSG" on stderr, rank 0's alone; nothing for an empty msg. */
void pnetrt_warn(const char *msg);
/* Seconds on the monotonic clock. */
double pnetrt_now(void);

#endif
