"""One time limit for every budget: SymPy cannot swallow it, and limits nest."""

from __future__ import annotations

import time

import pytest

from matcalc.proofs.time_limits import OutOfTime, time_limit


def spin(seconds: float = 20.0) -> None:
    """Busy work until interrupted (a safety net of ``seconds``, never reached when right)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    raise AssertionError("the time limit never rang")


def test_no_except_exception_swallows_it() -> None:
    with pytest.raises(OutOfTime):
        with time_limit(0.01):
            try:
                spin()
            except Exception:        # what SymPy's internals do
                pass


def test_an_inner_limit_keeps_the_outer_one() -> None:
    with pytest.raises(OutOfTime):
        with time_limit(0.1):
            with pytest.raises(OutOfTime):
                with time_limit(0.01):
                    spin()
            spin()                    # the outer limit still rings after the inner one ended


def test_an_inner_limit_longer_than_the_outer_rings_at_the_outer_time() -> None:
    with pytest.raises(OutOfTime):
        with time_limit(0.05):
            with time_limit(30):
                spin()


def test_a_block_that_ends_in_time_is_not_interrupted() -> None:
    with time_limit(0.05):
        total = sum(range(1000))
    assert total == 499500
    time.sleep(0.2)                   # nothing rings after the block: its timer is cancelled
