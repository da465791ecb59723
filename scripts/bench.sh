#!/usr/bin/env bash
# Fresh machine -> the main benchmark: float vs packed ternary/binary matmul on this CPU.
#   bash scripts/bench.sh           # --quick (about a minute), results in benchmarks/results/quick/
#   bash scripts/bench.sh --full    # the full sweep, results in benchmarks/results/
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
if [ "${1:-}" = "--full" ]; then
  shift
  exec .venv/bin/python benchmarks/matmul.py "$@"
fi
exec .venv/bin/python benchmarks/matmul.py --quick "$@"
