"""The core: the typed tensor IR, its canonical constructors (the simplifier), the operations
with their rules, reverse mode, and what each elementwise function means for one number."""

from matcalc.core import rules  # noqa: F401  (every operation is defined on import)
