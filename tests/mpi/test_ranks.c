// MPI test of the rank-group setup: for each layout valid at this world size, every rank checks
// its roles, its group communicators (size, rank, a working collective) and everybody's roles.
// Run at np = 1, 2 and 4 by ctest.
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "io/config.h"
#include "mpi/ranks.h"
#include "mpitest.h"

static int world_rank = 0;

// ----------------------------------------------------------------------------

typedef struct {
    const char* yaml;
    int min_world;    // layout needs at least this many ranks (else it must be rejected)
    int exact_world;  // or exactly this many (0: any >= min_world)
    int trainer, aggregator; // expected block sizes when not colocated (rollout = rest)
    int colocated;
} Layout;

static int expected_roles(const Layout* t, int world, int r) {
    if (t->colocated || world == 1) return ROLE_ALL;
    if (r < t->trainer) return ROLE_TRAINER;
    if (r < t->trainer + t->aggregator) return ROLE_AGGREGATOR;
    return ROLE_ROLLOUT;
}

static int group_size(MPI_Comm comm) {
    int n = 0;
    if (comm != MPI_COMM_NULL) MPI_Comm_size(comm, &n);
    return n;
}

// a collective over the group: sum of ones = group size
static int group_sum(MPI_Comm comm) {
    int one = 1, sum = 0;
    MPI_Allreduce(&one, &sum, 1, MPI_INT, MPI_SUM, comm);
    return sum;
}

static void check_layout(const Layout* t, int world) {
    Config c;
    ConfigError err;
    config_defaults(&c);
    if (config_load_string(&c, t->yaml, "layout.yaml", &err) != 0) {
        CHECK(0, "config did not load: %s", err.msg);
        return;
    }
    RankLayout l;
    int valid = world == 1 || t->colocated || (t->exact_world ? world == t->exact_world : world >= t->min_world);
    int rc = ranks_setup(&l, &c, MPI_COMM_WORLD, &err);
    if (!valid) {
        CHECK(rc != 0, "layout accepted at world %d but should be rejected:\n%s", world, t->yaml);
        if (rc != 0) CHECK(strstr(err.msg, "layout.yaml:") != NULL, "error does not name the file: %s", err.msg);
        return;
    }
    if (rc != 0) {
        CHECK(0, "layout rejected at world %d: %s", world, err.msg);
        return;
    }
    int want = expected_roles(t, world, world_rank);
    CHECK(l.roles == want, "roles %d, expected %d", l.roles, want);
    int* all = malloc(sizeof(int) * (size_t)world);
    MPI_Allgather(&l.roles, 1, MPI_INT, all, 1, MPI_INT, MPI_COMM_WORLD);
    int count[3] = {0, 0, 0};
    for (int r = 0; r < world; r++) {
        CHECK(all[r] == expected_roles(t, world, r), "rank %d has roles %d, expected %d", r, all[r],
              expected_roles(t, world, r));
        CHECK(ranks_roles_of(&l, r) == all[r], "ranks_roles_of(%d) disagrees with rank %d itself", r, r);
        for (int b = 0; b < 3; b++) count[b] += (all[r] >> b) & 1;
    }
    free(all);
    MPI_Comm comms[3] = {l.rollout, l.aggregator, l.trainer};
    int group_ranks[3] = {l.rollout_rank, l.aggregator_rank, l.trainer_rank};
    int sizes[3] = {l.n_rollout, l.n_aggregator, l.n_trainer};
    for (int b = 0; b < 3; b++) {
        int member = (l.roles >> b) & 1;
        CHECK(sizes[b] == count[b], "group %d size %d, counted %d", b, sizes[b], count[b]);
        CHECK(member == (comms[b] != MPI_COMM_NULL), "group %d membership and communicator disagree", b);
        if (member) {
            CHECK(group_size(comms[b]) == count[b], "group %d communicator size %d, expected %d", b,
                  group_size(comms[b]), count[b]);
            CHECK(group_sum(comms[b]) == count[b], "group %d allreduce gave the wrong sum", b);
            CHECK(group_ranks[b] >= 0 && group_ranks[b] < count[b], "group %d rank %d out of range", b, group_ranks[b]);
        } else {
            CHECK(group_ranks[b] == -1, "group %d rank %d for a non-member", b, group_ranks[b]);
        }
    }
    ranks_free(&l);
}

int main(int argc, char** argv) {
    MPI_Init(&argc, &argv);
    int world;
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    log_set_rank(world_rank, world);

    static const Layout layouts[] = {
        {"ranks:\n  colocate: true\n", 1, 0, 0, 0, 1},
        {"ranks:\n  trainer: 1\n  aggregator: 1\n", 3, 0, 1, 1, 0},
        {"ranks:\n  trainer: 2\n  aggregator: 1\n  rollout: 1\n", 4, 4, 2, 1, 0},
        {"ranks:\n  trainer: 1\n  aggregator: 2\n  rollout: 1\n", 4, 4, 1, 2, 0},
        {"ranks:\n  trainer: 1\n  aggregator: 1\n  rollout: 3\n", 5, 5, 1, 1, 0},
    };
    for (size_t i = 0; i < sizeof(layouts) / sizeof(layouts[0]); i++) check_layout(&layouts[i], world);

    int rc = mpitest_finish("test_ranks");
    MPI_Finalize();
    return rc;
}
