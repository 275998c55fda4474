// The iteration driver: rollout -> aggregate -> internalize -> sync -> evaluate -> checkpoint
// over the rank groups, K times. Called by `ingrain run`.
#pragma once
#include "io/config.h"
#include "mpi/ranks.h"

// Runs the job described by c on the layout l; collective over l->world. Returns an exit code.
int driver_run(const Config* c, const RankLayout* l);
