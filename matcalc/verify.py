"""For test suites: verify claimed derivatives (``claim grad(f, x) = EXPR``) exactly and
numerically. The public face of :mod:`matcalc.proofs.verify`."""

from matcalc.proofs.verify import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    Verdict,
    assert_identity,
    verify,
    verify_all,
)

__all__ = ["FAIL", "INCONCLUSIVE", "PASS", "Verdict", "assert_identity", "verify", "verify_all"]
