"""Training with the generated code, as the README has documented it.

The public face of :mod:`matcalc.applications.training`.
"""

from matcalc.applications.training import Data, History, load_data, train

__all__ = ["Data", "History", "load_data", "train"]
