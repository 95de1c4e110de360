"""Time limits that SymPy cannot swallow: SIGALRM raises :class:`OutOfTime`, a BaseException."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class OutOfTime(BaseException):
    """The time limit ran out (a BaseException, so that no ``except Exception`` swallows it)."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`OutOfTime` in the block after ``seconds``, and again every second until it
    ends (where Python cannot raise, in a weakref callback say, it is ignored quietly). A limit
    inside another keeps the outer one's time. Off the main thread there is no limit."""
    on_main_thread = threading.current_thread() is threading.main_thread()
    if not (hasattr(signal, "setitimer") and on_main_thread):
        yield
        return

    def ring(signum: int, frame: object) -> None:
        raise OutOfTime

    def unraisable(info: sys.UnraisableHookArgs) -> None:
        if not isinstance(info.exc_value, OutOfTime):
            hook(info)

    start = time.monotonic()
    previous, hook = signal.signal(signal.SIGALRM, ring), sys.unraisablehook
    sys.unraisablehook = unraisable
    outer, _ = signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3), 1.0)
    if 0 < outer < seconds:                             # the enclosing limit comes first
        signal.setitimer(signal.ITIMER_REAL, outer, 1.0)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        sys.unraisablehook = hook
        if outer:
            left = outer - (time.monotonic() - start)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3), 1.0)
