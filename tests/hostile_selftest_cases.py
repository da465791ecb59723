"""Cases that check the hostile-input harness itself (tests/test_hostile.py): one
crashes the interpreter, one crashes only after another broke the process, two
are judged wrong, the rest pass. No torch: they run fast."""

import ctypes

from .hostile_runner import Case, Raises, Satisfies


def _fail(exc):
    raise exc


_poisoned = []


def _poison():
    _poisoned.append(True)
    return 0


def _crash_if_poisoned():
    if _poisoned:
        ctypes.string_at(0)
    return 0


CASES = [
    Case("raises as expected", lambda: _fail(ValueError("bitops: k must be positive")), Raises(ValueError, "k must be")),
    Case("segfault", lambda: ctypes.string_at(0), Raises(ValueError, "")),  # reads address 0
    Case("after the crash", lambda: _fail(TypeError("bitops: x must be float32")), Raises(TypeError, "x must be")),
    Case("returns instead of raising", lambda: 42, Raises(ValueError, "")),
    Case("raises the wrong type", lambda: _fail(ValueError("bitops: x")), Raises(TypeError, "x")),
    Case("breaks the process quietly", _poison, Satisfies(lambda r: r == 0, "0")),
    Case("dies only after that", _crash_if_poisoned, Satisfies(lambda r: r == 0, "0")),
]
