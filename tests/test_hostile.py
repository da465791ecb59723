"""Hostile inputs through the public API, where a crash fails the test instead of the run.

All cases (tests/hostile_cases.py) run in one child process that reports each
outcome as a JSON line. If the child dies (segfault, abort), the first case it
did not report is run again alone, which names the crasher, and the rest go on in
a new child; so a crash costs two extra processes, not one per case. Every case
must raise a clear exception or match bitops.reference.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field

import pytest

import bitops

from . import hostile_cases, hostile_selftest_cases

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 240


@dataclass
class Outcome:
    results: dict = field(default_factory=dict)  # case -> the child's JSON record
    crashes: dict = field(default_factory=dict)  # case -> how its process ended
    children: int = 0

    def wrong(self):
        return {name: r["detail"] for name, r in self.results.items() if r["status"] != "ok"}


def _child(module: str, names: list) -> tuple:
    """Runs the named cases in one fresh interpreter: (records in order, exit description or None)."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "tests.hostile_runner", module, *names],
            cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S,
            env={**os.environ, "BITOPS_QUIET": "1"},
        )
        out, code, err = proc.stdout, proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as e:  # a hang is a failure too
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        code, err = "timeout", f"no answer within {TIMEOUT_S} s"
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    last_words = err.strip().splitlines()[-1] if err.strip() else ""
    ended = None if code == 0 else f"exit {code} {last_words}".strip()
    return records, ended


def run_cases(module: str, names: list) -> Outcome:
    """Runs every case; a child's death is always recorded as a crash of some case."""
    outcome = Outcome()
    pending = list(names)
    while pending:
        records, ended = _child(module, pending)
        outcome.children += 1
        outcome.results.update({r["case"]: r for r in records})
        if ended is None:
            break
        pending = [n for n in pending if n not in outcome.results]
        if not pending:  # died after the last case (at exit)
            outcome.crashes["<interpreter exit>"] = ended
            break
        suspect, pending = pending[0], pending[1:]
        records, alone = _child(module, [suspect])
        outcome.children += 1
        if alone is None and records:  # fine alone: an earlier case left the process broken
            outcome.results.update({r["case"]: r for r in records})
            outcome.crashes[f"after the cases before {suspect!r}"] = ended
        else:
            outcome.crashes[suspect] = alone or ended
    return outcome


def test_case_names_are_distinct():
    names = [c.name for c in hostile_cases.CASES]
    assert len(names) == len(set(names))
    assert len(names) >= 30


@pytest.mark.skipif(bitops.backend() == "reference", reason="native extension not built")
def test_hostile_inputs_never_crash_nor_lie(capsys):
    names = [c.name for c in hostile_cases.CASES]
    outcome = run_cases("tests.hostile_cases", names)
    raised = sum(1 for r in outcome.results.values() if r["status"] == "ok" and r["raised"])
    wrong = outcome.wrong()
    with capsys.disabled():
        print(
            f"\nhostile: {len(names)} cases tried ({raised} raised clearly, "
            f"{len(names) - raised - len(wrong) - len(outcome.crashes)} matched the oracle), "
            f"{len(outcome.crashes)} crashes, {len(wrong)} wrong results"
        )
    assert not outcome.crashes, f"crashed: {outcome.crashes}"
    assert not wrong, f"wrong: {json.dumps(wrong, indent=1)}"
    assert set(outcome.results) == set(names), "some cases never reported"


def test_harness_pinpoints_a_crash_and_a_wrong_result():
    """The harness itself: a crasher is named, a crash it cannot pin on one case is still a
    crash, and the cases after them are still judged."""
    names = [c.name for c in hostile_selftest_cases.CASES]
    outcome = run_cases("tests.hostile_selftest_cases", names)
    assert list(outcome.crashes) == ["segfault", "after the cases before 'dies only after that'"]
    assert "-11" in outcome.crashes["segfault"] or "SIG" in outcome.crashes["segfault"]
    assert set(outcome.wrong()) == {"returns instead of raising", "raises the wrong type"}
    assert outcome.results["after the crash"]["status"] == "ok"
    assert outcome.results["dies only after that"]["status"] == "ok"  # alone, it is fine
    assert outcome.children == 4  # two per crash: the batch that died, its suspect alone
