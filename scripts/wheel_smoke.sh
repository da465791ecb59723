#!/usr/bin/env bash
# Builds a wheel against the torch in ./.venv, installs it into a fresh virtual
# environment (torch + the wheel, nothing from this checkout) and runs a smoke test there.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${BITOPS_VENV:-.venv}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$VENV/bin/python" -m pip wheel -q --disable-pip-version-check --no-build-isolation --no-deps -w "$work/dist" .
torch_version=$("$VENV/bin/python" -c "import torch; print(torch.__version__.split('+')[0])")
python3 -m venv "$work/env"
"$work/env/bin/python" -m pip install -q --disable-pip-version-check "torch==$torch_version" numpy
"$work/env/bin/python" -m pip install -q --disable-pip-version-check --no-deps "$work"/dist/bitops-*.whl
cd "$work"  # away from the checkout, so only the installed wheel can be imported
"$work/env/bin/python" - <<'PY'
import torch, bitops
assert bitops.backend() != "reference", "the wheel's extension did not load"
assert "site-packages" in bitops.__file__, bitops.__file__
x = torch.randn(3, 300)
wq, gamma = bitops.ternary_quantize(torch.randn(17, 300))
packed = bitops.pack_ternary(wq)
assert torch.equal(bitops.ternary_linear(x, packed, gamma), bitops.reference.ternary_linear(x, packed, gamma))
print(f"wheel smoke test passed: bitops {bitops.__version__}, backend {bitops.backend()}, from {bitops.__file__}")
PY
