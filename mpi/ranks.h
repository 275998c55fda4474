// Rank groups: MPI_Comm_split of the world into rollout workers, experience aggregators and
// trainers from the config (ranks.*), or every rank in every role (colocate / one rank).
#pragma once
#include <mpi.h>

#include "io/config.h"

enum { ROLE_ROLLOUT = 1, ROLE_AGGREGATOR = 2, ROLE_TRAINER = 4, ROLE_ALL = 7 };

typedef struct {
    int world_rank, world_size;
    int roles;     // bitmask of ROLE_* this rank plays
    int colocated; // every rank plays every role (ranks.colocate or a single rank)
    // group sizes and, when not colocated, the first world rank of each contiguous block
    // (trainers first so they pack onto the first nodes, then aggregators, then rollout)
    int n_trainer, n_aggregator, n_rollout;
    int first_trainer, first_aggregator, first_rollout;
    // communicators of the groups this rank belongs to, MPI_COMM_NULL otherwise
    MPI_Comm world, trainer, aggregator, rollout;
    int trainer_rank, aggregator_rank, rollout_rank; // rank inside each group, -1 if not a member
} RankLayout;

// Build the layout; collective over `world`. Returns 0, or -1 with err set (same on every rank).
int ranks_setup(RankLayout* layout, const Config* c, MPI_Comm world, ConfigError* err);
void ranks_free(RankLayout* layout);
// "rollout+aggregator+trainer", "trainer", ...
const char* ranks_role_name(int roles, char* buf, int n);
// the role of a world rank under this layout (any rank can ask about any other)
int ranks_roles_of(const RankLayout* layout, int world_rank);
// rank 0 prints the mapping of world ranks to hosts and roles; collective
void ranks_print(const RankLayout* layout);
