"""Cases that check the hostile-input harness itself (tests/test_hostile.py): one
crashes the interpreter, two are judged wrong, two pass. No torch: they run fast."""

import ctypes

from .hostile_runner import Case, Raises


def _fail(exc):
    raise exc


CASES = [
    Case("raises as expected", lambda: _fail(ValueError("bitops: k must be positive")), Raises(ValueError, "k must be")),
    Case("segfault", lambda: ctypes.string_at(0), Raises(ValueError, "")),  # reads address 0
    Case("after the crash", lambda: _fail(TypeError("bitops: x must be float32")), Raises(TypeError, "x must be")),
    Case("returns instead of raising", lambda: 42, Raises(ValueError, "")),
    Case("raises the wrong type", lambda: _fail(ValueError("bitops: x")), Raises(TypeError, "x")),
]
