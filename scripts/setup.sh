#!/usr/bin/env bash
# One-command setup on Debian 12 (idempotent): install the missing Debian packages, configure
# with CMake and build into build/. Extra packages can be named in INGRAIN_EXTRA_PACKAGES.
#   ./scripts/setup.sh            # then: build/ingrain --help
set -euo pipefail
cd "$(dirname "$0")/.."

# python3: the build rewrites the CUDA sources for their emulated tests (tests/emu/unlaunch.py)
packages=(build-essential cmake ninja-build pkg-config python3
          libopenmpi-dev openmpi-bin libpmix-dev
          libhdf5-openmpi-dev hdf5-tools
          libopenblas-dev libyaml-dev libpcre2-dev libjansson-dev libxxhash-dev libcmocka-dev
          ${INGRAIN_EXTRA_PACKAGES:-})

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# nvcc is often installed outside PATH; INGRAIN_CUDA=AUTO builds the CUDA backend when it is found
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi

mkdir -p build
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release ${INGRAIN_CMAKE_ARGS:-} >build/configure.log 2>&1 ||
  { cat build/configure.log; exit 1; }
# INGRAIN_BUILD_TARGET: one target (and what it needs) instead of everything, tests included
cmake --build build -j "$(nproc)" ${INGRAIN_BUILD_TARGET:+--target "$INGRAIN_BUILD_TARGET"}
