// Rank-group layout and communicators (see ranks.h).
#include "mpi/ranks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"

// ----------------------------------------------------------------------------
// layout arithmetic (pure: the same on every rank)

int ranks_roles_of(const RankLayout* l, int world_rank) {
    if (l->colocated) return ROLE_ALL;
    if (world_rank < l->first_aggregator) return ROLE_TRAINER;
    if (world_rank < l->first_rollout) return ROLE_AGGREGATOR;
    return ROLE_ROLLOUT;
}

const char* ranks_role_name(int roles, char* buf, int n) {
    buf[0] = '\0';
    int used = 0;
    static const struct { int bit; const char* name; } names[] = {
        {ROLE_ROLLOUT, "rollout"}, {ROLE_AGGREGATOR, "aggregator"}, {ROLE_TRAINER, "trainer"}};
    for (int i = 0; i < 3; i++) {
        if (roles & names[i].bit) used += snprintf(buf + used, (size_t)(n - used), "%s%s", used ? "+" : "", names[i].name);
        if (used >= n) break;
    }
    return buf;
}

// ----------------------------------------------------------------------------
// communicators

static void split_group(MPI_Comm world, int member, int key, MPI_Comm* out, int* group_rank) {
    mpiCheck(MPI_Comm_split(world, member ? 0 : MPI_UNDEFINED, key, out));
    *group_rank = -1;
    if (*out != MPI_COMM_NULL) mpiCheck(MPI_Comm_rank(*out, group_rank));
}

int ranks_setup(RankLayout* l, const Config* c, MPI_Comm world, ConfigError* err) {
    memset(l, 0, sizeof(*l));
    mpiCheck(MPI_Comm_rank(world, &l->world_rank));
    mpiCheck(MPI_Comm_size(world, &l->world_size));
    if (config_check_world(c, l->world_size, err) != 0) return -1;

    l->colocated = c->ranks.colocate || l->world_size == 1;
    if (l->colocated) {
        l->n_trainer = l->n_aggregator = l->n_rollout = l->world_size;
    } else {
        l->n_trainer = c->ranks.trainer;
        l->n_aggregator = c->ranks.aggregator;
        l->n_rollout = l->world_size - l->n_trainer - l->n_aggregator;
        l->first_trainer = 0;
        l->first_aggregator = l->n_trainer;
        l->first_rollout = l->n_trainer + l->n_aggregator;
    }
    l->roles = ranks_roles_of(l, l->world_rank);
    mpiCheck(MPI_Comm_dup(world, &l->world));
    split_group(l->world, l->roles & ROLE_TRAINER, l->world_rank, &l->trainer, &l->trainer_rank);
    split_group(l->world, l->roles & ROLE_AGGREGATOR, l->world_rank, &l->aggregator, &l->aggregator_rank);
    split_group(l->world, l->roles & ROLE_ROLLOUT, l->world_rank, &l->rollout, &l->rollout_rank);

    char role[64];
    log_set_role(l->colocated ? "all" : ranks_role_name(l->roles, role, sizeof(role)));
    return 0;
}

void ranks_free(RankLayout* l) {
    MPI_Comm* comms[] = {&l->trainer, &l->aggregator, &l->rollout, &l->world};
    for (int i = 0; i < 4; i++) {
        if (*comms[i] != MPI_COMM_NULL) mpiCheck(MPI_Comm_free(comms[i]));
    }
}

// ----------------------------------------------------------------------------
// printing the mapping

void ranks_print(const RankLayout* l) {
    char host[MPI_MAX_PROCESSOR_NAME] = {0};
    int len = 0;
    mpiCheck(MPI_Get_processor_name(host, &len));
    char* hosts = l->world_rank == 0 ? callocCheck((size_t)l->world_size, MPI_MAX_PROCESSOR_NAME) : NULL;
    mpiCheck(MPI_Gather(host, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, hosts, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, 0, l->world));
    if (l->world_rank == 0) {
        if (l->colocated) {
            log_info("rank layout: %d rank%s, colocated (every rank plays rollout, aggregator and trainer)",
                     l->world_size, l->world_size == 1 ? "" : "s");
        } else {
            log_info("rank layout: %d ranks: %d trainer, %d aggregator, %d rollout", l->world_size, l->n_trainer,
                     l->n_aggregator, l->n_rollout);
        }
        for (int r = 0; r < l->world_size; r++) {
            char role[64];
            log_info("  rank %3d  %-24s %s", r, hosts + (size_t)r * MPI_MAX_PROCESSOR_NAME,
                     ranks_role_name(ranks_roles_of(l, r), role, sizeof(role)));
        }
        free(hosts);
    }
}
