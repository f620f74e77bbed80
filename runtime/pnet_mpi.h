/* pnet_mpi.h: runs a network created with pnet.h on the ranks of an MPI communicator. Optional:
 * installed only when libpnetrt was built with Open MPI; pnet.h itself never includes mpi.h.
 *
 *   #include <mpi.h>
 *   #include <pnet.h>
 *   #include <pnet_mpi.h>
 *   MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
 *   pnetrt_create(&m, net_descriptor(), NULL);
 *   pnetrt_set_comm(m, MPI_COMM_WORLD);   // every rank of the communicator makes this call
 *   pnetrt_train_step(m, batch, in, &loss); // each rank computes its chunks of the batch
 *   ...
 *   pnetrt_destroy(m);
 *   MPI_Finalize();
 *
 * Every rank passes the whole batch (training data is read once per rank and never sent); each
 * rank computes its own contiguous run of the batch's chunks, and the ranks exchange the chunks'
 * gradients so that every rank applies the same update. The trained weights are bitwise those of
 * one process (docs/distributed.md). Every rank of the communicator must make the same calls in
 * the same order. MPI must provide MPI_THREAD_SERIALIZED or more. examples/embed/ shows it whole. */
#ifndef PNET_MPI_H
#define PNET_MPI_H

#include <mpi.h>

#include "pnet.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Runs m on the ranks of comm (a duplicate is kept until pnetrt_destroy); MPI_COMM_SELF runs it
 * in this process alone. A collective call: every rank of comm makes it. */
PNETRT_API int pnetrt_set_comm(pnetrt_model *m, MPI_Comm comm);

#ifdef __cplusplus
}
#endif
#endif
