"""Variance propagation and initialisation, as the README has documented it.

The public face of :mod:`matcalc.applications.variance`.
"""

from matcalc.applications.variance import (
    activation,
    centring,
    fixed_point,
    gain_table,
    initialisation,
    moments,
    simulate,
    weight_variances,
)

__all__ = ["activation", "centring", "fixed_point", "gain_table", "initialisation", "moments",
           "simulate", "weight_variances"]
