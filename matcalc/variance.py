"""Variance propagation and initialisation, as the README has documented it.

The public face of :mod:`matcalc.applications.variance`.
"""

from matcalc.applications.variance import (
    BUILTINS,
    Activation,
    Centring,
    FixedPoint,
    Init,
    Moments,
    N,
    Quantity,
    Simulation,
    activation,
    centring,
    fixed_point,
    gain_table,
    initialisation,
    moments,
    simulate,
    weight_variances,
)

__all__ = ["BUILTINS", "N", "Activation", "Centring", "FixedPoint", "Init", "Moments", "Quantity",
           "Simulation", "activation", "centring", "fixed_point", "gain_table", "initialisation",
           "moments", "simulate", "weight_variances"]
