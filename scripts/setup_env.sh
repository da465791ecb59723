#!/usr/bin/env bash
# Creates ./.venv (if missing) with the CPU build of torch and the tools, then
# builds bitops' extension in place against that torch. Offline-safe here: torch
# 2.13.0 comes from a local wheel, and nothing here can pull a CUDA torch.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${BITOPS_VENV:-.venv}
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip -q --disable-pip-version-check"
# torch is pinned: an unpinned torch could resolve to a multi-GB CUDA build.
$VENV/bin/python -c "import torch" 2>/dev/null || $PIP install "torch==${BITOPS_TORCH_VERSION:-2.13.0}"
$PIP install numpy pytest hypothesis ninja pybind11 tqdm matplotlib setuptools wheel safetensors transformers scikit-learn
# Build against the torch just installed (no build isolation: no second torch).
$PIP install --no-build-isolation --no-deps -e .
$VENV/bin/python -c "import bitops; print('bitops backend:', bitops.backend())"
