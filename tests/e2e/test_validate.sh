#!/usr/bin/env bash
# The validation of the items an iteration adds (experience.validate_tasks) on a base model that
# can act: the quickstart's, bootstrapped on the project's 2-core VM and stored in bf16 in
# tests/data/boot/quickstart. Its rollouts succeed often enough for the miner to add items, which
# the briefly bootstrapped model of the other e2e tests never does. Checked:
#   - the miner added items and each was played with and without: kept exactly when it solved more
#     training tasks than the pool without it, and, after the best of those, when it still solved
#     more beside the items kept before it, as the log and the pool's audit both say
#   - a deleted item is out of the pool the run ends with
#   - np = 1 and 2 give identical metrics and pools, and so does a run stopped by SIGUSR1 during
#     its validation and resumed
#   usage: test_validate.sh INGRAIN SOURCE_DIR MPIEXEC WORKDIR
set -uo pipefail
ingrain=$1 src=$2 mpiexec=$3 work=$4
rm -rf "$work" && mkdir -p "$work"
cfg="$src/configs/quickstart.yaml"
# a liberal miner (z 0, 8 rules) and run.seed 3: in the second iteration two items win alone, so the
# second is also played beside the first; the fixture is the quickstart's byte-tokenizer base model
# of 2026-11-26, so the keys the quickstart has changed since are set back
common=(--set bootstrap.cache_dir="$work/cache" --set run.iterations=2 --set eval.tasks=8 --set distill.epochs=1
        --set experience.validate_tasks=16 --set run.seed=3 --set experience.mine_z=0 --set experience.mine_max_rules=8
        --set bootstrap.vocab_size=0 --set rollout.tasks_per_iter=16 --set experience.mine_max_share=1
        --set env.trap_rate=0.35 --set bootstrap.expert_rate=0.35)
source "$src/tests/e2e/lib.sh"

# the fixture goes where the run looks for the quickstart's cached base model
boot=$("$ingrain" bootstrap "$cfg" "${common[@]}" --where 2>/dev/null) || { echo "bootstrap --where failed"; exit 1; }
mkdir -p "$boot" && cp "$src/tests/data/boot/quickstart/config.json" "$src/tests/data/boot/quickstart/model.safetensors" "$boot/"

for np in 1 2; do
  guarded "$work/np$np.log" "$mpiexec" -n $np --oversubscribe "$ingrain" run "$cfg" "${common[@]}" \
    --set run.dir="$work/np$np"
  check "run np=$np" test -f "$work/np$np/DONE"
done
# SIGUSR1 while the first iteration validates: it finishes, checkpoints, exits 75; --resume ends
# with the same metrics and pool as the uninterrupted run
dir="$work/signalled"
"$mpiexec" -n 2 --oversubscribe "$ingrain" run "$cfg" "${common[@]}" --set run.dir="$dir" >"$dir.log" 2>&1 &
usr1_when $! "$dir.log" "\[iter 1/2\] validate" "$dir"
rc=$?
check "SIGUSR1: exit 75 (got $rc)" test "$rc" -eq 75
guarded "$dir.log" "$mpiexec" -n 2 --oversubscribe "$ingrain" run "$cfg" "${common[@]}" --set run.dir="$dir" --resume
check "SIGUSR1: resumed metrics = uninterrupted" \
  python3 "$src/tools/compare_metrics.py" "$work/np2/metrics.jsonl" "$dir/metrics.jsonl"
check "SIGUSR1: resumed pool = uninterrupted" cmp -s "$work/np2/pool_iter_0001.json" "$dir/pool_iter_0001.json"

check "the fixture was used, not a fresh bootstrap" grep -q 'using the cached base model' "$work/np1.log"
check "np=2 metrics = np=1" python3 "$src/tools/compare_metrics.py" "$work/np1/metrics.jsonl" "$work/np2/metrics.jsonl"
check "np=2 pool = np=1" cmp -s "$work/np1/pool_iter_0001.json" "$work/np2/pool_iter_0001.json"

check "kept exactly the items that solved more" python3 - "$work/np1.log" "$work/np1" <<'PY'
import collections, json, re, sys
log, run = sys.argv[1], sys.argv[2]
without, alone, together = {}, [], {}
for line in open(log):
    m = re.search(r"\[iter (\d+)/\d+\] validate: \d+ new item\(s\) on \d+ training tasks .*; (\d+) solved without", line)
    if m:
        without[int(m.group(1)) - 1] = int(m.group(2))
    m = re.search(r"\[iter (\d+)/\d+\] validate: (keep|delete) with item (\d+) \((\d+) solved\)", line)
    if m:
        alone.append((int(m.group(1)) - 1, m.group(2), int(m.group(3)), int(m.group(4))))
    m = re.search(r"\[iter (\d+)/\d+\] validate: (keep|delete) item (\d+) beside the \d+ kept before it "
                  r"\((\d+) solved against (\d+)\)", line)
    if m:
        together[(int(m.group(1)) - 1, int(m.group(3)))] = (m.group(2), int(m.group(4)), int(m.group(5)))
if not alone:
    sys.exit("the miner added no item to validate")
final = json.load(open(f"{run}/pool_iter_0001.json"))
in_pool = {it["id"] for it in final["items"]}
audit = {(a["iteration"], a["id"]): a for a in final["audit"] if a["op"] == "DELETE"}
winners = collections.Counter(k for k, verdict, _, _ in alone if verdict == "keep")
for k, n in winners.items():  # every winner after the best is played beside those kept before it
    if sum(1 for (kk, _) in together if kk == k) != n - 1:
        sys.exit(f"iteration {k}: {n} items won alone, but not all after the best were played together")
for k, verdict, item, solved in alone:
    want = "keep" if solved > without[k] else "delete"
    if verdict != want:
        sys.exit(f"iteration {k} item {item}: {solved} solved against {without[k]} without, but '{verdict}'")
    reason = f"{solved} of 16"
    if (k, item) in together:
        verdict, solved, best = together[(k, item)]
        if verdict != ("keep" if solved > best else "delete"):
            sys.exit(f"iteration {k} item {item}: {solved} solved beside the kept items against {best}, but '{verdict}'")
        reason = f"{solved} of 16 training tasks solved with it beside the items kept before it"
    a = audit.get((k, item))
    if verdict == "delete":
        if item in in_pool or not a or not a["reason"].startswith("validation:") or reason not in a["reason"]:
            sys.exit(f"iteration {k} item {item}: deleted by validation but the pool says otherwise")
    elif a and a["reason"].startswith("validation:"):
        sys.exit(f"iteration {k} item {item}: kept, yet audited as deleted by validation")
print(f"{len(alone)} validated items: " + ", ".join(f"{v} #{i}" for _, v, i, _ in alone) +
      f"; {len(together)} played beside the items kept before them")
PY

check "won - lost = the teacher's lead, in every evaluation" python3 - "$work/np1/metrics.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["type"] not in ("base", "iteration"):
        continue
    lead = round((r["teacher_success"] - r["student_success"]) * r["eval_tasks"])
    if r["teacher_won"] - r["teacher_lost"] != lead or not 0 < r["teacher_sign_p"] <= 1:
        sys.exit(f"{r['type']} {r.get('iteration')}: won {r['teacher_won']}, lost {r['teacher_lost']}, lead {lead}")
PY

echo "test_validate: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
