/* The ranks of a distributed run: Open MPI processes, one model replica (or, later, one pipeline
 * stage) each. Without MPI (a build without it, or a process that mpirun did not start) there is
 * one rank and every call below is a no-op, so the schedules need no second code path.
 *
 * The executables (runtime/cli) call pnetrt_comm_init_process when mpirun started them; every
 * model created afterwards runs on the world's ranks. An embedding program hands a communicator
 * to a model through pnet_mpi.h instead. Internal to libpnetrt: this header does not include
 * mpi.h, and pnet.h does not include it. */
#ifndef PNETRT_COMM_H
#define PNETRT_COMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pnetrt_comm pnetrt_comm;

/* True when libpnetrt was built with MPI. */
bool pnetrt_comm_built(void);
/* True when the environment says mpirun (or another PMIx launcher) started this process. */
bool pnetrt_comm_launched(void);
/* Initialises MPI for the process, once, and makes its world the default of every model created
 * afterwards. Also sets OpenMP's default team to the node's cores divided by the ranks on the
 * node (OMPI_COMM_WORLD_LOCAL_SIZE), unless OMP_NUM_THREADS is set. Returns 0, or 1 with err
 * set. MPI is finalised at exit. */
int pnetrt_comm_init_process(char *err, size_t n);
/* The default communicator of new models: the world after pnetrt_comm_init_process, else NULL. */
pnetrt_comm *pnetrt_comm_default(void);
/* Wraps a duplicate of an MPI communicator (an MPI_Comm passed by address); NULL on failure. */
pnetrt_comm *pnetrt_comm_wrap(const void *mpi_comm);
/* The ranks of c with the same color, ordered by key (MPI_Comm_split; collective); NULL on failure
 * or without MPI. Free it with pnetrt_comm_free. */
pnetrt_comm *pnetrt_comm_split(pnetrt_comm *c, int color, int key);
/* Frees a communicator from pnetrt_comm_wrap; the default one is never freed. */
void pnetrt_comm_free(pnetrt_comm *c);

/* This rank and the number of ranks (0 and 1 for NULL). */
int pnetrt_comm_rank(const pnetrt_comm *c);
int pnetrt_comm_size(const pnetrt_comm *c);

/* Chunk k of a set is the `stride` floats at base + k * stride; rank r holds chunks
 * [first[r], first[r + 1]) (first has size + 1 entries). On return every rank holds every chunk.
 * Returns 0, or 1 with err set. */
int pnetrt_comm_allgather_chunks(pnetrt_comm *c, float *base, int64_t stride, const int64_t *first, char *err,
                                 size_t n);
/* The same for bytes: rank r's part is [first[r], first[r + 1]) of base, in units of `unit` bytes. */
int pnetrt_comm_allgather_bytes(pnetrt_comm *c, void *base, int64_t unit, const int64_t *first, char *err, size_t n);
/* The exchange of the folded gradient tree (gradtree.h), a reduce-scatter along the tree: rank r
 * holds nb[r] partial sums; rank o owns the gradient's elements [e[o], e[o + 1]). Each rank sends
 * every other owner that slice of each of its sums (bufs[j] + e[o]), and receives into recv, rank
 * after rank in order (itself skipped), nb[r] slices of its own elements from each other rank r.
 * Returns 0, or 1 with err. */
int pnetrt_comm_exchange_slices(pnetrt_comm *c, float *const *bufs, const int *nb, const int64_t *e, float *recv,
                                char *err, size_t n);
/* Every rank gets the logical OR of ok == false over the ranks: returns true when all are ok. */
bool pnetrt_comm_all_ok(pnetrt_comm *c, bool ok);
/* Compares every rank's v with rank 0's: returns the number of ranks whose v differs (on every
 * rank), and sets *mine when this rank's does. */
int pnetrt_comm_compare_u64(pnetrt_comm *c, uint64_t v, bool *mine);
/* Rank 0 gets every rank's n bytes at mine, concatenated in rank order, in *all (malloc'd, *total
 * bytes; the caller frees it); elsewhere *all is NULL. One rank: a copy of its own. Returns 0, or 1. */
int pnetrt_comm_gather_text(pnetrt_comm *c, const char *mine, size_t n, char **all, size_t *total);
/* Waits for every rank (nothing for one). */
void pnetrt_comm_barrier(pnetrt_comm *c);
/* Rank 0 gets every rank's v in out[0..size) (out may be NULL elsewhere); one rank: out[0] = v. */
int pnetrt_comm_gather_f64(pnetrt_comm *c, double v, double *out);
/* Ends every rank of the job with exit code `code` (after the caller printed why). */
_Noreturn void pnetrt_comm_abort(pnetrt_comm *c, int code);
/* Point-to-point messages that overlap compute (the hand-offs of pipeline stages on ranks): a set
 * of pending sends and receives, posted one at a time and completed together. */
typedef struct pnetrt_msgs pnetrt_msgs;
/* A set with room for `cap` pending messages; NULL when out of memory. */
pnetrt_msgs *pnetrt_msgs_new(int cap);
void pnetrt_msgs_free(pnetrt_msgs *q);
/* Posts a send of `bytes` at buf to rank `to` (or a receive into buf from rank `from`) with a tag,
 * into q; the buffer must stay untouched until pnetrt_msgs_wait. Messages between two ranks with
 * one tag arrive in the order posted. Returns 0, or 1 with err set. */
int pnetrt_comm_isend(pnetrt_comm *c, const void *buf, int64_t bytes, int to, int tag, pnetrt_msgs *q, char *err,
                      size_t n);
int pnetrt_comm_irecv(pnetrt_comm *c, void *buf, int64_t bytes, int from, int tag, pnetrt_msgs *q, char *err,
                      size_t n);
/* Waits for every message of q (counted as time in communication) and empties it. Returns 0, or 1
 * with err set. */
int pnetrt_msgs_wait(pnetrt_msgs *q, char *err, size_t n);
/* Seconds this process spent inside communication calls so far. */
double pnetrt_comm_seconds(void);

#endif
