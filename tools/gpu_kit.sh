#!/usr/bin/env bash
# One command for a GPU lease's kit: configures and builds build-gputest (Release, the CUDA
# backend on) for the executables tools/gpu_pack.sh packs, and with BASE_COMMIT also that commit's
# ingrain_bench_model in a git worktree (/tmp/ingrain_base_<commit>/build-gputest), then packs
# .gpukit/kit.tar.xz with it as the base that tools/gpu_check.sh times this build against in the
# same lease. Needs this machine's build dependencies (scripts/setup.sh) and nvcc on PATH.
#   usage: tools/gpu_kit.sh [BASE_COMMIT]     e.g. tools/gpu_kit.sh 6e870f8 (the last measured kit)
#   then:  the device tool's run with command "OUT=$OUT bash tools/gpu_check.sh", carry [".gpukit"]
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
targets=(test_ops_gpu test_model_gpu test_model_bf16 test_decode_gpu ingrain_bench_model ingrain_bench_decode ingrain)
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
command -v nvcc >/dev/null || { echo "gpu_kit: nvcc not found (scripts/setup.sh installs CUDA)" >&2; exit 1; }

# configure_build SRC_DIR TARGET...: the CUDA build of SRC_DIR in SRC_DIR/build-gputest
configure_build() {
  local dir=$1
  shift
  cmake -S "$dir" -B "$dir/build-gputest" -G Ninja -DINGRAIN_CUDA=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$dir/build-gputest" --target "$@"
}

configure_build "$src" "${targets[@]}"
if [ $# -ge 1 ]; then
  commit=$(git -C "$src" rev-parse --short "$1^{commit}")
  base=/tmp/ingrain_base_$commit
  [ -d "$base" ] || git -C "$src" worktree add --detach "$base" "$commit"
  configure_build "$base" ingrain_bench_model
  GPU_PACK_BASE=$base/build-gputest "$src/tools/gpu_pack.sh" "$src/build-gputest"
else
  "$src/tools/gpu_pack.sh" "$src/build-gputest"
fi
