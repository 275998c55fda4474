// A minimal check harness for MPI test programs (cmocka does not run under mpirun): CHECK
// counts and reports failures with the rank; mpitest_finish sums over ranks and prints
// "N passed, N failed", returning the exit code.
#pragma once
#include <mpi.h>
#include <stdio.h>

static int mpitest_checks = 0, mpitest_failures = 0;

#define CHECK(cond, ...)                                                                  \
    do {                                                                                  \
        mpitest_checks++;                                                                 \
        if (!(cond)) {                                                                    \
            int r_ = 0;                                                                   \
            MPI_Comm_rank(MPI_COMM_WORLD, &r_);                                           \
            mpitest_failures++;                                                           \
            fprintf(stderr, "[rank %d] FAIL %s:%d: ", r_, __FILE__, __LINE__);            \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fputc('\n', stderr);                                                          \
        }                                                                                 \
    } while (0)

static inline int mpitest_finish(const char* name) {
    int fails = 0, checks = 0, rank = 0, world = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    MPI_Allreduce(&mpitest_failures, &fails, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(&mpitest_checks, &checks, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) printf("%s np=%d: %d passed, %d failed\n", name, world, checks - fails, fails);
    return fails ? 1 : 0;
}
