"""Child side of the hostile-input suite: runs named cases, one JSON line each.

    python -m tests.hostile_runner MODULE [CASE ...]

MODULE holds ``CASES``, a list of :class:`Case`. Each line is printed (and
flushed) as soon as its case is judged, so when a case kills the process the
parent knows exactly which cases finished (tests/test_hostile.py).
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class Case:
    name: str
    call: Callable[[], Any]
    expect: Any  # Raises, SameAs or Satisfies


@dataclass
class Raises:
    """The call must raise ``exc`` with a message matching ``pattern`` (the problem, named)."""

    exc: type
    pattern: str

    def judge_raise(self, e):
        if isinstance(e, self.exc) and re.search(self.pattern, str(e)):
            return None
        return f"raised {type(e).__name__}({str(e)[:200]!r}), wanted {self.exc.__name__} matching {self.pattern!r}"

    def judge_result(self, result):
        return f"returned {_describe(result)} instead of raising {self.exc.__name__}"


@dataclass
class SameAs:
    """The call must return what ``oracle()`` returns: bit-exact (NaN where NaN), or within ``rtol``."""

    oracle: Callable[[], Any]
    rtol: float = 0.0

    def judge_raise(self, e):
        return f"raised {type(e).__name__}: {str(e)[:200]}"

    def judge_result(self, result):
        return _compare(result, self.oracle(), self.rtol)


@dataclass
class Satisfies:
    """The call's result must pass ``check(result)``; ``what`` says what that means."""

    check: Callable[[Any], bool]
    what: str

    def judge_raise(self, e):
        return f"raised {type(e).__name__}: {str(e)[:200]}"

    def judge_result(self, result):
        return None if self.check(result) else f"result is not {self.what}: {_describe(result)}"


def _describe(x):
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return f"tensor{tuple(x.shape)} {x.dtype} on {x.device}"
    return type(x).__name__


def _compare(got, want, rtol):
    import torch

    if isinstance(want, tuple):
        if not isinstance(got, tuple) or len(got) != len(want):
            return f"got {_describe(got)}, wanted a tuple of {len(want)}"
        for g, w in zip(got, want):
            if (why := _compare(g, w, rtol)) is not None:
                return why
        return None
    if hasattr(got, "qdata") and hasattr(want, "qdata"):  # PackedWeights: same kind, K, bytes
        if (got.kind, got.in_features) != (want.kind, want.in_features):
            return f"got {got!r}, wanted {want!r}"
        got, want = got.qdata, want.qdata
    if not isinstance(got, torch.Tensor):
        return f"got {_describe(got)}, wanted a tensor"
    if (got.shape, got.dtype, got.device) != (want.shape, want.dtype, want.device):
        return f"got {_describe(got)}, wanted {_describe(want)}"
    if got.device.type == "meta":
        return None
    if got.is_floating_point():
        g, w = got.double(), want.double()
        if not torch.equal(g.isnan(), w.isnan()):
            return "NaN in different places"
        g, w = g.nan_to_num(0.0), w.nan_to_num(0.0)
        if rtol == 0.0:
            ok = torch.equal(g, w)
        else:
            ok = bool(((g - w).abs() <= rtol * w.abs().clamp_min(1.0)).all()) and torch.equal(g.isinf(), w.isinf())
        return None if ok else f"values differ: max |diff| {(g - w).abs().max().item():.3g}"
    return None if torch.equal(got, want) else "integer values differ"


def run_case(case: Case) -> dict:
    try:
        result = case.call()
    except Exception as e:  # noqa: BLE001 (judging the exception is the point)
        why = case.expect.judge_raise(e)
        return {"status": "ok" if why is None else "wrong", "raised": type(e).__name__, "detail": why or str(e)[:300]}
    why = case.expect.judge_result(result)
    return {"status": "ok" if why is None else "wrong", "raised": None, "detail": why}


def main(argv):
    module = importlib.import_module(argv[0])
    cases = {c.name: c for c in module.CASES}
    for name in argv[1:] or list(cases):
        print(json.dumps({"case": name, **run_case(cases[name])}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
