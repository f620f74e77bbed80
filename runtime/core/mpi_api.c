/* pnet_mpi.h: a model's communicator, from an embedding program. Built only with MPI. */
#include "pnet_mpi.h"

#include "comm.h"
#include "model.h"

int pnetrt_set_comm(pnetrt_model *m, MPI_Comm comm) {
    if (!m) return 1;
    pnetrt_lock(m);
    if (!pnetrt_ready(m)) return pnetrt_unlock(m, 1);
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) return pnetrt_unlock(m, pnetrt_fail(m, "pnetrt_set_comm: MPI is not initialised"));
    int provided = 0;
    MPI_Query_thread(&provided);
    if (provided < MPI_THREAD_SERIALIZED)
        return pnetrt_unlock(m, pnetrt_fail(m, "pnetrt_set_comm: MPI was initialised below MPI_THREAD_SERIALIZED"));
    pnetrt_comm *c = pnetrt_comm_wrap(&comm);
    if (!c) return pnetrt_unlock(m, pnetrt_fail(m, "pnetrt_set_comm: cannot duplicate the communicator"));
    pnetrt_model_set_comm(m, c);
    /* A network with pipeline stages runs one stage per rank (it keeps every parameter it loaded). */
    return pnetrt_unlock(m, pnetrt_rank_layout(m, PNETRT_LAYOUT_AUTO));
}
