#!/usr/bin/env bash
# Fresh machine -> passing test run: set up ./.venv (CPU torch, built extension), then run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python -m pytest -q "$@"
