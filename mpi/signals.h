// Stop requests from the scheduler: Slurm sends SIGTERM (or the --signal of the sbatch, e.g.
// SIGUSR1) before a time limit or a preemption. The handler only records the signal; the driver
// polls at safe points, all ranks agree with one collective, finish the current step, write a
// checkpoint and exit with INGRAIN_EXIT_REQUEUE.
#pragma once
#include <mpi.h>

// install handlers for SIGTERM, SIGUSR1 and SIGINT
void signals_install(void);
// the signal received on this rank, 0 if none (async-signal-safe read)
int signals_pending(void);
// collective over comm: the first signal any rank received, 0 if none
int signals_agree(MPI_Comm comm);
