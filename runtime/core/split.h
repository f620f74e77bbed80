/* A training step's chunks among its replica groups, weighted by how fast each group ran them.
 *
 * Groups take contiguous runs of chunks (train.c), and the step waits for the slowest. On a
 * machine whose cores do not run at one speed (a virtual machine's CPUs, a core shared with
 * another program, more threads than cores) equal runs leave the faster groups waiting. So each
 * step's runs are cut by the groups' measured seconds per chunk in the steps before: a group twice
 * as fast gets about twice the chunks. Any contiguous runs fold the same fixed tree (gradtree.h),
 * so the weights keep their bits; only where the step waits changes.
 *
 * Ranks of a distributed run are cut the same way, a rank's run of chunks by its speed, from the
 * seconds per chunk every rank gathers from every other after each step (train.c), so that each
 * computes the same cut.
 *
 * Internal to libpnetrt. The trainer owns the pnetrt_split; zeroed is ready to use. */
#ifndef PNETRT_SPLIT_H
#define PNETRT_SPLIT_H
#include <stdbool.h>
#include <stdint.h>

enum { PNETRT_SPLIT_GROUPS = 256 };

typedef struct pnetrt_split {
    double sec[PNETRT_SPLIT_GROUPS];  /* each group's recent seconds per chunk (0: not measured) */
    double took[PNETRT_SPLIT_GROUPS]; /* the step's seconds in each group's chunks (its first thread writes it) */
    int groups, threads;              /* the team they were measured on: another starts over */
    bool fixed;                       /* set by a test (pnetrt_split_fix): never measured */
    int64_t memo_n, memo_len;         /* pnetrt_split_depth's last question, and its answer */
    int memo;
} pnetrt_split;

/* Cuts chunks [lo, hi) into `groups` contiguous runs, group g's [first[g], first[g + 1]), each of
 * at least one chunk (hi - lo >= groups) and, with most_run > 0, at most most_run (which must
 * leave room: most_run * groups >= hi - lo), so that the groups would finish together at their
 * measured seconds per chunk; equal runs (lo + n * g / groups) until every group of this team
 * was measured. With depth > 0, no run's folded stack (pnetrt_tree_stack) is deeper than depth
 * buffers: the weighted cut moves toward the equal one, whose stacks the caller sized depth for,
 * until they fit. A cut that would not finish at least 8% sooner than equal runs is not taken.
 * Returns whether the runs differ from the equal ones. */
bool pnetrt_split_chunks(pnetrt_split *s, int groups, int threads, int64_t lo, int64_t hi, int depth, int64_t most_run,
                         int64_t *first);
/* The deepest folded stack (pnetrt_tree_stack's *most) of any run of at most len chunks within
 * [0, n): the buffers a run that a cut may move needs (remembered for the last n and len). */
int pnetrt_split_depth(pnetrt_split *s, int64_t n, int64_t len);
/* After a step cut by first[] on `groups` groups of `threads` threads: takes each group's took[]
 * into its seconds per chunk, and clears took[] (with fewer than 2 groups too). A group with
 * chunks but no time (0) is unknown again, so the next cut is equal. */
void pnetrt_split_measured(pnetrt_split *s, int groups, int threads, const int64_t *first);
/* The most seconds any of the first `groups` groups took in its chunks this step (before
 * pnetrt_split_measured clears them). */
double pnetrt_split_busiest(const pnetrt_split *s, int groups);
/* For tests: every later step assumes these seconds per chunk for groups 0 .. groups - 1, whatever
 * the team, and measures nothing (n = 0: measures again). */
void pnetrt_split_fix(pnetrt_split *s, const double *sec, int groups);

#endif
