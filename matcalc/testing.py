"""For test suites: check a program's gradients, or a hand-written backward pass, numerically.

The public face of :mod:`matcalc.proofs.testing`.
"""

from matcalc.proofs.testing import CheckReport, assert_backward, check_gradient, printed_jacobians

__all__ = ["CheckReport", "assert_backward", "check_gradient", "printed_jacobians"]
