// The iteration driver (see driver.h). The pipeline phases arrive with their issues; today the
// driver prepares the run directory and the effective config, then stops and says so.
#include "mpi/driver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"

// ----------------------------------------------------------------------------
// run directory

// RUN_DIR/config.yaml holds the effective config (after --set), written by rank 0
static void write_effective_config(const Config* c) {
    mkdirsCheck(c->run.dir);
    char path[CONFIG_PATH + 32];
    snprintf(path, sizeof(path), "%s/config.yaml", c->run.dir);
    char tmp[CONFIG_PATH + 40];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE* f = fopenCheck(tmp, "w");
    ConfigError err;
    if (config_write_yaml(c, f, &err) != 0) fatal("%s: %s", path, err.msg);
    fcloseCheck(f);
    if (rename(tmp, path) != 0) fatal("cannot rename '%s' to '%s'", tmp, path);
    log_info("effective config written to %s", path);
}

// ----------------------------------------------------------------------------
// the job

int driver_run(const Config* c, const RankLayout* l) {
    if (l->world_rank == 0) write_effective_config(c);
    mpiCheck(MPI_Barrier(l->world));
    if (l->world_rank == 0) {
        log_info("setup complete: config validated, rank groups built, run directory %s ready", c->run.dir);
        log_info("the iteration pipeline (rollout, aggregation, distillation) is not built yet; stopping after setup");
    }
    return INGRAIN_EXIT_OK;
}
