#!/usr/bin/env bash
# Packs the CUDA build's GPU tests and benchmarks for a machine with a GPU but without this
# machine's libraries (no MPI, HDF5, OpenBLAS, ...): the executables and every shared library
# they load, except the C runtime (glibc, libgcc_s, libstdc++) and CUDA's own (libcudart,
# libcublas, libnvidia-*, NCCL), which that machine has; and Open MPI's and PMIx's plugin
# folders (with the libraries they load), so that `ingrain run` works there as a one-rank singleton
# without an Open MPI installation (tools/gpu_check.sh). Writes .gpukit/kit.tar.xz in the
# source tree (ignored by .gitignore; the device run carries it), for tools/gpu_check.sh to unpack there.
#   usage: tools/gpu_pack.sh [BUILD_DIR]   (default: build-gputest, configured with
#          cmake -S . -B build-gputest -G Ninja -DINGRAIN_CUDA=ON -DCMAKE_BUILD_TYPE=Release)
#   GPU_PACK_BASE=DIR adds DIR's ingrain_bench_model (a CUDA build of another commit, e.g. a
#   `git worktree` of the last measured one) as bin/base_bench_model, which gpu_check.sh then
#   times beside this build's, alternating, in the same lease.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$src/build-gputest}" && pwd)
kit=$src/.gpukit
bins=(tests/gpu/test_ops_gpu tests/gpu/test_model_gpu tests/gpu/test_model_bf16 tests/gpu/test_decode_gpu
      ingrain_bench_model ingrain_bench_decode ingrain)
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|libpthread\.|librt\.|libresolv\.|libutil\.|libgcc_s\.|libstdc\+\+\.|libcuda\.|libcudart\.|libcublas|libnvidia|libnccl)'

grep -q 'INGRAIN_CUDA:STRING=ON' "$build/CMakeCache.txt" ||
  { echo "gpu_pack: $build is not a CUDA build (configure it with -DINGRAIN_CUDA=ON)" >&2; exit 1; }
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$stage/mpi"
# copies the libraries file $1 loads into lib/: "libfoo.so.1 => /path/libfoo.so.1 (0x...)", the
# file the soname resolves to, under the soname
copy_deps() {
  ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | while read -r name path; do
    [[ $name =~ $skip ]] && continue
    [ -e "$stage/lib/$name" ] || cp -L "$path" "$stage/lib/$name"
  done
}
for b in "${bins[@]}"; do
  [ -x "$build/$b" ] || { echo "gpu_pack: $build/$b is missing: build first (cmake --build $build)" >&2; exit 1; }
  cp "$build/$b" "$stage/bin/"
  copy_deps "$build/$b"
  if ldd "$build/$b" | grep -q 'not found'; then
    echo "gpu_pack: $b has unresolved libraries here:" >&2
    ldd "$build/$b" | grep 'not found' >&2
    exit 1
  fi
done
# Open MPI's and PMIx's plugins (dlopened, so ldd of the executables misses them)
ompi=$(dirname "$(find /usr/lib -name mca_btl_self.so -print -quit)")
pmix=$(dirname "$(find /usr/lib -name 'pmix_mca_*.so' -print -quit)")
[ -d "$ompi" ] && [ -d "$pmix" ] || { echo "gpu_pack: Open MPI's or PMIx's plugin folder not found under /usr/lib" >&2; exit 1; }
cp -rL "$ompi" "$stage/mpi/ompi"
cp -rL "$pmix" "$stage/mpi/pmix"
for so in "$stage"/mpi/*/*.so; do copy_deps "$so"; done
git -C "$src" describe --always --dirty > "$stage/COMMIT" 2>/dev/null || echo unknown > "$stage/COMMIT"
if [ -n "${GPU_PACK_BASE:-}" ]; then
  base=$(cd "$GPU_PACK_BASE" && pwd)
  [ -x "$base/ingrain_bench_model" ] || { echo "gpu_pack: $base/ingrain_bench_model is missing" >&2; exit 1; }
  cp "$base/ingrain_bench_model" "$stage/bin/base_bench_model"
  copy_deps "$base/ingrain_bench_model"
  base_src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$base/CMakeCache.txt")
  git -C "$base_src" describe --always --dirty > "$stage/BASE_COMMIT" 2>/dev/null || echo unknown > "$stage/BASE_COMMIT"
fi
rm -rf "$kit"
mkdir -p "$kit"
tar -C "$stage" -cf - bin lib mpi $(cd "$stage" && ls *COMMIT) | xz -T0 -6 > "$kit/kit.tar.xz"
size=$(du -m "$kit/kit.tar.xz" | cut -f1)
echo "gpu_pack: ${#bins[@]} executables and $(ls "$stage/lib" | wc -l) libraries in $kit/kit.tar.xz (${size} MiB)"
[ "$size" -lt 50 ] || { echo "gpu_pack: the kit is over 50 MiB" >&2; exit 1; }
