#!/usr/bin/env bash
# Run the benchmarks in bench/ (not part of CI); results go to docs/performance.md by hand.
#   scripts/bench.sh [name ...]   e.g. scripts/bench.sh gateway_overhead
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for f in bench/*.py; do b=$(basename "$f" .py); [[ $b == _* ]] || names+=("$b"); done
fi
for n in "${names[@]}"; do
  echo "=== bench/$n.py ==="
  "$PY" "bench/$n.py"
done
