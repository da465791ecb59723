"""benchmarks/train_step.py runs end to end on CI-sized shapes and writes its report."""

import json
import os
import sys

import pytest

import bitops

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))


@pytest.mark.skipif(bitops.backend() == "reference", reason="native extension not built")
def test_train_step_quick_run_writes_a_report(tmp_path):
    import train_step

    res = train_step.main(["--quick", "--out", str(tmp_path)])
    assert {r["dtype"] for r in res["rows"]} == {"fp32", "bf16"}
    for r in res["rows"]:
        assert set(r["step_s"]) == {"nn.Linear", "exact", "int8"} and all(t > 0 for t in r["step_s"].values())
        if r["dtype"] == "fp32":
            assert r["exact_floor_s"] > 0 and r["parts"]["sgemm_gflops"] > 0
    saved = json.loads((tmp_path / "train_step_cpu_quick.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(res["rows"]))
    report = (tmp_path / "train_step_cpu_quick.md").read_text()
    assert "exact bound" in report.lower() and "int8 grad_x kernel" in report
    train_step.main(["--quick", "--out", str(tmp_path), "--rerender", str(tmp_path / "train_step_cpu_quick.json")])
