#!/usr/bin/env bash
# Run a command while N other CPU-bound processes compete for the cores (default 2),
# as on a busy laptop or a shared CI runner:
#     bash scripts/with_load.sh make test
#     LOAD=4 bash scripts/with_load.sh .venv/bin/python scripts/build.py
# The busy loops stop when the command ends (and after 2 hours at the latest).
set -uo pipefail
n=${LOAD:-2}
pids=()
for _ in $(seq "$n"); do
  timeout 7200 sh -c 'while :; do :; done' &
  pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null' EXIT INT TERM
echo "with_load: $n busy loops running (pids ${pids[*]})"
"$@"
