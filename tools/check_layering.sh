#!/usr/bin/env bash
# Checks the dependency direction between the libraries (docs/ARCHITECTURE.md):
#   common <- io <- model <- rollout <- distill <- mpi <- apps
# A file in one folder may include headers only from its own folder and the folders below it.
# CMake links each library only to those below it; this catches includes that would need a cycle.
#   usage: tools/check_layering.sh [SOURCE_DIR]
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"
order=(common io model rollout distill mpi apps)
bad=0
for i in "${!order[@]}"; do
  dir=${order[$i]}
  allowed=" ${order[*]:0:$((i + 1))} "
  [ -d "$dir" ] || continue
  while IFS=: read -r file line text; do
    inc=$(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([a-z_]*\)\/.*/\1/p' <<<"$text")
    [ -n "$inc" ] || continue
    case " ${order[*]} " in *" $inc "*) ;; *) continue ;; esac
    if [[ "$allowed" != *" $inc "* ]]; then
      echo "$file:$line: '$dir' must not include from '$inc' (allowed: ${allowed# })"
      bad=1
    fi
  done < <(grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$dir" --include='*.c' --include='*.h' \
             --include='*.cu' --include='*.cuh' || true)
done
[ "$bad" -eq 0 ] && echo "layering: ok (${order[*]})"
exit "$bad"
