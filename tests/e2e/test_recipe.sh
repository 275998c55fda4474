#!/usr/bin/env bash
# The real-model recipe (configs/qwen3-4b-webwalker.yaml) loads, validates and runs one small
# iteration here: a tiny random Qwen3-shaped HF model (tests/e2e/make_tiny_hf.py) with its
# tokenizer.json, the example external environment in Python, the model as LLM judge and extractor.
#   usage: test_recipe.sh INGRAIN SOURCE_DIR MPIEXEC WORKDIR
set -uo pipefail
ingrain=$1 src=$2 mpiexec=$3 work=$4
rm -rf "$work" && mkdir -p "$work"
source "$src/tests/e2e/lib.sh"
/usr/bin/python3 "$src/tests/e2e/make_tiny_hf.py" "$src" "$work/tiny-qwen3" || exit 1
recipe="$src/configs/qwen3-4b-webwalker.yaml"
check "the recipe validates as shipped" "$ingrain" config "$recipe"
out=$("$ingrain" run "$recipe" --set run.dir="$work/refused" --set model.path="$work/tiny-qwen3" 2>&1)
check "a CUDA recipe on a CPU build is refused clearly" grep -q "model.device 'cuda'" <<<"$out"
small=(--set run.dir="$work/run" --set model.path="$work/tiny-qwen3" --set model.device=cpu --set model.dtype=f32
       --set model.max_seq_len=1024 --set model.threads=1 --set ranks.colocate=true --set run.iterations=1
       --set env.command="python3 $src/examples/envs/guess_number.py" --set env.timeout_s=30
       --set env.train_tasks=8 --set env.heldout_tasks=4 --set env.max_turns=3 --set rollout.tasks_per_iter=2
       --set rollout.group_size=2 --set rollout.max_new_tokens=24 --set rollout.max_context=1024
       --set distill.micro_batch_tokens=2048 --set distill.batch_tokens=4096 --set distill.epochs=1
       --set distill.reward_threshold=0 --set eval.tasks=2 --set experience.judge=llm)
check "one iteration of the recipe at np=2" guarded "$work/run.log" "$mpiexec" -n 2 --oversubscribe "$ingrain" run \
  "$recipe" "${small[@]}"
check "it finished" test -f "$work/run/DONE"
check "it wrote an iteration record" grep -q '"type":"iteration"' "$work/run/metrics.jsonl"
# the random model cannot write a verdict: every LLM judgement is logged as unparseable, counted failed
check "the model judged the episodes (LLM judge)" grep -q "LLM judge on task" "$work/run.log"
check "the LLM extractor ran" grep -q "llm: no proposals\|llm:" "$work/run/pool_diff_iter_0000.txt"
echo "test_recipe: $passed passed, $failed failed"
[ "$failed" -eq 0 ] || tail -30 "$work/run.log"
[ "$failed" -eq 0 ]
