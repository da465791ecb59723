"""The float-vs-BitLinear Transformer comparison runs end to end (a CI-sized run)."""

import json
import os
import sys

import pytest

import bitops

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))


@pytest.mark.skipif(bitops.backend() == "reference", reason="native extension not built")
def test_transformer_quick_run_writes_a_report(tmp_path):
    import transformer

    results = transformer.main(["--quick", "--steps", "6", "--out", str(tmp_path)])
    for variant in ("float", "bitlinear", "bitlinear-int8"):
        r = results[variant]
        assert r["final_val_loss"] < 6.0  # below uniform over 256 bytes (ln 256 = 5.55) plus slack
        assert r["gen_tokens_per_s"] > 0 and r["step_ms_median"] > 0
    # packed projection weights: 2 bits instead of 32, plus small per-layer scales and norms
    assert results["float"]["linear_weight_bytes"] >= 8 * results["bitlinear"]["linear_weight_bytes"]
    report = (tmp_path / "transformer_quick.md").read_text()
    assert "BitLinear" in report and "tokens/s" in report
    saved = json.loads((tmp_path / "transformer_quick.json").read_text())
    assert set(saved["results"]) == {"float", "bitlinear", "bitlinear-int8"}
    assert "int8 backward" in report
