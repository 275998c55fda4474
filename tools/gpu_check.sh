#!/usr/bin/env bash
# The GPU checks of the CUDA backend, run on a machine with an NVIDIA GPU in the root of a copy of
# the source tree that holds .gpukit/kit.tar.xz (made here by tools/gpu_pack.sh): unpacks the kit,
# prints the GPUs, runs the GPU tests (test_ops_gpu, test_model_gpu with the reference data of
# tests/data, test_model_bf16, test_decode_gpu), the training benchmark (small and gpt2-124m, f32 and bf16 matmuls,
# MFU beside cuBLAS's bf16 peak, the bf16 step's per-op profile), the decoding benchmark (batch 1
# and 64), Nsight Compute on the attention, loss and stacking kernels (where ncu exists), the
# distillation trainer's benchmark, a CPU-versus-GPU `ingrain score`, the quickstart's bootstrap on
# the GPU and the whole job (`ingrain run`) on the CPU and the GPU (f32 and bf16). Every step has its own time
# limit and a failing step does not stop the next; the whole log goes to $OUT/gpu_check.log (OUT
# defaults to /tmp/gpu_check). Exits 1 if any step failed.
#   usage: bash tools/gpu_check.sh      (needs: CUDA runtime and cuBLAS 13 under /usr/local/cuda, python3)
#   GPU_CHECK_ONLY=REGEX runs only the steps whose names match (grep -E), e.g. 'bootstrap|run'.
set -uo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/gpu_check}
kit=/tmp/ingrain_gpukit
budget=${GPU_CHECK_SECONDS:-400} # all steps together stay under this
mkdir -p "$out"
log=$out/gpu_check.log
exec > >(tee "$log") 2>&1
start=$SECONDS
failed=()

# step NAME LIMIT_S CMD...: runs CMD with the smaller of LIMIT_S and the time left
step() {
  local name=$1 limit=$2
  shift 2
  [ -z "${GPU_CHECK_ONLY:-}" ] || grep -Eq "$GPU_CHECK_ONLY" <<<"$name" || return 0
  local left=$((budget - (SECONDS - start)))
  [ "$limit" -lt "$left" ] || limit=$left
  echo
  echo "=== $name (limit ${limit}s, $((SECONDS - start))s elapsed)"
  if [ "$limit" -le 5 ]; then
    echo "=== $name: SKIPPED (out of time)"
    failed+=("$name (skipped)")
    return
  fi
  local t0=$SECONDS
  timeout -k 5 "$limit" "$@"
  local rc=$?
  echo "=== $name: rc=$rc in $((SECONDS - t0))s"
  [ $rc -eq 0 ] || failed+=("$name (rc $rc)")
}

rm -rf "$kit" && mkdir -p "$kit"
tar -xJf "$src/.gpukit/kit.tar.xz" -C "$kit" || { echo "gpu_check: cannot unpack $src/.gpukit/kit.tar.xz"; exit 1; }
# the kit's libraries, then CUDA's from the toolkit; a library still missing (NCCL, say) is looked
# for elsewhere, e.g. in the Python wheels of PyTorch
export LD_LIBRARY_PATH=$kit/lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
bin=$kit/bin
for lib in $(ldd "$bin"/* | awk '/not found/ {print $1}' | sort -u); do
  found=$(find /usr/local /opt /usr/lib -name "$lib" -print -quit 2>/dev/null)
  echo "gpu_check: $lib is not on the library path; using ${found:-nothing found}"
  [ -n "$found" ] && LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$(dirname "$found")
done
export INGRAIN_TEST_DATA=$src/tests
echo "gpu_check: kit of commit $(cat "$kit/COMMIT"), tree $src, log $log"
ldd "$bin/test_ops_gpu" | grep -E 'cuda|cublas|nccl'
nvidia-smi -L
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
step "ingrain version" 20 "$bin/ingrain" version

# most informative first, since a lease's time may run out: the op tests, the model in bf16 mode,
# the step the MFU goal is about (with its profile, and beside the base kit's), its kernels under
# Nsight Compute; then the rest
step "test_ops_gpu" 180 "$bin/test_ops_gpu"
step "test_model_bf16" 60 "$bin/test_model_bf16"
export bin kit out src
profile_args=(--device cuda --bf16 --config gpt2-124m --batch 16 --seq 1024 --steps 8 --warmup 2 --profile)
step "bench model gpt2-124m bf16" 60 bash -o pipefail -c \
  '"$bin/ingrain_bench_model" "$@" | tee "$out/profile.txt"' _ "${profile_args[@]}"
# the kit's base binary (gpu_pack.sh's GPU_PACK_BASE) beside this build's, alternating, on the
# step the MFU goal is about; the base's result lines are marked BASE_RESULT
if [ -x "$bin/base_bench_model" ]; then
  bench_ab() {
    local args=(--device cuda --bf16 --config gpt2-124m --batch 16 --seq 1024 --steps 8 --warmup 2)
    for round in 1 2; do
      echo "--- round $round: base (kit of $(cat "$kit/BASE_COMMIT")), then this build"
      "$bin/base_bench_model" "${args[@]}" | sed 's/^RESULT/BASE_RESULT/' || return 1
      "$bin/ingrain_bench_model" "${args[@]}" || return 1
    done
  }
  export -f bench_ab
  step "bench model gpt2-124m bf16, base vs this build" 150 bash -c bench_ab
  # the base's profile, and both op by op (tools/profile_compare.py)
  step "bench model gpt2-124m bf16 --profile, base" 60 bash -o pipefail -c \
    '"$bin/base_bench_model" "$@" | tee "$out/profile_base.txt"' _ "${profile_args[@]}"
  step "profile, base vs this build" 10 python3 "$src/tools/profile_compare.py" "$out/profile_base.txt" \
    "$out/profile.txt"
fi
# Nsight Compute on the kernels the remaining tuning is about (attention forward and backward,
# the cross-entropy row, the q/k/v stacking), where that machine has ncu: the speed-of-light,
# occupancy, launch, warp-state, scheduler and memory sections of 2 launches of each at gpt2-124m
# batch 4 x 1024, as CSV in $out/ncu_<kernel>.csv, and the headline metrics in the log
ncu_bin=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
if [ -n "$ncu_bin" ]; then
  ncu_kernels() {
    local k
    for k in attn_mma_fwd_kernel attn_mma_bwd_kernel cross_entropy_kernel stack_cols_kernel; do
      "$ncu_bin" --kernel-name "regex:$k" --launch-skip 1 --launch-count 2 --section SpeedOfLight \
        --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats \
        --section MemoryWorkloadAnalysis --csv --page details "$bin/ingrain_bench_model" --device cuda --bf16 \
        --config gpt2-124m --batch 4 --seq 1024 --steps 2 --warmup 1 > "$out/ncu_$k.csv" || return 1
      python3 "$src/tools/ncu_summary.py" "$out/ncu_$k.csv" || return 1
    done
  }
  export ncu_bin bin out src
  export -f ncu_kernels
  step "ncu kernels (attention, loss, stacking)" 150 bash -c ncu_kernels
else
  echo "gpu_check: no ncu on this machine; the kernel profile step is left out"
fi
step "test_model_gpu" 90 "$bin/test_model_gpu"
step "test_decode_gpu" 90 "$bin/test_decode_gpu"
step "bench model small bf16" 60 "$bin/ingrain_bench_model" --device cuda --bf16 --config small --batch 16 \
  --seq 1024 --steps 8 --warmup 2 --profile
for cfg in small gpt2-124m; do
  step "bench model $cfg f32" 60 "$bin/ingrain_bench_model" --device cuda --config "$cfg" --batch 16 --seq 1024 \
    --steps 8 --warmup 2
done
for cfg in small gpt2-124m; do
  step "bench decode $cfg" 60 "$bin/ingrain_bench_decode" --device cuda --config "$cfg" --batch 1,64 \
    --prompt 64 --new 128 --rounds 2
done
step "bench decode small bf16" 40 "$bin/ingrain_bench_decode" --device cuda --bf16 --config small --batch 1,64 \
  --prompt 64 --new 128 --rounds 2
# with the profile: backend calls (launches) and time per op in a decode step
step "bench decode gpt2-124m bf16 --profile" 60 "$bin/ingrain_bench_decode" --device cuda --bf16 --config gpt2-124m \
  --batch 1,64 --prompt 64 --new 128 --rounds 2 --profile

# the whole decoding path, CPU against GPU: log-probs of the same tokens under the same weights
score_both() {
  local toks=72,101,108,108,111,44,32,119,111,114,108,100,33,32,84,104,105,115,32,105,115,32,97,32,116,101,115,116
  "$bin/ingrain" score --model small --seed 3 --tokens $toks --topk 5 --device cpu > "$out/score_cpu.json" &&
    "$bin/ingrain" score --model small --seed 3 --tokens $toks --topk 5 --device cuda > "$out/score_cuda.json" &&
    python3 - "$out/score_cpu.json" "$out/score_cuda.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
err = max(abs(x - y) for x, y in zip(a["logprobs"][1:], b["logprobs"][1:]))
print(f"score: {len(a['logprobs']) - 1} log-probs, max |cpu - cuda| = {err:.2e} (limit 1e-4)")
sys.exit(0 if err <= 1e-4 else 1)
PY
}
export bin out
export -f score_both
step "score cpu vs cuda" 60 bash -c score_both

# the whole job on the GPU (f32, and bf16: bf16 activations in training and a bf16 KV cache in the
# rollouts): one rank playing every role, Open MPI as a singleton without mpirun
# or an installation (the kit's plugins; an isolated singleton starts no daemon); the e2e config,
# 2 iterations, beside the same job on the CPU
export OMPI_MCA_mca_base_component_path=$kit/mpi/ompi PMIX_MCA_mca_base_component_path=$kit/mpi/pmix \
  OMPI_MCA_ess_singleton_isolated=1 OMPI_MCA_btl=self,vader OMPI_MCA_pml=ob1 OMPI_ALLOW_RUN_AS_ROOT=1 \
  OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# the distillation trainer's step on the GPU (fixed point and float; NCCL among the one trainer);
# an MPI program, so after the singleton's settings above
step "bench distill" 90 "$bin/ingrain" bench distill --device cuda --bf16 --config small --config gpt2-124m \
  --seqs 64 --len 256 --micro 2048 --steps 4

# the bootstrap of the quickstart's base model on the GPU, with its evaluation (docs/BOOTSTRAP.md)
step "bootstrap quickstart (cuda)" 200 "$bin/ingrain" bootstrap "$src/configs/quickstart.yaml" --eval 32 \
  --set model.device=cuda --set bootstrap.cache_dir="$out/bootstrap"
# a one-item seed pool, so that iteration 0 distils too (with an empty pool it has nothing to)
printf 'items:\n  - "Search first: When a task names a page, search for it."\n' >"$out/seed_pool.yaml"
for dev in cpu cuda cuda:bf16; do
  step "ingrain run ($dev)" 120 "$bin/ingrain" run "$src/tests/e2e/small.yaml" --set model.device=${dev%%:*} \
    --set model.dtype=$([ "$dev" = cuda:bf16 ] && echo bf16 || echo f32) --set run.iterations=2 \
    --set run.dir="$out/run_${dev/:/_}" --set bootstrap.cache_dir="$out/bootstrap" \
    --set experience.seed_pool="$out/seed_pool.yaml"
done

echo
echo "=== summary ($((SECONDS - start))s)"
grep -h '^RESULT\|^BASE_RESULT' "$log" | sort -u
if [ ${#failed[@]} -eq 0 ]; then
  echo "gpu_check: all steps passed"
  exit 0
fi
printf 'gpu_check: FAILED: %s\n' "${failed[@]}"
exit 1
