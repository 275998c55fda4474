#!/usr/bin/env bash
# One-command test run on Debian 12: set up (scripts/setup.sh), then run the whole ctest suite.
# Arguments go to ctest, e.g. `./scripts/test.sh -L unit` or `./scripts/test.sh -LE slurm`.
set -euo pipefail
cd "$(dirname "$0")/.."
# python3-h5py: tests check that h5py opens our HDF5 files; slurm-wlm munge: the Slurm test runs a
# real single-node cluster; python3-matplotlib: `ingrain report` plots
INGRAIN_EXTRA_PACKAGES="python3-h5py slurm-wlm munge python3-matplotlib ${INGRAIN_EXTRA_PACKAGES:-}" ./scripts/setup.sh
ctest --test-dir build --output-on-failure -j "$(nproc)" "$@"
