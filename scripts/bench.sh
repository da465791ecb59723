#!/usr/bin/env bash
# Fresh machine -> the main benchmark: float vs packed ternary/binary matmul on this CPU.
# Pass --full for the full sweep (default: --quick, about a minute).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python benchmarks/matmul.py "${@:---quick}"
