"""The proofs: checks of matcalc's answers against references that do not share its code.

Finite differences (``finite_differences``) of the generated code (``evaluation``) and of an
independent NumPy evaluation of the program (``reference``) at valid inputs (``inputs``); exact
entrywise checks of scalar expansions in SymPy (``scalar_expansion``, ``verify``, the
``catalog`` of classic identities); the helpers test suites use (``testing``); and the fuzz
gate: random programs (``programs``) through every output path against torch.autograd
(``torch_reference``, ``fuzz``; these need PyTorch), all within time limits that SymPy cannot
swallow (``time_limits``).
"""
