#!/usr/bin/env bash
# Sweep launcher: expands a grid (docs/SLURM.md) with `ingrain sweep` and submits one job array.
#   slurm/sweep.sh configs/ablation.yaml --seeds 3     # 2x2x2 cells x 3 seeds, submitted
#   slurm/sweep.sh configs/ablation.yaml --dry-run     # list the cells, write and submit nothing
# Running it again continues the sweep: finished cells are skipped, unfinished ones resume.
# Arguments go to `ingrain sweep` (see `build/ingrain sweep --help`). INGRAIN names the binary
# (default: build/ingrain of this tree); it must be built before, jobs never build it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ingrain=${INGRAIN:-$root/build/ingrain}
[ -x "$ingrain" ] || { echo "sweep.sh: $ingrain is missing; build it first (./scripts/setup.sh) or set INGRAIN" >&2; exit 2; }
submit=--submit
for arg in "$@"; do
  case $arg in --dry-run | -h | --help) submit="" ;; esac
done
exec "$ingrain" sweep --sbatch-script "$root/slurm/ingrain.sbatch" $submit "$@"
