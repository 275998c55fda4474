#!/usr/bin/env bash
# One-command quickstart: set up (scripts/setup.sh), then run the main job on the built-in
# default: 4 MPI ranks, the tiny model, a built-in environment (configs/quickstart.yaml).
# Extra arguments go to `ingrain run`, e.g. --set run.iterations=5
set -euo pipefail
cd "$(dirname "$0")/.."
# the job needs the ingrain binary only; scripts/test.sh builds the tests
INGRAIN_BUILD_TARGET=ingrain ./scripts/setup.sh
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 # Open MPI refuses root otherwise
fi
exec mpirun --oversubscribe -np 4 build/ingrain run configs/quickstart.yaml "$@"
