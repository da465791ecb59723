"""benchmarks/decode.py --quick runs end to end in CI and writes its report."""

import json
import os
import sys

import pytest
import torch

pytest.importorskip("transformers")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))


def test_decode_quick_run_writes_a_report(tmp_path):
    import decode

    threads = torch.get_num_threads()
    try:
        assert decode.main(["--quick", "--no-compile", "--out", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)
    saved = json.loads((tmp_path / "decode_quick.json").read_text())
    for name in ("bitops", "bitops, int8 head", "transformers BitLinear", "dense bf16 nn.Linear"):
        v = saved["variants"][name]
        assert v["tokens_per_s"] > 0 and 0 < v["pct_floor"], name
    assert set(saved["variants"]["bitops"]["prefill_s"]) == {"16", "64"}
    # the converted model decodes what transformers' own path would start with
    assert saved["convert"]["cosine_vs_transformers_bf16"] > 0.99
    assert saved["int8_head"]["max_rel_error_per_position"] < 0.05
    report = (tmp_path / "decode_quick.md").read_text()
    assert "| bitops |" in report and "Where a bitops token" in report
    assert (tmp_path / "decode_quick.png").exists()
