"""Code generation: readable, CSE'd statements computing IR expressions, in NumPy or PyTorch.

An :class:`Emitter` turns named outputs into :class:`Statement` s (a target, its code, the names
the code reads, where it came from) so that every value is computed once: named intermediates
keep their names, anything used twice becomes a temporary, sizes are read off the arrays
(``N, D = X.shape``), and softmax, log-softmax, logsumexp and sigmoid go through max-shifted or
``logaddexp`` helpers emitted only when used. Nothing materialises a Jacobian; ``np.eye``
appears only when an identity is the answer itself (∂ tr X / ∂X = I).

Names are allocated by :class:`Names`, which knows every user name before it invents one, so no
variable, intermediate or dimension can collide with a temporary, a helper or a module alias:
a user variable called ``np`` makes the generated code import ``numpy as np_1``. Boolean masks
(``x > 0``) are kept boolean only where NumPy and torch multiply them correctly (a factor of a
product with a floating array); anywhere else they are cast, so ``m + mᵀ`` never becomes a
logical or. Long statements are split by naming subexpressions, never by editing text.
"""

from __future__ import annotations

import builtins
import functools
import itertools
import keyword
import string
from collections import Counter
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import sympy

from matcalc.core.ir import (
    METHOD,
    ONE,
    OPERATIONS,
    Node,
    Shape,
    broadcast_shapes,
    const,
    const_value,
    definition_of,
    is_labels,
    is_symmetric,
    make,
    params,
    postorder,
    size,
)
from matcalc.core.rules import inverse_std, mean
from matcalc.core.simplify import (
    add,
    broadcast_to,
    matmul,
    mul,
    raw_power,
    reduce_to,
    transpose,
)
from matcalc.errors import MatcalcError
from matcalc.forms.printing import TEXT, Printer

ADD, MUL, UNARY, POW, ATOM = 1, 2, 3, 4, 5
FLOAT, BOOL = "float", "bool"
WIDTH = 89
"""Longest right-hand side plus target before subexpressions are given names (lines are at
most 100 characters at two levels of indentation)."""

RESERVED = frozenset(keyword.kwlist) | frozenset(dir(builtins))


class Names:
    """The names of one generated text: every user name first, then what the generator invents.

    ``alias("np")`` is the module-level name a module or helper goes by (``np`` unless a user
    name is ``np``); ``fresh("t")`` a new name in this scope. A function body is a ``scope()``
    of the module's names: its temporaries are its own, its aliases the module's.
    """

    def __init__(self, user: Iterable[str], parent: Names | None = None) -> None:
        self.parent = parent
        self.user: frozenset[str] = frozenset(user) if parent is None else parent.user
        self.taken: set[str] = set(self.user) | RESERVED if parent is None else set()
        self.aliases: dict[str, str] = {} if parent is None else parent.aliases
        self.scopes: list[Names] = []
        self.counters: dict[str, int] = {}
        """Where the search for the next ``t<k>`` starts: names are never given back."""

    @property
    def root(self) -> Names:
        return self if self.parent is None else self.parent

    def scope(self) -> Names:
        """A function body's names."""
        child = Names((), self.root)
        self.root.scopes.append(child)
        return child

    def in_use(self, name: str) -> bool:
        if name in self.taken or name in self.root.taken:
            return True
        return self.parent is None and any(name in s.taken for s in self.scopes)

    def fresh(self, stem: str, numbered: bool = False) -> str:
        """``stem`` if free (``t1``, ``t2`` … when ``numbered``), else ``stem_1``, ``stem_2`` …"""
        if not numbered and not self.in_use(stem):
            self.taken.add(stem)
            return stem
        pattern = "{}{}" if numbered else "{}_{}"
        k = self.counters.get(pattern.format(stem, ""), 1)
        while self.in_use(pattern.format(stem, k)):
            k += 1
        self.counters[pattern.format(stem, "")] = k + 1
        name = pattern.format(stem, k)
        self.taken.add(name)
        return name

    def alias(self, wanted: str) -> str:
        """The module-level name standing for ``wanted`` (a module alias or a helper)."""
        if wanted not in self.aliases:
            self.aliases[wanted] = self.root.fresh(wanted)
        return self.aliases[wanted]


# ----------------------------------------------------------------------------------------------
# Dialects: NumPy and PyTorch, with the helper functions their operations' templates (the
# ``numpy`` and ``torch`` facets of each operation's definition) call as ``{_name}``.

SPECTRAL_HELPERS = {
    "_polar": '''def {_polar}(x):
    """U Vᵀ of the thin SVD x = U Σ Vᵀ: the gradient of the nuclear norm."""
    u, _, vt = {xp}.linalg.svd(x, full_matrices=False)
    return u @ vt''',
    "_top_singular": '''def {_top_singular}(x):
    """u₁ v₁ᵀ of the largest singular value of x: the gradient of the spectral norm."""
    u, _, vt = {xp}.linalg.svd(x, full_matrices=False)
    return {xp}.outer(u[:, 0], vt[0])''',
    "_logcosh": '''def {_logcosh}(x):
    """log cosh x = |x| + log(1 + exp(−2|x|)) − log 2, which does not overflow."""
    a = {xp}.abs(x)
    return a + {xp}.log1p({xp}.exp(-2 * a)) - 0.6931471805599453''',
    "_commutation": '''def {_commutation}(rows, cols):
    """K with K @ vec(A) = vec(A.T) for a rows×cols matrix A (vec stacks columns)."""
    k = {xp}.zeros((rows * cols, rows * cols), dtype={xp}.float64)
    i, j = {xp}.meshgrid({xp}.arange(rows), {xp}.arange(cols), indexing="ij")
    k[(j + cols * i).ravel(), (i + rows * j).ravel()] = 1
    return k''',
    "_diag_embedding": '''def {_diag_embedding}(n):
    """E with E @ v = vec(diag(v)) (vec stacks columns)."""
    e = {xp}.zeros((n * n, n), dtype={xp}.float64)
    e[{xp}.arange(n) * (n + 1), {xp}.arange(n)] = 1
    return e''',
    "_check_like": '''def {_check_like}(what, array, variable, name):
    """Raise ValueError unless array (a direction, a tangent) is shaped like the variable."""
    if tuple(getattr(array, "shape", ())) != tuple(getattr(variable, "shape", ())):
        raise ValueError(f"{{what}}: expected the shape of {{name}}, "
                         f"{{tuple(getattr(variable, 'shape', ()))}}, got "
                         f"{{tuple(getattr(array, 'shape', ()))}}")''',
    "_check_keys": '''def {_check_keys}(what, given, known, required):
    """Raise ValueError unless given is a dictionary by variable name (of all, if required)."""
    if not isinstance(given, dict):
        raise ValueError(f"{{what}}: expected a dictionary by name of {{', '.join(known)}}")
    unknown = [name for name in given if name not in known]
    missing = [name for name in known if name not in given] if required else []
    if unknown:
        raise ValueError(f"{{what}}: {{unknown[0]!r}} is not one of {{', '.join(known)}}")
    if missing:
        raise ValueError(f"{{what}}: {{missing[0]!r}} is missing (give one for each of "
                         f"{{', '.join(known)}})")''',
    "_checked_direction": '''def {_checked_direction}(what, given, name):
    """given[name] for a dictionary (by that one name, checked), else given itself: one
    variable's direction, given alone or by name (here, where no variable hides dict)."""
    if isinstance(given, dict):
        {_check_keys}(what, given, (name,), True)
        return given[name]
    return given''',
    "_rows": '''def {_rows}(x):
    """The rows of a stack x [..., d] as one matrix (also when d = 0, where reshape's -1 is
    ambiguous)."""
    return x.reshape({math}.prod(x.shape[:-1]), x.shape[-1])''',
}
"""Helpers NumPy and PyTorch spell alike: the SVD's factors, log cosh, the commutation and
diagonal-embedding matrices of vec forms (float64), a direction's shape and a dictionary's
names, a stack's rows."""

NUMPY_HELPERS = {
    **SPECTRAL_HELPERS,
    "_softmax": '''def {_softmax}(x, axis=-1):
    """Max-shifted softmax (in NumPy the max by fmax, which it vectorises along a row and max
    not; a row with a NaN is NaN either way; from −inf, so that an empty axis is no error)."""
    e = {xp}.exp(x - {xp}.fmax.reduce(x, axis=axis, keepdims=True, initial=-{xp}.inf))
    e /= {_sum_along}(e, axis, keepdims=True)
    return e''',
    "_log_softmax": '''def {_log_softmax}(x, axis=-1):
    """Max-shifted log-softmax (the max as in _softmax)."""
    shifted = x - {xp}.fmax.reduce(x, axis=axis, keepdims=True, initial=-{xp}.inf)
    return shifted - {xp}.log({_sum_along}({xp}.exp(shifted), axis, keepdims=True))''',
    "_sum_along": '''def {_sum_along}(x, axis, keepdims=False):
    """x.sum(axis, keepdims). Along the last axis, rows of 2 to 256 float32 or float64 entries
    by a product with ones: BLAS sums such short rows 4-20x faster than NumPy's reduction, with
    an error within 2x of its (longer rows would lose more)."""
    if axis is None or axis % x.ndim != x.ndim - 1 or x.dtype.char not in "fd" or not (
            1 < x.shape[-1] <= 256):
        return x.sum(axis=axis, keepdims=keepdims)
    return x @ {_ones}(x.shape[-1], x.dtype, keepdims)''',
    "_ones": '''{_ONES} = {{}}


def {_ones}(n, dtype, column=False):
    """n ones (a column of them if ``column``) of a dtype, made once: the products with ones
    that sum short rows run on every call, and making the vector anew costs 1 µs, as much as
    such a product (kept up to 256 entries). Never written to."""
    key = (n, dtype, column)
    ones = {_ONES}.get(key)
    if ones is None:
        ones = {xp}.ones((n, 1) if column else n, dtype)
        if n <= 256:
            {_ONES}[key] = ones
    return ones''',
    "_logsumexp": '''def {_logsumexp}(x, axis=None, keepdims=False):
    """Max-shifted log-sum-exp; ±inf where an entry is +inf or every entry is -inf."""
    m = {xp}.max(x, axis=axis, keepdims=True)
    m = {xp}.where({xp}.isfinite(m), m, 0)
    with {xp}.errstate(divide="ignore"):                 # log 0 = -inf: every entry -inf
        total = {xp}.log({xp}.sum({xp}.exp(x - m), axis=axis, keepdims=True)) + m
    return total if keepdims else {xp}.squeeze(total, axis=axis)[()]''',
    "_sigmoid": '''def {_sigmoid}(x):
    """Sigmoid that neither overflows nor loses precision in the tails."""
    return {xp}.exp(-{xp}.logaddexp(0, -x))''',
    "_inv": '''def {_inv}(x):
    """The inverse; a ValueError saying so for a singular matrix."""
    try:
        return {xp}.linalg.inv(x)
    except {xp}.linalg.LinAlgError:    # a ValueError, and no builtin's name (a snippet's
        raise {xp}.linalg.LinAlgError(   # variables may be named ValueError, len, range …)
            "a matrix to be inverted is singular (det = 0): the value or the derivative needs "
            "its inverse, which does not exist there") from None''',
    "_solve": '''def {_solve}(a, b):
    """The solution x of a x = b; a ValueError saying so for a singular matrix."""
    try:
        return {xp}.linalg.solve(a, b)
    except {xp}.linalg.LinAlgError:    # a ValueError, and no builtin's name (a snippet's
        raise {xp}.linalg.LinAlgError(   # variables may be named ValueError, len, range …)
            "a matrix to be solved with is singular (det = 0): the value or the derivative needs "
            "its inverse, which does not exist there") from None''',
    "_plus_diagonal": '''def {_plus_diagonal}(m, d):
    """m + diag(d) for a square matrix m just computed, in place: diag(d) is never formed."""
    m.flat[:: m.shape[0] + 1] += d
    return m''',
    "_kron": '''def {_kron}(a, b):
    """Kronecker product, vectors taken as columns."""
    a = a[:, None] if {xp}.ndim(a) == 1 else a
    return {xp}.kron(a, b[:, None] if {xp}.ndim(b) == 1 else b)''',
    "_gram": '''def {_gram}(x, d, s):
    """xᵀ diag(d) x + s I, symmetric: for d ≥ 0 one rank-k update of x ⊙ √d (BLAS syrk, half
    the multiply-adds of a product) whose upper triangle is mirrored; else the product."""
    syrk = {_syrk}(x)
    if syrk is None or not (d >= 0).all():
        c = x.T @ (x * d[:, None])
    else:
        a = x * {xp}.sqrt(d)[:, None]
        c = syrk(1.0, a.T, trans=0, lower=0)   # a.T is a's Fortran-ordered view: no copy
        c += {xp}.triu(c, 1).T
    if s != 0:
        c.flat[:: c.shape[0] + 1] += s
    return c''',
    "_syrk": '''def {_syrk}(x):
    """SciPy's BLAS syrk for x's dtype (float32 or float64), or None without SciPy."""
    try:
        from scipy.linalg import blas
    except ImportError:
        return None
    return {{"float64": blas.dsyrk, "float32": blas.ssyrk}}.get(x.dtype.name)''',
    "_add_at": '''def {_add_at}(x, labels, c):
    """A copy of x with c added at each row's label (x − onehot(labels) for c = −1)."""
    out = {xp}.array(x, copy=True)
    index = {xp}.asarray(labels)[..., None]
    {xp}.put_along_axis(out, index, {xp}.take_along_axis(out, index, axis=-1) + c, axis=-1)
    return out''',
    "_pick": '''def {_pick}(x, labels):
    """Each row's entry at its label."""
    return {xp}.take_along_axis(x, {xp}.asarray(labels)[..., None], axis=-1)[..., 0]''',
    "_check_onehot": '''def {_check_onehot}(name, y):
    """Raise ValueError unless each row of y is one 1 among 0s, as declared: as many nonzero
    entries as rows, and each row summing to 1 (a product with ones, which BLAS does faster
    than a sum along short rows)."""
    rows = y.size // max(y.shape[-1], 1)
    sums = {xp}.dot(y, {_ones}(y.shape[-1], y.dtype))
    if {xp}.count_nonzero(y) != rows or {xp}.count_nonzero(sums != 1):
        raise ValueError(f"{{name}}: declared onehot, but a row is not one 1 among 0s")''',
    "_check_probabilities": '''def {_check_probabilities}(name, y):
    """Raise ValueError unless each row of y is a probability vector, as declared."""
    if (y < 0).any() or not {xp}.allclose(y.sum(axis=-1), 1):
        raise ValueError(f"{{name}}: declared probabilities, but a row is negative or does not "
                         "sum to 1")''',
    "_check_labels": '''def {_check_labels}(name, y, classes):
    """Raise ValueError unless every label is a class, 0 … classes − 1."""
    if {xp}.size(y) and ({xp}.min(y) < 0 or {xp}.max(y) >= classes):
        raise ValueError(f"{{name}}: class labels must lie in 0 … {{classes - 1}}")''',
    "_check_symmetric": '''def {_check_symmetric}(name, y):
    """Raise ValueError unless y equals its transpose, as declared."""
    if not {xp}.allclose(y, y.T):
        raise ValueError(f"{{name}}: declared symmetric, but it differs from its transpose")''',
    "_first_max": '''def {_first_max}(x, axis=None):
    """1 at the first largest entry along axis (of every entry for None), 0 elsewhere."""
    mask = {xp}.zeros_like(x)
    if axis is None:
        mask.flat[{xp}.argmax(x)] = 1
    else:
        {xp}.put_along_axis(mask, {xp}.expand_dims({xp}.argmax(x, axis=axis), axis), 1, axis)
    return mask''',
    "_prod_others": '''def {_prod_others}(x, axis=None):
    """For each entry, the product of the others along axis (of all for None): exact at 0."""
    if axis is None:
        return {_prod_others}(x.reshape(-1), 0).reshape({xp}.shape(x))
    x = {xp}.moveaxis(x, axis, -1)
    ones = {xp}.ones_like(x[..., :1])
    before = {xp}.cumprod({xp}.concatenate([ones, x[..., :-1]], axis=-1), axis=-1)
    after = {xp}.cumprod({xp}.concatenate([ones, x[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
    return {xp}.moveaxis(before * after, -1, axis)''',
    "_scatter_rows": '''def {_scatter_rows}(g, labels, rows):
    """A zero table of `rows` rows with each row of g added at its label: np.add.at on the
    flattened table, entry by entry (its one-dimensional loop is 4x faster than adding rows)."""
    labels = {xp}.asarray(labels)
    rest = g.shape[labels.ndim:]
    width = {math}.prod(rest)
    out = {xp}.zeros(rows * width, dtype=g.dtype)
    at = labels.reshape(-1, 1).astype({xp}.intp) * width + {xp}.arange(width)
    {xp}.add.at(out, at.ravel(), g.ravel())
    return out.reshape((rows, *rest))''',
    "_stacked_at": '''def {_stacked_at}(a, b):
    """a @ b for a stack a [..., n, d] and a matrix b [d, k] as one product of all a's rows
    (NumPy's @ multiplies the stack's matrices one by one, and copies a transposed b first)."""
    return ({_rows}(a) @ b).reshape(a.shape[:-1] + b.shape[-1:])''',
    "_normal_cdf": '''def {_normal_cdf}(x):
    """Φ(x), the standard normal distribution function. float64: SciPy's ndtr, accurate in
    the left tail, where 0.5 (1 + erf(x / √2)) cancels to 0. float32: that form, as PyTorch
    computes it, and from 4096 entries 1 / (1 + exp(−x p(x²))), where x p(x²) is a fit of
    logit Φ(x) by an odd polynomial of degree 13 (|error| < 1.4e-7; increasing but for float32
    rounding, at most two ulps; exactly 0 and 1 far in the tails, so that x Φ(x) is 0 there), in
    blocks of 2¹⁵ entries that stay in cache: 5x faster than SciPy's float32 erf, which
    computes in float64."""
    from scipy.special import erf, ndtr
    x = {xp}.asarray(x)
    if x.dtype != {xp}.float32:
        return ndtr(x)
    if x.size < 4096:
        return 0.5 * (1 + erf(x * 0.7071067811865476))
    out = {xp}.empty(x.shape, {xp}.float32)
    entries, into = x.reshape(-1), out.reshape(-1)
    with {xp}.errstate(over="ignore"):                # exp(−x p(x²)) = inf: Φ(x) = 0
        start = 0
        while start < entries.size:
            block = entries[start:start + 32768]
            u = block * block
            z = u * -3.512751e-09 + 2.64539e-07
            for c in (-7.92962e-06, 0.00011061299, 6.518873e-05, -0.07266617, -1.5957699):
                z *= u
                z += c
            z *= block                                 # −x p(x²)
            {xp}.exp(z, out=z)
            z += 1
            {xp}.divide(1.0, z, out=into[start:start + 32768])
            start += 32768
    return out''',
    "_normal_pdf": '''def {_normal_pdf}(x):
    """φ(x) = exp(−x²/2) / √(2π), the standard normal density, in place on one new array."""
    x = {xp}.asarray(x)
    out = {xp}.multiply(x, x, out={xp}.empty(x.shape, {xp}.result_type(x, 0.5)))
    out *= -0.5
    {xp}.exp(out, out=out)
    out *= 0.3989422804014327                          # 1 / √(2π)
    return out''',
    "_erf": '''def {_erf}(x):
    """The error function, entry by entry (NumPy has none; SciPy's is vectorised)."""
    from scipy.special import erf
    return erf(x)''',
}

TORCH_CHECKED = '''
    if {xp}._C._functorch.is_functorch_wrapped_tensor(y):   # inside torch.func: not checked
        return'''

TORCH_HELPERS = {
    **SPECTRAL_HELPERS,
    "_check_onehot": '''def {_check_onehot}(name, y):
    """Raise ValueError unless each row of y is one 1 among 0s, as declared."""''' + TORCH_CHECKED
    + '''
    rows = y.numel() // max(y.shape[-1], 1)
    if int({xp}.count_nonzero(y)) != rows or not (y.sum(dim=-1) == 1).all():
        raise ValueError(f"{{name}}: declared onehot, but a row is not one 1 among 0s")''',
    "_check_probabilities": '''def {_check_probabilities}(name, y):
    """Raise ValueError unless each row of y is a probability vector, as declared."""'''
    + TORCH_CHECKED + '''
    total = y.sum(dim=-1)
    if (y < 0).any() or not {xp}.allclose(total, {xp}.ones_like(total)):
        raise ValueError(f"{{name}}: declared probabilities, but a row is negative or does not "
                         "sum to 1")''',
    "_check_labels": '''def {_check_labels}(name, y, classes):
    """Raise ValueError unless every label is a class, 0 … classes − 1."""''' + TORCH_CHECKED
    + '''
    if y.numel() and (y.min() < 0 or y.max() >= classes):
        raise ValueError(f"{{name}}: class labels must lie in 0 … {{classes - 1}}")''',
    "_check_symmetric": '''def {_check_symmetric}(name, y):
    """Raise ValueError unless y equals its transpose, as declared."""''' + TORCH_CHECKED
    + '''
    if not {xp}.allclose(y, y.T):
        raise ValueError(f"{{name}}: declared symmetric, but it differs from its transpose")''',
    "_add_at": '''def {_add_at}(x, labels, c):
    """x with c added at each row's label (x − onehot(labels) for c = −1)."""
    return x.scatter_add(-1, labels[..., None], {xp}.full_like(x[..., :1], c))''',
    "_pick": '''def {_pick}(x, labels):
    """Each row's entry at its label."""
    return x.gather(-1, labels[..., None])[..., 0]''',
    "_kron": '''def {_kron}(a, b):
    """Kronecker product, vectors taken as columns (torch.kron needs contiguous inputs)."""
    a, b = (x[:, None] if x.dim() == 1 else x for x in (a, b))
    return {xp}.kron(a.contiguous(), b.contiguous())''',
    "_prod": '''def {_prod}(x, dim):
    """The product along dim (of every entry for a tuple of all)."""
    return x.reshape(-1).prod() if isinstance(dim, tuple) else x.prod(dim)''',
    "_prod_others": '''def {_prod_others}(x, dim):
    """For each entry, the product of the others along dim (of all for a tuple): exact at 0."""
    if isinstance(dim, tuple):
        return {_prod_others}(x.reshape(-1), 0).reshape(x.shape)
    x = x.movedim(dim, -1)
    ones = {xp}.ones_like(x[..., :1])
    before = {xp}.cumprod({xp}.cat([ones, x[..., :-1]], dim=-1), dim=-1)
    after = {xp}.cumprod({xp}.cat([ones, x.flip(-1)[..., :-1]], dim=-1), dim=-1).flip(-1)
    return (before * after).movedim(-1, dim)''',
    "_layer_norm": '''def {_layer_norm}(x, eps):
    """x̂ = (x − μ) / √(σ² + ε) over the last axis, μ and 1 / √(σ² + ε) (not differentiable:
    for the backward kernel): torch's kernel, given a gain of ones, with which it takes its
    vectorised path (twice as fast as with none; x̂ times 1 is x̂ exactly)."""
    ones = {xp}.ones(x.shape[-1:], dtype=x.dtype, device=x.device)
    return {xp}.native_layer_norm(x, x.shape[-1:], ones, None, eps)''',
    "_layer_norm_backward": '''def {_layer_norm_backward}(g, x, mean, rstd, gain=None, xhat=None):
    """(G − mean(G) − x̂ ⊙ mean(G ⊙ x̂)) / √(σ² + ε) over the last axis for G = g ⊙ gain: the
    gradient through x̂ = (x − μ) / √(σ² + ε), by torch's kernel; given x̂, also Σ g ⊙ x̂ over
    the leading axes (the gain's gradient): the kernel's, unless it is differentiated again
    (batched by torch.func, the kernel's would lose how μ and 1/σ depend on x)."""
    again = xhat is not None and {xp}.is_grad_enabled()
    dx, dgain, _ = {xp}.ops.aten.native_layer_norm_backward(     # (its derivative knows how
        g, x, x.shape[-1:], mean.detach(), rstd.detach(), gain, None,  # μ and 1/σ depend on x)
        [True, xhat is not None and not again, False])
    if xhat is None:
        return dx
    return dx, ((g * xhat).sum(dim=tuple(range(g.dim() - 1))) if again else dgain)''',
    "_scatter_rows": '''def {_scatter_rows}(g, labels, rows):
    """A zero table of `rows` rows with each row of g added at its label (index_add)."""
    rest = g.shape[labels.dim():]
    out = {xp}.zeros((rows, *rest), dtype=g.dtype, device=g.device)
    return out.index_add(0, labels.reshape(-1), g.reshape(-1, *rest))''',
    "_first_max": '''def {_first_max}(x, dim):
    """1 at the first largest entry along dim (of every entry for a tuple of all), else 0."""
    if isinstance(dim, tuple):
        flat = {xp}.zeros_like(x).reshape(-1)
        return flat.scatter(0, {xp}.argmax(x).reshape(1), 1.0).reshape(x.shape)
    return {xp}.zeros_like(x).scatter(dim, {xp}.argmax(x, dim=dim, keepdim=True), 1.0)''',
    "_floating": '''def {_floating}(arrays, labels=()):
    """Each argument as a floating tensor of one dtype and device (integer labels kept): a
    tensor's, else a floating array's (float64 NumPy stays float64), else torch's default."""
    like = next((a for a in arrays.values() if {xp}.is_tensor(a) and a.is_floating_point()),
                None)
    given = [{xp}.as_tensor(a) for a in arrays.values() if not {xp}.is_tensor(a)]
    floating = next((t.dtype for t in given if t.is_floating_point()), None)
    dtype = like.dtype if like is not None else floating or {xp}.get_default_dtype()
    device = like.device if like is not None else None
    return [{xp}.as_tensor(a, device=device) if name in labels
            else {xp}.as_tensor(a, dtype=dtype, device=device) for name, a in arrays.items()]''',
}

def rewritten(template: str, *changes: tuple[str, str]) -> str:
    """``template`` with each (old, new) change made: a helper adapted from another dialect's.
    An ``old`` it lacks raises at import, so that an edit to the original cannot silently leave
    the adaptation undone."""
    for old, new in changes:
        if old not in template:
            raise AssertionError(f"the helper template has no {old!r} to rewrite")
        template = template.replace(old, new)
    return template


JAX_CHECKED = """
    from jax.core import Tracer
    if isinstance(y, Tracer):        # under jit, grad or vmap its values are not known
        return
    import numpy
    y = numpy.asarray(y)             # checked by NumPy: jax.numpy would trace it under jit"""

CHECKED_BY_NUMPY = (('"""\n', '"""' + JAX_CHECKED + "\n"), ("{xp}.", "numpy."))
"""A NumPy check as the JAX target's: skipped for a traced array, else run by NumPy."""

JAX_HELPERS = {
    **NUMPY_HELPERS,
    **{name: rewritten(NUMPY_HELPERS[name], *CHECKED_BY_NUMPY)
       for name in ("_check_probabilities", "_check_labels", "_check_symmetric")},
    "_check_onehot": rewritten(NUMPY_HELPERS["_check_onehot"], *CHECKED_BY_NUMPY, (
        "{_ones}(y.shape[-1], y.dtype)", "numpy.ones(y.shape[-1:], y.dtype)")),
    **{name: rewritten(NUMPY_HELPERS[name], ("{xp}.fmax.reduce(x, ", "{xp}.max(x, "))
       for name in ("_softmax", "_log_softmax")},
    "_sum_along": '''def {_sum_along}(x, axis, keepdims=False):
    """x.sum(axis, keepdims) (XLA sums short rows well)."""
    return {xp}.sum(x, axis=axis, keepdims=keepdims)''',
    "_logsumexp": """def {_logsumexp}(x, axis=None, keepdims=False):
    \"\"\"Max-shifted log-sum-exp; ±inf where an entry is +inf or every entry is -inf.\"\"\"
    m = {xp}.max(x, axis=axis, keepdims=True)
    m = {xp}.where({xp}.isfinite(m), m, 0)
    total = {xp}.log({xp}.sum({xp}.exp(x - m), axis=axis, keepdims=True)) + m
    return total if keepdims else {xp}.squeeze(total, axis=axis)""",
    "_commutation": """def {_commutation}(rows, cols):
    \"\"\"K with K @ vec(A) = vec(A.T) for a rows×cols matrix A (vec stacks columns).\"\"\"
    i, j = {xp}.meshgrid({xp}.arange(rows), {xp}.arange(cols), indexing="ij")
    k = {xp}.zeros((rows * cols, rows * cols))
    return k.at[(j + cols * i).ravel(), (i + rows * j).ravel()].set(1)""",
    "_diag_embedding": """def {_diag_embedding}(n):
    \"\"\"E with E @ v = vec(diag(v)) (vec stacks columns).\"\"\"
    return {xp}.zeros((n * n, n)).at[{xp}.arange(n) * (n + 1), {xp}.arange(n)].set(1)""",
    "_add_at": """def {_add_at}(x, labels, c):
    \"\"\"x with c added at each row's label (x − onehot(labels) for c = −1).\"\"\"
    index = {xp}.asarray(labels)[..., None]
    return {xp}.put_along_axis(x, index, {xp}.take_along_axis(x, index, axis=-1) + c, axis=-1,
                               inplace=False)""",
    "_first_max": """def {_first_max}(x, axis=None):
    \"\"\"1 at the first largest entry along axis (of every entry for None), 0 elsewhere.\"\"\"
    if axis is None:
        return {xp}.zeros(x.size, x.dtype).at[{xp}.argmax(x)].set(1).reshape(x.shape)
    index = {xp}.expand_dims({xp}.argmax(x, axis=axis), axis)
    return {xp}.put_along_axis({xp}.zeros_like(x), index, 1, axis, inplace=False)""",
    "_scatter_rows": """def {_scatter_rows}(g, labels, rows):
    \"\"\"A zero table of `rows` rows with each row of g added at its label.\"\"\"
    labels = {xp}.asarray(labels)
    return {xp}.zeros((rows,) + g.shape[labels.ndim:], dtype=g.dtype).at[labels].add(g)""",
    "_inv": """def {_inv}(x):
    \"\"\"The inverse (inf or nan entries for a singular matrix: JAX does not raise).\"\"\"
    return {xp}.linalg.inv(x)""",
    "_solve": """def {_solve}(a, b):
    \"\"\"The solution x of a x = b (inf or nan entries for a singular a).\"\"\"
    return {xp}.linalg.solve(a, b)""",
    "_normal_cdf": """def {_normal_cdf}(x):
    \"\"\"Φ(x), the standard normal distribution function.\"\"\"
    from jax.scipy.special import ndtr
    return ndtr(x)""",
    "_normal_pdf": """def {_normal_pdf}(x):
    \"\"\"φ(x) = exp(−x²/2) / √(2π), the standard normal density.\"\"\"
    return {xp}.exp(-0.5 * x * x) * 0.3989422804014327""",
    "_erf": """def {_erf}(x):
    \"\"\"The error function, entry by entry.\"\"\"
    from jax.scipy.special import erf
    return erf(x)""",
    "_sigmoid": """def {_sigmoid}(x):
    \"\"\"1 / (1 + exp(−x)), which XLA computes in one fused pass (exp(−logaddexp(0, −x))
    takes six times as long) and which neither overflows nor loses precision in the tails.\"\"\"
    from jax.nn import sigmoid
    return sigmoid(x)""",
}
"""NumPy's helpers as JAX spells them: arrays are immutable (``.at[…].add``), values under
``jit`` are not known (the declaration checks skip them), and nothing raises on a singular
matrix."""


@dataclass(frozen=True)
class Dialect:
    """An array library: its module, its helpers and its spelling of reductions. ``name`` is
    the facet of :class:`matcalc.core.ir.OpDef` that spells each operation in it."""

    name: str
    module: str
    alias: str
    helpers: dict[str, str]
    axis: str
    keepdims: str
    like: str
    """Keywords making a new array match the dtype (and device) of ``{0}``."""
    cast: str
    """A boolean mask ``{0}`` as numbers of the dtype of ``{1}``."""
    facet: str = ""
    """The facet of an operation's definition that spells it (its name by default: JAX spells
    everything as NumPy does, with ``jnp`` for ``np``)."""

    @property
    def spelling(self) -> str:
        return self.facet or self.name


NUMPY = Dialect("numpy", "numpy", "np", NUMPY_HELPERS, "axis", "keepdims",
                ", dtype={0}.dtype", "{0}.astype({1}.dtype)")
JAX = Dialect("jax", "jax.numpy", "jnp", JAX_HELPERS, "axis", "keepdims",
              ", dtype={0}.dtype", "{0}.astype({1}.dtype)", facet="numpy")
TORCH = Dialect("torch", "torch", "torch", TORCH_HELPERS, "dim", "keepdim",
                ", dtype={0}.dtype, device={0}.device", "{0}.to({1}.dtype)")


# ----------------------------------------------------------------------------------------------
# Code


@dataclass(frozen=True)
class Code:
    """An expression's text, how tightly it binds, whether it is a boolean mask, what it reads."""

    text: str
    prec: int
    kind: str = FLOAT
    reads: frozenset[str] = frozenset()
    parts: tuple[str, ...] = ()
    """For a flat sum or product: its operands with their operators, to break long lines."""


@dataclass
class Statement:
    """``target = code``; ``comment`` says what it is when that is worth saying."""

    target: str
    code: Code
    comment: str = ""
    released: tuple[str, ...] = ()
    """Intermediates no later statement reads, freed after this one (``del``)."""

    def lines(self, indent: str = "") -> list[str]:
        """The statement laid out at ``indent``: one line, or its operands one per line."""
        comment = [f"{indent}# {self.comment}"] if self.comment else []
        freed = [f"{indent}del {', '.join(self.released)}"] if self.released else []
        text = f"{indent}{self.target} = {self.code.text}"
        if len(text) <= WIDTH + 8 or not self.code.parts:
            return [*comment, text, *freed]
        inner = indent + "    "
        first, *rest = self.code.parts
        return [*comment, f"{indent}{self.target} = (", inner + first,
                *(inner + part.lstrip() for part in rest), f"{indent})", *freed]


@dataclass
class Block:
    """Generated statements, and the module aliases and helpers they use."""

    names: Names
    dialect: Dialect = NUMPY
    statements: list[Statement] = field(default_factory=list)
    helpers: list[str] = field(default_factory=list)
    modules: set[str] = field(default_factory=set)
    outputs: list[str] = field(default_factory=list)
    """The names the outputs were given."""

    def lines(self, indent: str = "") -> list[str]:
        return [line for s in self.statements for line in s.lines(indent)]

    def imports(self) -> list[str]:
        """``import math`` and ``import numpy as np`` (aliased as allocated), as used."""
        found = []
        if "math" in self.modules:
            alias = self.names.alias("math")
            found += ["import math" + (f" as {alias}" if alias != "math" else ""), ""]
        if self.dialect.alias in self.modules or not found:
            alias = self.names.alias(self.dialect.alias)
            found.append(f"import {self.dialect.module}"
                         + (f" as {alias}" if alias != self.dialect.module else ""))
        return found

    def helper_sources(self) -> list[str]:
        """The source of every helper used, with the allocated names filled in."""
        return [fill(self.dialect.helpers[h], self.names, self) for h in self.helpers]

    def source(self) -> str:
        """Imports, helpers and statements as one runnable text."""
        parts = ["\n".join(self.imports()), *self.helper_sources(), "\n".join(self.lines())]
        return "\n\n".join(p for p in parts if p) + "\n"

    def function(self, name: str, params: Sequence[str], results: Sequence[str]) -> str:
        """A module defining ``name(params)`` that runs the statements, returning ``results``."""
        body = self.lines("    ") or ["    pass"]
        returned = ", ".join(results) + ("," if len(results) == 1 else "")
        return "\n\n".join(["\n".join(self.imports()), *self.helper_sources(),
                            f"def {name}({', '.join(params)}):\n" + "\n".join(body)
                            + f"\n    return ({returned})"]) + "\n"


def fill(template: str, names: Names, block: Block | None = None, *args: str,
         **keywords: str) -> str:
    """``template`` with aliases (``{xp}``, ``{math}``, ``{_helper}``) allocated and filled."""
    values: dict[str, str] = dict(keywords)
    for _, field_name, _, _ in string.Formatter().parse(template):
        if field_name is None or field_name in values or field_name.isdigit():
            continue
        if field_name == "xp":
            values["xp"] = used_module(names, block, block.dialect.alias if block else "np")
        elif field_name == "math":
            values["math"] = used_module(names, block, "math")
        elif field_name.startswith("_") and field_name.isupper():   # a helper's own table
            values[field_name] = names.alias(field_name)
        elif field_name.startswith("_"):
            if block is not None and field_name not in block.helpers:
                block.helpers.append(field_name)
                fill(block.dialect.helpers[field_name], names, block)   # what it uses in turn
            values[field_name] = names.alias(field_name)
    return template.format(*args, **values)


def used_module(names: Names, block: Block | None, module: str) -> str:
    if block is not None:
        block.modules.add(module)
    return names.alias(module)


# ----------------------------------------------------------------------------------------------
# Python constants


def python_number(value: sympy.Expr, math: Callable[[], str]) -> tuple[str, int]:
    """A numeric SymPy constant as Python: ints stay ints, irrationals become float literals
    (``math()`` gives the name of the math module, for ``math.inf``)."""
    text, precedence = number_literal(value)
    if text.endswith("inf"):
        return text.replace("inf", f"{math()}.inf"), precedence
    return text, precedence


@functools.lru_cache(maxsize=4096)
def number_literal(value: sympy.Expr) -> tuple[str, int]:
    """``python_number`` with ``inf`` for the infinities (the module is named by the caller)."""
    if value.is_Integer and abs(value) < 2**53:
        return str(int(value)), ATOM if value >= 0 else UNARY
    if value.is_Rational and abs(value.q) < 2**53 and abs(value.p) < 2**53:
        return f"{value.p} / {value.q}", MUL
    number = float(value)
    if number in (float("inf"), float("-inf")):
        return ("-" if number < 0 else "") + "inf", ATOM if number > 0 else UNARY
    return repr(number), ATOM if number >= 0 else UNARY


def beyond_floats(value: sympy.Expr) -> bool:
    """Whether ``value`` is a number too large for a float (10³²⁰ would be inf)."""
    return bool(value.is_number) and abs(float(value)) == float("inf")


CONSTANT_FUNCTIONS = {"exp": "exp", "log": "log", "sqrt": "sqrt", "sin": "sin", "cos": "cos",
                      "tanh": "tanh", "erf": "erf", "Abs": "fabs"}


class ConstantPrinter:
    """A SymPy constant in sizes (``N``, ``1/(n m)``, ``π n``) as Python reading the sizes."""

    def __init__(self, emitter: Emitter) -> None:
        self.emitter = emitter
        self.reads: set[str] = set()

    def __call__(self, value: sympy.Expr) -> tuple[str, int]:
        if value.is_number:
            return python_number(value, lambda: self.emitter.module("math"))
        if value.is_Symbol:
            name = self.emitter.dim(value)
            self.reads.add(name)
            return name, ATOM
        if value.is_Add:
            terms = [self(t) for t in value.as_ordered_terms()]
            text = " + ".join(t if p > ADD else f"({t})" for t, p in terms)
            return text.replace("+ -", "- "), ADD
        if value.is_Mul:
            return self.product(value)
        if value.is_Pow:
            base, k = value.as_base_exp()
            if k == sympy.Rational(1, 2):
                return f"{self.emitter.module('math')}.sqrt({self(base)[0]})", ATOM
            return f"{self.wrap(base, ATOM)} ** {self.wrap(k, UNARY)}", POW
        name = CONSTANT_FUNCTIONS.get(type(value).__name__)
        if name is None:
            raise ValueError(f"no Python form for the constant {value}")
        return f"{self.emitter.module('math')}.{name}({self(value.args[0])[0]})", ATOM

    def wrap(self, value: sympy.Expr, level: int) -> str:
        text, prec = self(value)
        return text if prec >= level else f"({text})"

    def product(self, value: sympy.Expr) -> tuple[str, int]:
        num, den = sympy.fraction(value)
        sign = ""
        if num.could_extract_minus_sign():
            sign, num = "-", -num
        top = " * ".join(self.wrap(f, MUL) for f in sympy.Mul.make_args(num)) or "1"
        if den == 1:
            return sign + top, MUL if not sign else UNARY
        return f"{sign}{top} / {self.wrap(den, POW)}", MUL


# ----------------------------------------------------------------------------------------------
# The emitter

NAMED_TEMPORARIES = {"step": "mask", "softmax": "softmax", "log_softmax": "log_softmax",
                     "inv": "inv", "sigmoid": "sigmoid", "det": "det", "norm": "norm",
                     "exp": "exp", "tanh": "tanh", "normal_cdf": "cdf", "standardize": "xhat"}

DEFAULT_AXIS = {"softmax": -1, "log_softmax": -1, "logsumexp": None, "max": None, "min": None,
                "first_max": None, "prod": None, "prod_others": None}

CHEAP = {"var", "const", "named", "delta", "zeros", "identity", "transpose", "expand"}

MAX_TERMS = 64
"""Longest sum in one statement; longer sums are added up in parts."""

MAX_FACTORS = 8
"""Products with more factors are not searched for named parts (2⁸ parts at most)."""

MAX_DEPTH = 30
"""Expressions nest at most this deep before a part gets a name (no deep recursion)."""



def lower(node: Node, memo: dict[Node, Node], dialect: Dialect = NUMPY,
          swapped: Mapping[Node, Node] = {}, named: Mapping[Node, Node] = {}) -> Node:
    """Composites as the primitives they are made of, so that work is shared: gelu(x) is
    x Φ(x), whose Φ(x) the backward pass reuses; silu(x) is x σ(x); unless the dialect has a
    fused kernel for one (torch's gelu). A product around an outer product is the outer product
    of two vectors, M (a bᵀ) N = (M a)(Nᵀ b)ᵀ: O(n²), not O(n³). A node ``swapped`` maps is
    replaced (by the transpose of one computed anyway, :func:`shared_transposes`); a
    composite's primitives read the ``named`` intermediates (definition → name) they contain."""
    found = memo.get(node)
    if found is not None:
        return found
    for child in postorder([node], stop=memo.__contains__):
        if child in memo:
            continue
        args = tuple(memo[a] for a in child.args)
        if expanded(child, dialect):       # the primitives of the node as written, lowered
            parts = OPERATIONS[child.op].primitives(*child.args, **params(child))
            result = lower(by_name(parts, named), memo, dialect, swapped, named)
        elif args == child.args:
            result = child
        else:
            result = make(child.op, args, child.attrs)
        result = root_form(result)
        result = swapped.get(result, result)
        if dialect is NUMPY and (gram := weighted_gram(result)):
            result = gram
        elif result.op == "matmul":
            vectors = outer_vectors(result)
            result = by_solving(result) if vectors is None else make(
                "outer", tuple(by_solving(v) if v.op == "matmul" else v for v in vectors))
        memo[child] = result
    return memo[node]


def root_form(node: Node) -> Node:
    """Square roots one way, so that they are computed once: v^(1/2) is sqrt(v), v^(−1/2) is
    1 / sqrt(v) (as a program writes its 1 / std), and a sum under the root has its terms in
    the constructor's order (σ² + ε and ε + σ² alike)."""
    k = const_value(node.args[1]) if node.op == "pow" else None
    if node.op == "sqrt" or k in (sympy.Rational(1, 2), sympy.Rational(-1, 2)):
        v = node.args[0]
        root = make("sqrt", (add(*v.args) if v.op == "add" else v,))
        return make("pow", (root, const(-1))) if k == sympy.Rational(-1, 2) else root
    return node


def by_name(node: Node, named: Mapping[Node, Node]) -> Node:
    """``node`` with each part that a named intermediate defines read by that name."""
    memo: dict[Node, Node] = {}
    for n in postorder([node], stop=lambda n: n.op == "named"):
        args = tuple(memo[a] for a in n.args) if n.op != "named" else n.args
        rebuilt = n if args == n.args else make(n.op, args, n.attrs)
        memo[n] = named.get(rebuilt, rebuilt)
    return memo[node]


def expanded(node: Node, dialect: Dialect) -> bool:
    """Whether ``node`` is computed as its primitives in ``dialect``: a composite the dialect
    has no kernel for (or none for this node: torch's layer_norm is over the last axis only)."""
    definition = OPERATIONS[node.op]
    if definition.primitives is None:
        return False
    if dialect is TORCH and definition.kernel is not None:
        return not definition.kernel(node)
    return getattr(definition, dialect.spelling) == METHOD


SHARING_ROUNDS = 3
"""Passes of :func:`shared_transposes` and :func:`shared_sums` (a shared product can make its
sum shared next)."""


def shared_transposes(nodes: Sequence[Node], computed: Collection[Node]) -> dict[Node, Node]:
    """Each matrix among ``nodes`` whose transpose is one of them too (the simplifier writes
    (X V + 𝟙 bᵀ)ᵀ as Vᵀ Xᵀ + b 𝟙ᵀ, a second product) as the transpose of that one, so that it
    is computed once: the younger of the two becomes the transpose of the older."""
    present = {elementwise_key(n): n for n in nodes if n.rank == 2}
    swap = {}
    for n in nodes:
        if n.rank == 2 and n.op in ("add", "mul", "matmul") and n not in computed:
            flipped = transpose(n)
            t = present.get(elementwise_key(flipped))
            if t is not None and t is not n and t.shape == flipped.shape and (
                    t.serial < n.serial) and t not in swap:
                swap[n] = make("transpose", (t,))
    return swap


def shared_sums(nodes: Sequence[Node], computed: Collection[Node]) -> dict[Node, Node]:
    """Each sum among ``nodes`` whose terms include all of another's as that sum plus the rest,
    so that it is computed once (a + b + c − sum(s ⊙ (a + b + c)) is t − sum(s ⊙ t) for
    t = a + b + c): the largest such part, its terms first in their order."""
    sums = [n for n in nodes if n.op == "add" and n not in computed]
    containing: dict[Node, list[Node]] = {}
    for n in sums:
        for term in set(n.args):
            containing.setdefault(term, []).append(n)
    swap = {}
    for n in sums:                                   # in postorder: a part's own part first
        terms = Counter(n.args)
        parts = [m for term in terms for m in containing[term]
                 if len(m.args) < len(n.args) and not Counter(m.args) - terms]
        if parts:
            part = max(parts, key=lambda m: (len(m.args), -m.serial))
            rest = list(n.args)
            for term in part.args:
                rest.remove(term)
            swap[n] = make("add", (swap.get(part, part), *rest))
    return swap


def elementwise_key(n: Node) -> Hashable:
    """``n`` up to the order of a sum's or product's terms and rows written as vectors (a row
    ``v[None, :]`` and ``v`` broadcast alike in a matrix)."""
    if n.op not in ("add", "mul") or n.rank != 2:
        return n
    parts = [a.args[0] if a.op == "expand" and a.attrs.axis == 0 and a.args[0].rank == 1
             else a for a in n.args]
    return n.op, multiset(map(elementwise_key, parts))


def weighted_gram(node: Node) -> Node | None:
    """Xᵀ diag(d) X + s I as one operation, which NumPy code computes by a symmetric rank-k
    update (half the work of the product) with s added to its diagonal: made of the product,
    then of a number times it (c (Xᵀ D X + s I) = Xᵀ (c D) X + c s I) and of it plus s I."""
    if node.op == "matmul" and node.args[0].op == "matmul" and node.args[1].rank == 2:
        (xt, weights), x = node.args[0].args, node.args[1]
        if xt.op == "transpose" and xt.args[0] is x and weights.op == "diag" and \
                weights.args[0].rank == 1:
            return make("weighted_gram", (x, weights.args[0], const(0)))
    if node.op == "mul" and len(node.args) == 2 and node.args[1].op == "weighted_gram" and (
            not node.args[0].shape):
        c, (x, d, s) = node.args[0], node.args[1].args
        return make("weighted_gram", (x, mul(c, d), mul(c, s)))
    if node.op == "add" and len(node.args) == 2:
        for gram, other in (node.args, node.args[::-1]):
            if gram.op == "weighted_gram" and (shift := identity_multiple(other)) is not None:
                x, d, s = gram.args
                return make("weighted_gram", (x, d, add(s, shift)))
    return None


def identity_multiple(node: Node) -> Node | None:
    """s of s I (a number times the identity), else None."""
    if node.op == "identity":
        return const(1)
    if node.op == "mul" and len(node.args) == 2 and node.args[1].op == "identity" and (
            not node.args[0].shape):
        return node.args[0]
    return None


def stacked_gram(node: Node) -> bool:
    """``sum(Aᵀ B, axis=0)`` of two stacks [b, n, d] and [b, n, k] of one batch: the weight
    gradient of a batched layer, which is (A's rows)ᵀ (B's rows)."""
    axis, keepdims = node.attrs
    x = node.args[0]
    if axis != 0 or keepdims or x.op != "matmul" or x.args[0].op != "transpose":
        return False
    a, b = x.args[0].args[0], x.args[1]
    return a.rank == b.rank == 3 and a.shape[:2] == b.shape[:2]


def by_solving(product: Node) -> Node:
    """A product with an inverse as a solve, so that no inverse is formed for it:
    M⁻¹ B = solve(M, B), B M⁻¹ = solve(Mᵀ, Bᵀ)ᵀ (M⁻ᵀ counts as (Mᵀ)⁻¹). A symmetric product
    (M⁻¹ M⁻ᵀ) stays one: what it feeds (cholesky) needs to know it is symmetric."""
    if is_symmetric(product) or product.rank > 2:       # a stack: NumPy's solve broadcasts
        return product                                   # differently from @
    a, b = product.args
    for side, s in ((a, 0), (b, 1)):          # (M⁻¹ + N) B = M⁻¹ B + N B: each term solved
        if side.op == "add" and all(t.shape == side.shape for t in side.args) and any(
                inverted(t) is not None for t in side.args):
            return make("add", tuple(by_solving(make("matmul", (t, b) if s == 0 else (a, t)))
                                     for t in side.args))
    if (m := inverted(a)) is not None:
        return make("solve", (m, b))
    if (m := inverted(b)) is not None:
        solved = make("solve", (flipped(m), flipped(a)))
        return solved if a.rank == 1 else make("transpose", (solved,))
    return product


def inverted(x: Node) -> Node | None:
    """M when ``x`` is M⁻¹ (or (Mᵀ) when it is M⁻ᵀ)."""
    if x.op == "inv":
        return x.args[0]
    if x.op == "transpose" and x.args[0].op == "inv":
        return flipped(x.args[0].args[0])
    return None


def flipped(x: Node) -> Node:
    """Xᵀ without a double transpose (a vector is its own)."""
    if x.rank < 2:
        return x
    return x.args[0] if x.op == "transpose" else make("transpose", (x,))


def unresolved_size(symbol: sympy.Expr) -> MatcalcError:
    """The error for a size that only products of sizes contain (``h`` in ``[B, T, h * k]``)."""
    return MatcalcError(
        f"the size {symbol} appears only in products of sizes, so no input's shape gives it and "
        "the generated code cannot read it",
        hint=f"Fix it when generating the code (`--dims {symbol}=4`; lambdify(..., "
             f"sizes={{'{symbol}': 4}})), or declare some variable with an axis of size "
             f"{symbol} alone.")


class Emitter:
    """Emits statements computing IR expressions from the arrays ``inputs`` into ``block``.

    ``like`` names an input whose dtype (and device) new arrays take; ``methods`` (a module,
    where speed counts more than a formula's look) writes sums as methods, ``x.sum(axis=0)``,
    which costs less than ``np.sum`` on small arrays, and NumPy's sums along a last axis by
    ``_sum_along``.
    """

    def __init__(self, inputs: Sequence[Node], block: Block, like: str | None = None,
                 methods: bool = False, fixed: Mapping[str, int] | None = None) -> None:
        self.inputs = list(inputs)
        self.fixed = dict(fixed or {})
        """Sizes no input's shape gives, fixed when the code is generated (``h = 4``)."""
        self.block = block
        self.names: dict[Node, str] = {v: v.attrs.name for v in inputs}
        self.kinds: dict[str, str] = {}
        self.like = like
        self.methods = methods
        self.uses: Counter[Node] = Counter()
        self.present: set[Node] = set()
        self.named: dict[Node, Node] = {}
        self.definitions: dict[Node, Node] = {}
        """Each named intermediate's definition, as written (not lowered), to its name."""
        self.moments: dict[Node, tuple[str, str]] = {}
        """For each standardisation torch's kernel computed, the names of its mean and 1/std:
        not differentiable, so read by the backward kernel only (whose own derivative knows
        how they depend on x)."""
        self.multiplied: Counter[Node] = Counter()
        """How many matrix products each value is an operand of (transposed or not)."""
        self.products: dict[frozenset, list[Node]] = {}
        """The elementwise products among the values, by their factors (as a multiset)."""
        self.fused: dict[Node, Code] = {}
        """Code of fused kernels that bound values of their own, for when it is asked again."""
        self.binding: tuple[Node | None, str] = (None, "")
        """The value being given a name, and the name (for a method that binds it itself)."""
        self.resolving: set[sympy.Expr] = set()
        """Sizes being read off products, to refuse a circle (h·k alone gives neither)."""
        self.memo: dict[Node, Node] = {}
        self.swapped: dict[Node, Node] = {}
        self.dims: dict[sympy.Expr, str] = {}
        self.returned: set[Node] = set()
        self.order = Printer(TEXT)

    @property
    def dialect(self) -> Dialect:
        return self.block.dialect

    @property
    def allocate(self) -> Names:
        return self.block.names

    def module(self, name: str) -> str:
        """The alias of ``math`` or of the array module, marked as used."""
        return used_module(self.allocate, self.block, name)

    def xp(self) -> str:
        return self.module(self.dialect.alias)

    # -- statements ------------------------------------------------------------------------

    def count(self, roots: Sequence[Node]) -> None:
        """How often each value is used under ``roots`` (what ``emit`` computes and what later
        calls will): a value used twice gets a name."""
        self.definitions |= {n.args[0]: n for n in postorder(list(roots)) if n.op == "named"}
        everything = postorder([lower(r, self.memo, self.dialect, self.swapped, self.definitions)
                                for r in roots], stop=self.names.__contains__)
        for _ in range(SHARING_ROUNDS):  # lowered again, the transposes and sums shared
            swap = shared_transposes(everything, self.names) | shared_sums(everything,
                                                                           self.names)
            swap = {n: s for n, s in swap.items() if self.swapped.get(n) != s}
            if not swap:
                break
            self.swapped.update(swap)
            self.memo.clear()
            everything = postorder([lower(r, self.memo, self.dialect, self.swapped,
                                          self.definitions) for r in roots],
                                   stop=self.names.__contains__)
        self.present = set(everything)
        self.uses = Counter(arg for node in everything for arg in node.args)
        for node in reversed(everything):       # X.T used twice computes X twice: count it so
            if node.op in ("transpose", "expand") and self.uses[node] > 1:
                self.uses[node.args[0]] += self.uses[node] - 1
        self.named = {n.args[0]: n for n in everything if n.op == "named"}
        self.products = {}
        for n in everything:
            if n.op == "mul":
                self.products.setdefault(multiset(n.args), []).append(n)
        self.multiplied = Counter(a.args[0] if a.op == "transpose" else a
                                  for n in everything if n.op == "matmul" for a in n.args)

    def emit(self, outputs: Sequence[tuple[str, Node]], later: Sequence[Node] = (),
             comments: Sequence[str] = (), counted: bool = False) -> list[str]:
        """Statements computing each output; returns the names given to them.

        An output named ``stem*`` gets a fresh name from ``stem``. Work shared with ``later``
        expressions (a later call computes them) gets a name, so that they can reuse it;
        ``counted`` means ``count`` has already seen them.
        """
        if not counted:
            self.count([*(node for _, node in outputs), *later])
        outputs = [(name, lower(node, self.memo, self.dialect, self.swapped, self.definitions))
                   for name, node in outputs]
        roots = [node for _, node in outputs]
        order = postorder(roots, stop=self.names.__contains__)
        named = self.named
        depth: dict[Node, int] = {}
        for node in self.share_log_softmax(order):
            if node in self.names:
                continue
            depth[node] = 1 + max((depth.get(a, 0) for a in node.args if a not in self.names),
                                  default=0)
            if node.op == "named":
                self.bind(node.attrs.name, node)
            elif node in named:                # the body of a named value: by its name
                self.bind(named[node].attrs.name, named[node])
                self.names[node] = named[node].attrs.name
            elif (self.uses[node] > 1 or depth[node] > MAX_DEPTH) and node.op not in CHEAP:
                self.bind(self.temp_name(node), node)       # shared, or deep: a name of its own
        targets = []
        for i, (name, node) in enumerate(outputs):
            target = self.allocate.fresh(name[:-1]) if name.endswith("*") else name
            self.output(target, node, comments[i] if i < len(comments) else "")
            targets.append(target)
        return targets

    def output(self, target: str, node: Node, comment: str = "") -> None:
        """``target = node`` as a fresh array of numbers: never a mask, never a view of an
        input, never the array of another output."""
        base = view_base(node)
        if node.op == "broadcast" and node not in self.names:
            code = self.materialised(node)
        elif base.op == "const":
            code = self.number_array(self.expr(node), const_value(base))
        else:
            self.binding = (node, target)
            try:
                code = self.float_code(self.expr(node), node)
            finally:
                self.binding = (None, "")
            array = bool(node.shape) or self.dialect is TORCH      # torch scalars are tensors
            if array and (base.op == "var" or base in self.returned):
                code = self.copied(code)
        if code.text != target:
            self.add(Statement(target, code, comment), node)
        elif comment and not self.block.statements[-1].comment:   # bound by its method, with
            self.block.statements[-1].comment = comment           # more values
        self.returned.add(base)
        self.names.setdefault(node, target)

    def number_array(self, code: Code, value: sympy.Expr | None = None) -> Code:
        """A constant result as a scalar of the inputs' dtype (a tensor, for torch)."""
        if value is not None and value.is_number and self.like is None and (
                self.dialect.spelling == "numpy"):
            text, prec = python_number(value, lambda: self.module("math"))
            return Code(repr(float(value)) if "inf" not in text else text, prec, FLOAT)
        if self.dialect is TORCH:
            return Code(f"{self.xp()}.as_tensor({code.text}{self.like_text()})", ATOM, FLOAT,
                        code.reads | self.like_reads())
        if self.like is None:
            return Code(f"1.0 * {self.paren(code, MUL)}", MUL, FLOAT, code.reads)
        return Code(f"{self.like}.dtype.type({code.text})", ATOM, FLOAT,
                    code.reads | self.like_reads())

    def copied(self, code: Code) -> Code:
        method = "copy" if self.dialect.spelling == "numpy" else "clone"
        return Code(f"{self.paren(code, ATOM)}.{method}()", ATOM, FLOAT, code.reads)

    def materialised(self, node: Node) -> Code:
        """A broadcast result as a writable array of the inputs' dtype."""
        (x,) = node.args
        inner = self.arg(x, ADD)
        like = next((v for v in self.inputs if v.shape == node.shape and not is_labels(v)), None)
        if like is not None and not x.shape and (
                self.dialect.spelling == "numpy" or x.op == "const"):
            name = self.names[like]
            return Code(f"{self.xp()}.full_like({name}, {inner.text})", ATOM, FLOAT,
                        inner.reads | {name})
        code = self.e_broadcast(node)
        if self.dialect is TORCH and x.op == "const":
            return code
        return self.copied(code)

    def bind(self, name: str, node: Node) -> None:
        """``name = node`` (a named intermediate keeps its name; a mask stays a mask)."""
        definition = node.args[0] if node.op == "named" else node
        kind = self.kind(definition)
        self.binding = (definition, name)
        try:
            code = self.expr(definition)
        finally:
            self.binding = (None, "")
        if self.names.get(definition) == name:   # its method bound it, with more values
            self.names[node] = name
            return
        if node.op != "named" and self.fused.get(node) is code and code.text.isidentifier():
            self.names[node] = code.text     # a fused kernel's value, already bound to a name
            return
        if view_base(definition).op == "const" and self.dialect is TORCH:
            code = self.number_array(code)       # a tensor, so torch functions take it
        elif self.dialect is TORCH and definition.op == "permute" and definition.rank > 2 and (
                self.multiplied[node] > 1):      # batched products would each copy the view
            code = Code(f"{self.paren(code, ATOM)}.contiguous()", ATOM, kind, code.reads)
        self.add(Statement(name, code), definition)
        self.names[node] = name
        self.kinds[name] = kind

    def add(self, statement: Statement, node: Node) -> None:
        """Append a statement; when it is too long, its longest parts are named first."""
        width = WIDTH - len(statement.target)
        while len(statement.code.text) > width and not fits_by_parts(statement.code, width):
            child = self.longest_part(node)
            if child is None:
                break
            self.bind(self.temp_name(child), child)
            code = self.expr(node)
            statement.code = self.float_code(code, node) if statement.code.kind == FLOAT else code
        self.block.statements.append(statement)

    def longest_part(self, node: Node) -> Node | None:
        """The operand in ``node``'s code with the longest code that could have a name."""
        parts = [a for a in self.parts(node) if a not in self.names and a.op not in CHEAP]
        if not parts:
            views = [a for a in self.parts(node) if a not in self.names and a.op in CHEAP]
            parts = [p for p in map(self.longest_part, views) if p is not None]
        return max(parts, key=lambda a: len(self.expr(a).text), default=None)

    def parts(self, node: Node) -> list[Node]:
        """The expressions whose code ``node``'s code contains (naming one shortens it)."""
        if node.op == "mul":
            return [raw_power(f.args[0], -const_value(f.args[1])) if f.op == "pow"
                    and f.args[1].op == "const" and const_value(f.args[1]).is_negative else f
                    for f in node.args]
        if node.op == "add":
            return [-t if negative(t) else t for t in node.args]
        return list(node.args)

    def share_log_softmax(self, order: list[Node]) -> list[Node]:
        """Cross-entropy and softmax of the same logits share one log-softmax (its exp)."""
        logits = {n.args[0] for n in order if n.op == "softmax_cross_entropy"
                  and make("softmax", n.args[:1], (-1,)) in self.present}
        result = []
        for node in order:
            result.append(node)
            if node in logits:
                shared = make("log_softmax", (node,), (-1,))
                self.uses[shared] += 2
                result.append(shared)
        return result

    def temp_name(self, node: Node) -> str:
        """A temporary named after what it computes (``mask_Z1``), else ``t1``, ``t2`` …"""
        stem = NAMED_TEMPORARIES.get(node.op)
        if stem and len(node.args) == 1 and node.args[0] in self.names:
            return self.allocate.fresh(f"{stem}_{self.names[node.args[0]]}")
        return self.allocate.fresh("t", numbered=True)

    def dim(self, symbol: sympy.Expr) -> str:
        """The local name of a size, read off the first input that has it (``N, _ = X.shape``)."""
        if symbol not in self.dims:
            v = next((v for v in self.inputs if symbol in v.shape), None)
            if v is not None:
                source = self.names[v]
                code = Code(f"{source}.shape[{v.shape.index(symbol)}]", ATOM, FLOAT,
                            frozenset({source}))
            else:
                code = self.dim_from_product(symbol)
            self.block.statements.append(Statement(str(symbol), code))
            self.dims[symbol] = str(symbol)
        return self.dims[symbol]

    def dim_from_product(self, symbol: sympy.Expr) -> Code:
        """A size known only within a product, ``k = X.shape[2] // h`` for X: [B, T, h·k]; a
        number when it is fixed."""
        if str(symbol) in self.fixed:
            return Code(str(self.fixed[str(symbol)]), ATOM, FLOAT, frozenset())
        if symbol in self.resolving:                    # h from k and k from h: neither known
            raise unresolved_size(symbol)
        self.resolving.add(symbol)
        for v in self.inputs:
            for axis, d in enumerate(v.shape):
                if d.is_Mul and symbol in d.args:
                    source = self.names[v]
                    rest = self.constant(d / symbol)
                    return Code(f"{source}.shape[{axis}] // {self.paren(rest, POW)}",
                                MUL, FLOAT, rest.reads | {source})
        raise unresolved_size(symbol)

    # -- expressions -----------------------------------------------------------------------

    def expr(self, node: Node) -> Code:
        """The code computing ``node`` (its name when it has one)."""
        if node in self.names:
            name = self.names[node]
            return Code(name, ATOM, self.kinds.get(name, FLOAT), frozenset({name}))
        method = getattr(self, "e_" + node.op, None)
        return method(node) if method is not None else self.function(node)

    def kind(self, node: Node) -> str:
        """BOOL for a mask (``x > 0``, its transpose, a name for one), else FLOAT."""
        if node in self.names:
            return self.kinds.get(self.names[node], FLOAT)
        if node.op in ("transpose", "expand", "named"):
            return self.kind(node.args[0])
        return BOOL if node.op == "step" else FLOAT

    @staticmethod
    def paren(code: Code, level: int) -> str:
        return code.text if code.prec >= level else f"({code.text})"

    def float_code(self, code: Code, node: Node | None = None) -> Code:
        """``code`` as numbers: a mask is cast to the dtype of the inputs (or of its ``x``)."""
        if code.kind != BOOL:
            return code
        reference = mask_reference(node, self.names) if node is not None else None
        like = self.like or (self.names[reference] if reference is not None else None)
        if like is None:
            return Code(f"1.0 * {self.paren(code, UNARY)}", MUL, FLOAT, code.reads)
        text = self.dialect.cast.format(self.paren(code, ATOM), like)
        return Code(text, ATOM, FLOAT, code.reads | {like})

    def arg(self, node: Node, level: int, masks: bool = False) -> Code:
        """An operand at precedence ``level``; a mask is cast unless ``masks`` allows it."""
        code = self.expr(node)
        if not masks:
            code = self.float_code(code, node)
        if code.prec >= level:
            return code
        return Code(f"({code.text})", ATOM, code.kind, code.reads)

    def named_first(self, node: Node) -> str:
        """``node``'s code, named first unless it is a name or a number (for templates and
        expressions that use it twice)."""
        if node not in self.names and node.op not in ("var", "const"):
            self.bind(self.temp_name(node), node)
        return self.arg(node, ATOM).text

    def function(self, node: Node) -> Code:
        """An operation written with its dialect's template."""
        template = getattr(OPERATIONS[node.op], self.dialect.spelling)
        if template == METHOD:
            raise AssertionError(f"{node.op} has no {self.dialect.name} template: it needs an "
                                 f"emitter method e_{node.op} or its primitives")
        counts = Counter(f for _, f, _, _ in string.Formatter().parse(template) if f)
        args: list[Code] = []
        torch = self.dialect is TORCH
        constant = torch and all(a.op == "const" for a in node.args)  # torch.exp(2): an error
        tensors = torch and OPERATIONS[node.op].tensor_args
        for i, a in enumerate(node.args):
            if tensors and a.op == "const" and a not in self.names:
                self.bind(self.temp_name(a), a)  # a named constant is a tensor in torch code
            if counts[str(i)] + counts[f"p{i}"] > 1:
                self.named_first(a)
            args.append(self.tensor_arg(a) if constant and not tensors else self.arg(a, ADD))
        keywords = {f"p{i}": self.paren(c, ATOM) for i, c in enumerate(args)}
        keywords |= self.template_attrs(node)
        text = fill(template, self.allocate, self.block, *(c.text for c in args), **keywords)
        reads = frozenset().union(*(c.reads for c in args))
        return Code(text, template_precedence(template), BOOL if node.op == "step" else FLOAT,
                    reads)

    def tensor_arg(self, node: Node) -> Code:
        """A constant as a tensor, for a torch function of constants."""
        code = self.arg(node, ADD)
        return Code(f"{self.xp()}.as_tensor({code.text}{self.like_text()})", ATOM, FLOAT,
                    code.reads | self.like_reads())

    def template_attrs(self, node: Node) -> dict[str, str]:
        """A template's parameters: ``{k}`` as written, ``{axis}`` as a keyword or nothing."""
        found = {name: str(value) for name, value in params(node).items() if name != "axis"}
        if node.op not in DEFAULT_AXIS:
            return found
        axis = node.attrs.axis
        if self.dialect is TORCH:
            return {"axis": f", dim={tuple(range(node.args[0].rank)) if axis is None else axis}"}
        return {"axis": "" if axis == DEFAULT_AXIS[node.op] else f", axis={axis}"}

    def e_softmax(self, node: Node) -> Code:
        shared = make("log_softmax", node.args, node.attrs)
        if shared in self.names:
            name = self.names[shared]
            return Code(f"{self.xp()}.exp({name})", ATOM, FLOAT, frozenset({name}))
        if self.dialect is TORCH and node.attrs.axis is None:
            return self.flattened(node)
        return self.function(node)

    def e_log_softmax(self, node: Node) -> Code:
        if self.dialect is TORCH and node.attrs.axis is None:
            return self.flattened(node)
        return self.function(node)

    def flattened(self, node: Node) -> Code:
        """torch's softmax over every entry of a matrix: over the matrix flattened."""
        x = self.named_first(node.args[0])
        return Code(f"{self.xp()}.{node.op}({x}.reshape(-1), 0).reshape({x}.shape)", ATOM, FLOAT,
                    self.expr(node.args[0]).reads)

    def e_delta(self, node: Node) -> Code:
        raise ValueError(f"δ{node.attrs.label} is used before it is computed")

    def e_var(self, node: Node) -> Code:
        return Code(node.attrs.name, ATOM, FLOAT, frozenset({node.attrs.name}))

    def e_const(self, node: Node) -> Code:
        return self.constant(node.attrs.value)

    def constant(self, value: sympy.Expr) -> Code:
        printer = ConstantPrinter(self)
        text, prec = printer(value)
        return Code(text, prec, FLOAT, frozenset(printer.reads))

    def shape_code(self, shape: tuple) -> Code:
        parts = [self.constant(d) for d in shape]
        inner = ", ".join(p.text for p in parts) + ("," if len(parts) == 1 else "")
        return Code(f"({inner})", ATOM, FLOAT, frozenset().union(*(p.reads for p in parts)))

    def like_text(self) -> str:
        """Keywords giving a new array the dtype (and device) of the inputs."""
        return self.dialect.like.format(self.like) if self.like else ""

    def like_reads(self) -> frozenset[str]:
        return frozenset({self.like}) if self.like else frozenset()

    def created(self, call: str, size: Code) -> Code:
        """``np.zeros((n, m), dtype=X.dtype)`` and the like."""
        return Code(f"{self.xp()}.{call}({size.text}{self.like_text()})", ATOM, FLOAT,
                    size.reads | self.like_reads())

    def e_concat(self, node: Node) -> Code:
        """``np.concatenate([A, B], axis=0)``, ``torch.cat([A, B], dim=0)``."""
        blocks = [self.arg(block, ADD) for block in node.args]
        join = "concatenate" if self.dialect.spelling == "numpy" else "cat"
        text = f"{self.xp()}.{join}([{', '.join(b.text for b in blocks)}], " \
               f"{self.dialect.axis}={node.attrs.axis})"
        return Code(text, ATOM, FLOAT, frozenset().union(*(b.reads for b in blocks)))

    def e_where(self, node: Node) -> Code:
        """``np.where(mask, a, b)``: the branch not taken never reaches the value (which is of
        the inputs' dtype when both branches are numbers, not an integer array)."""
        condition = self.arg(node.args[0], ADD, masks=True)
        test = condition.text if condition.kind == BOOL else f"{self.paren(condition, ADD)} > 0"
        first, second = node.args[1:]
        a = (self.filled(self.shape_code(()), first) if first.op == second.op == "const"
             else self.arg(first, ADD))
        b = self.arg(second, ADD)
        return Code(f"{self.xp()}.where({test}, {a.text}, {b.text})", ATOM, FLOAT,
                    condition.reads | a.reads | b.reads)

    def e_leaky_relu(self, node: Node) -> Code:
        """NumPy: ``np.maximum(x, a * x)`` for a number a ≤ 1 (``np.minimum`` for a ≥ 1), which
        has no branch for ``np.where`` to mispredict on signs that vary (7x faster on a large
        array). Otherwise, and in torch and JAX, ``where(x > 0, x, a * x)``: their autograd,
        which differentiates this code again, reads the slope at 0 from that form."""
        x, a = node.args
        slope = const_value(a)
        below_one = slope <= 1 if slope is not None and slope.is_number and slope != 0 else None
        if self.dialect is not NUMPY or below_one not in (sympy.true, sympy.false):
            return self.function(node)      # a size in it, or 0 (0 · −inf is NaN, as torch's)
        self.named_first(x)
        value, factor = self.arg(x, ADD), self.arg(a, MUL)
        pick = "maximum" if below_one else "minimum"
        text = f"{self.xp()}.{pick}({value.text}, {self.paren(factor, ATOM)} * " \
               f"{self.paren(value, UNARY)})"
        return Code(text, ATOM, FLOAT, value.reads | factor.reads)

    def e_einsum(self, node: Node) -> Code:
        """``np.einsum("ij,jk->ik", A, B, optimize=True)``, ``torch.einsum(…)``."""
        operands = [self.arg(x, ADD) for x in node.args]
        optimize = ", optimize=True" if self.dialect.spelling == "numpy" else ""
        text = (f'{self.xp()}.einsum("{node.attrs.spec}", '
                f"{', '.join(o.text for o in operands)}{optimize})")
        return Code(text, ATOM, FLOAT, frozenset().union(*(o.reads for o in operands)))

    def e_reshape(self, node: Node) -> Code:
        """``x.reshape((B, T, h, k))``."""
        x, shape = self.arg(node.args[0], ATOM), self.shape_code(node.shape)
        return Code(f"{x.text}.reshape({shape.text})", ATOM, FLOAT, x.reads | shape.reads)

    def e_scatter_rows(self, node: Node) -> Code:
        """``_scatter_rows(g, labels, rows)``: each row of g added at its label (a constant g,
        the seed of a value that is one entry, as a 0-d array of the inputs' dtype)."""
        g = (self.filled(self.shape_code(()), node.args[0]) if node.args[0].op == "const"
             else self.arg(node.args[0], ADD))
        labels = self.arg(node.args[1], ADD, masks=True)
        rows = self.constant(node.attrs.rows)
        helper = fill("{_scatter_rows}", self.allocate, self.block)
        return Code(f"{helper}({g.text}, {labels.text}, {rows.text})", ATOM, FLOAT,
                    g.reads | labels.reads | rows.reads)

    def e_slice(self, node: Node) -> Code:
        """``G[n:n + m, :]``."""
        axis, start, stop = node.attrs
        x, first, last = self.arg(node.args[0], ATOM), self.constant(start), self.constant(stop)
        cut = f"{first.text if start != 0 else ''}:{last.text}"
        index = ", ".join(cut if k == axis else ":" for k in range(node.rank))
        return Code(f"{x.text}[{index}]", ATOM, FLOAT, x.reads | first.reads | last.reads)

    def e_block_sums(self, node: Node) -> Code:
        """``X.reshape(m, p, n, q).sum(axis=(1, 3))``: the sum of each p×q block."""
        return self.blocks_summed(node, (1, 3))

    def e_sum_of_blocks(self, node: Node) -> Code:
        """``X.reshape(m, p, n, q).sum(axis=(0, 2))``: the m×n grid of blocks added up."""
        return self.blocks_summed(node, (0, 2))

    def blocks_summed(self, node: Node, axes: tuple[int, int]) -> Code:
        x = self.arg(node.args[0], ATOM)
        rows, cols, p, q = (self.constant(d) for d in node.attrs)
        sizes = ", ".join(d.text for d in (rows, p, cols, q))
        text = f"{x.text}.reshape({sizes}).sum({self.dialect.axis}={axes})"
        return Code(text, ATOM, FLOAT, x.reads.union(*(d.reads for d in (rows, cols, p, q))))

    def e_zeros(self, node: Node) -> Code:
        return self.created("zeros", self.shape_code(node.shape))

    def e_identity(self, node: Node) -> Code:
        return self.created("eye", self.constant(node.attrs.n))

    def e_diag_embedding(self, node: Node) -> Code:
        n = self.constant(node.attrs.n)
        helper = fill("{_diag_embedding}", self.allocate, self.block)
        return self.of_inputs_dtype(Code(f"{helper}({n.text})", ATOM, FLOAT, n.reads))

    def e_commutation(self, node: Node) -> Code:
        rows, cols = (self.constant(d) for d in node.attrs)
        helper = fill("{_commutation}", self.allocate, self.block)
        return self.of_inputs_dtype(Code(f"{helper}({rows.text}, {cols.text})", ATOM, FLOAT,
                                         rows.reads | cols.reads))

    def of_inputs_dtype(self, code: Code) -> Code:
        """A matrix of numbers a helper makes (in float64) in the inputs' dtype and device."""
        if not self.like or self.dialect is JAX:
            return code
        return Code(self.dialect.cast.format(code.text, self.like), ATOM, FLOAT,
                    code.reads | self.like_reads())

    def e_broadcast(self, node: Node) -> Code:
        (x,) = node.args
        shape = self.shape_code(node.shape)
        if x.op == "const":
            return self.filled(shape, x)
        inner = self.arg(x, ADD)
        reads = inner.reads | shape.reads
        if self.dialect is TORCH:
            return Code(f"{self.paren(inner, ATOM)}.expand({shape.text})", ATOM, FLOAT, reads)
        return Code(f"{self.xp()}.broadcast_to({inner.text}, {shape.text})", ATOM, FLOAT, reads)

    def filled(self, shape: Code, x: Node) -> Code:
        """``np.full(shape, c, dtype=X.dtype)``: the constant x as an array of the inputs' dtype
        (and device), not an integer array."""
        inner = self.arg(x, ADD)
        value = (inner if self.like or self.dialect is TORCH
                 else self.number_array(inner, const_value(x)))
        return Code(f"{self.xp()}.full({shape.text}, {value.text}{self.like_text()})", ATOM,
                    FLOAT, shape.reads | value.reads | self.like_reads())

    def e_expand(self, node: Node) -> Code:
        (axis,) = node.attrs
        inner = self.arg(node.args[0], ATOM, masks=True)
        index = ", ".join("None" if i == axis else ":" for i in range(node.rank))
        return Code(f"{inner.text}[{index}]", ATOM, inner.kind, inner.reads)

    def e_transpose(self, node: Node) -> Code:
        """``x.T``; ``x.mT`` of a stack of matrices (``np.swapaxes(x, -1, -2)`` in NumPy)."""
        inner = self.arg(node.args[0], ATOM, masks=True)
        if node.rank <= 2:
            return Code(f"{inner.text}.T", ATOM, inner.kind, inner.reads)
        if self.dialect is TORCH:
            return Code(f"{inner.text}.mT", ATOM, inner.kind, inner.reads)
        return Code(f"{self.xp()}.swapaxes({inner.text}, -1, -2)", ATOM, inner.kind, inner.reads)

    def e_matmul(self, node: Node) -> Code:
        a, b = node.args
        if b.op == "broadcast" and b.rank == 1 and not b.args[0].shape and a.rank == 2:
            total = self.arg(a, ATOM)                            # M 𝟙: row sums
            text = f"{total.text}.sum({self.dialect.axis}=1)"
            if const_value(b.args[0]) == 1:
                return Code(text, ATOM, FLOAT, total.reads)
            c = self.arg(b.args[0], UNARY)
            return Code(f"{c.text} * {text}", MUL, FLOAT, total.reads | c.reads)
        if a.op == "diag" and a.args[0].rank == 1 and b.rank == 2:   # diag(c) B scales rows
            c, m = self.arg(a.args[0], ATOM), self.arg(b, UNARY)
            return Code(f"{c.text}[:, None] * {m.text}", MUL, FLOAT, c.reads | m.reads)
        if b.op == "diag" and b.args[0].rank == 1 and a.rank == 2:   # A diag(c) scales columns
            m, c = self.arg(a, MUL), self.arg(b.args[0], UNARY)
            return Code(f"{m.text} * {c.text}", MUL, FLOAT, m.reads | c.reads)
        if self.dialect is JAX and a.op == "transpose" and a.rank == 2 and b.rank == 1:
            a, b = b, a.args[0]          # Aᵀ u as u A: XLA would copy the transpose first
        if self.dialect is NUMPY and a.rank > 2 and b.rank == 2:
            left, right = self.arg(a, ADD), self.arg(b, ADD)
            helper = fill("{_stacked_at}", self.allocate, self.block)
            return Code(f"{helper}({left.text}, {right.text})", ATOM, FLOAT,
                        left.reads | right.reads)
        left, right = self.arg(a, MUL), self.arg(b, UNARY)
        return Code(f"{left.text} @ {right.text}", MUL, FLOAT, left.reads | right.reads)

    def e_sum(self, node: Node) -> Code:
        axis, keepdims = node.attrs
        (x,) = node.args
        if stacked_gram(node):
            return self.flattened_product(x)
        if axis is None and keepdims and self.dialect is TORCH:
            axis = tuple(range(x.rank))
        while axis is not None and x.op == "sum" and x.attrs.keepdims == keepdims and (
                x.attrs.axis is not None and x not in self.names and not stacked_gram(x)):
            inner = x.attrs.axis % x.args[0].rank
            axes = tuple(a % x.rank for a in (axis if isinstance(axis, tuple) else (axis,)))
            if not keepdims:                   # one pass: an axis of the sum, renumbered
                axes = tuple(a + (a >= inner) for a in axes)
            axis, x = tuple(sorted({inner, *axes})), x.args[0]
        if self.methods and self.dialect is NUMPY and x.rank >= 2 and axis in (
                -1, x.rank - 1, (x.rank - 1,)):
            summed = self.arg(x, ADD)
            helper = fill("{_sum_along}", self.allocate, self.block)
            return Code(f"{helper}({summed.text}, -1{', keepdims=True' if keepdims else ''})",
                        ATOM, FLOAT, summed.reads)
        options = ([] if axis is None else [f"{self.dialect.axis}={axis}"]) + (
            [f"{self.dialect.keepdims}=True"] if keepdims else [])
        return self.total(self.arg(x, ADD), options)

    def flattened_product(self, product: Node) -> Code:
        """Σ_b A_bᵀ B_b as one product of the stacks' rows: ``_rows(A).T @ _rows(B)`` (one
        matrix product, not B small ones and a sum)."""
        left, right = (self.arg(x, ADD) for x in (product.args[0].args[0], product.args[1]))
        rows = fill("{_rows}", self.allocate, self.block)
        return Code(f"{rows}({left.text}).T @ {rows}({right.text})", MUL, FLOAT,
                    left.reads | right.reads)

    def total(self, code: Code, options: Sequence[str] = ()) -> Code:
        """The sum of an expression's entries: ``x.sum(…)`` (or ``np.sum(x, …)``)."""
        if self.methods or self.dialect is TORCH:
            return Code(f"{self.paren(code, ATOM)}.sum({', '.join(options)})", ATOM, FLOAT,
                        code.reads)
        return Code(f"{self.xp()}.sum({', '.join([code.text, *options])})", ATOM, FLOAT,
                    code.reads)

    def e_softmax_cross_entropy(self, node: Node) -> Code:
        z, y = node.args
        log_softmax = self.expr(make("log_softmax", (z,), (-1,)))
        targets = self.arg(y, MUL)
        if is_labels(y):
            picked = fill("{_pick}", self.allocate, self.block)
            terms = Code(f"{picked}({log_softmax.text}, {targets.text})", ATOM, FLOAT,
                         targets.reads | log_softmax.reads)
        else:
            terms = Code(f"{targets.text} * {self.paren(log_softmax, UNARY)}", MUL, FLOAT,
                         targets.reads | log_softmax.reads)
        total = self.total(terms)
        if z.rank >= 2:                          # the mean over every row of the stack
            rows = self.arg(const(size(z.shape[:-1])), POW)
            return Code(f"-{total.text} / {rows.text}", MUL, FLOAT, total.reads | rows.reads)
        return Code(f"-{total.text}", UNARY, FLOAT, total.reads)

    def e_mse(self, node: Node) -> Code:
        p, t = self.arg(node.args[0], ADD), self.arg(node.args[1], ADD + 1)
        return Code(f"{self.xp()}.mean(({p.text} - {t.text}) ** 2)", ATOM, FLOAT,
                    p.reads | t.reads)

    def e_onehot(self, node: Node) -> Code:
        """One-hot rows, materialised (a sum with them adds at the labels instead)."""
        rows = self.created("zeros", self.shape_code(node.shape))
        return self.added_at(rows, node, sympy.Integer(1))

    def added_at(self, code: Code, onehot: Node, coefficient: sympy.Expr) -> Code:
        """``code + coefficient · onehot(y)`` without forming the one-hot rows."""
        labels = self.arg(onehot.args[0], ADD)
        c = self.constant(coefficient)
        helper = fill("{_add_at}", self.allocate, self.block)
        return Code(f"{helper}({code.text}, {labels.text}, {c.text})", ATOM, FLOAT,
                    code.reads | labels.reads | c.reads)

    def e_add(self, node: Node) -> Code:
        hot = [t for t in node.args if onehot_part(t) is not None and t.shape == node.shape]
        if hot:                                  # added at the labels, never formed
            rest = [t for t in node.args if t not in hot]
            code = (self.arg(broadcast_to(add(*rest), node.shape), ADD) if rest  # rows whole
                    else self.created("zeros", self.shape_code(node.shape)))
            for term in hot:
                coefficient, onehot = onehot_part(term)
                code = self.added_at(code, onehot, coefficient)
            return code
        if (fused := self.multiply_add(node) or self.linear_layer(node)
                or self.plus_diagonal(node)) is not None:
            return fused
        terms = self.order.ordered_terms(node)
        if len(terms) > MAX_TERMS:              # Python's compiler nests a + b + … deeply
            chunks = [make("add", terms[i:i + MAX_TERMS])
                      for i in range(0, len(terms), MAX_TERMS)]
            for chunk in chunks:
                if chunk not in self.names:
                    self.bind(self.temp_name(chunk), chunk)
            return self.e_add(make("add", chunks))
        parts: list[str] = []
        reads: frozenset[str] = frozenset()
        for term in terms:
            if parts and negative(term):
                code = self.arg(-term, MUL)
                parts.append(f" - {code.text}")
            else:
                code = self.arg(term, ADD + 1 if parts else ADD)
                if parts and code.text.startswith("-") and code.prec in (UNARY, MUL):
                    parts.append(f" - {code.text[1:]}")         # a + -b / n is a - b / n
                else:
                    parts.append(f" + {code.text}" if parts else code.text)
            reads |= code.reads
        return Code("".join(parts), ADD, FLOAT, reads, tuple(parts))

    def plus_diagonal(self, node: Node) -> Code | None:
        """M + diag(d) in NumPy as M computed, then d added to its diagonal in place (M is a
        new array when an operator computes it): diag(d), n² entries, is never formed."""
        diagonal = [t for t in node.args if t.op == "diag" and t.args[0].rank == 1]
        if self.dialect is not NUMPY or len(diagonal) != 1 or node.rank != 2:
            return None
        rest = [t for t in node.args if t is not diagonal[0]]
        if any(t.shape != node.shape for t in rest):
            return None
        matrix = self.expr(rest[0] if len(rest) == 1 else make("add", tuple(rest)))
        if matrix.prec not in (ADD, MUL, UNARY):    # a name or a view: not ours to change
            return None
        d = self.arg(diagonal[0].args[0], ADD)
        helper = fill("{_plus_diagonal}", self.allocate, self.block)
        return Code(f"{helper}({matrix.text}, {d.text})", ATOM, FLOAT, matrix.reads | d.reads)

    def multiply_add(self, node: Node) -> Code | None:
        """c + a ⊙ b, the product full-size, as torch's one ``addcmul`` pass (a layer norm's
        gain and shift): the product and the sum would read and write it twice."""
        if self.dialect is not TORCH or len(node.args) != 2:
            return None
        for c, p in (node.args, node.args[::-1]):
            if (p.op == "mul" and len(p.args) == 2 and p.shape == node.shape and c.shape
                    and p not in self.names and self.uses[p] == 1
                    and all(f.op != "const" and f.shape and self.kind(f) == FLOAT
                            for f in (c, *p.args))):
                codes = [self.arg(v, ADD) for v in (c, *p.args)]
                return Code(f"{self.xp()}.addcmul({', '.join(x.text for x in codes)})", ATOM,
                            FLOAT, frozenset().union(*(x.reads for x in codes)))
        return None

    def linear_layer(self, node: Node) -> Code | None:
        """X W + b (+ the other terms), b a vector along the last axis, as torch's
        ``linear``: one product that adds the bias as it writes (a matrix multiply-add)."""
        if self.dialect is not TORCH:
            return None
        bias = next((t for t in node.args if t.shape == node.shape[-1:] and t.op != "const"
                     and self.kind(t) == FLOAT), None)
        for p in node.args if bias is not None else ():
            if (p.op != "matmul" or p in self.names or self.uses[p] != 1
                    or p.args[0].rank < 2 or p.args[1].rank != 2 or p.shape != node.shape):
                continue
            x, w = p.args
            weight = w.args[0] if w.op == "transpose" else transpose(w)
            codes = [self.arg(v, ADD) for v in (x, weight, bias)]
            text = f"{self.xp()}.nn.functional.linear({', '.join(c.text for c in codes)})"
            reads = frozenset().union(*(c.reads for c in codes))
            rest = [t for t in node.args if t is not p and t is not bias]
            if not rest:
                return Code(text, ATOM, FLOAT, reads)
            more = self.arg(add(*rest), ADD + 1)
            return Code(f"{text} + {more.text}", ADD, FLOAT, reads | more.reads)
        return None

    def e_mul(self, node: Node) -> Code:
        if (fused := self.gelu_backward(node) or self.softmax_backward(node)
                or self.layer_norm_backward(node)) is not None:
            return fused
        factors = self.with_named_products(list(node.args))
        coefficient = sympy.Integer(1)
        if factors[0].op == "const":
            coefficient = const_value(factors.pop(0))
        sign = "-" if coefficient.is_negative else ""
        magnitude = -coefficient if sign else coefficient
        num, den = sympy.fraction(magnitude)
        if beyond_floats(num) or beyond_floats(den):   # 1e-320 x, not x / 10³²⁰ = x / inf
            num, den = magnitude, ONE
        scalars = [self.constant(c) for c in (num, den)]
        top = [] if num == 1 else [self.paren(scalars[0], ATOM)]
        bottom = [] if den == 1 else [self.paren(scalars[1], ATOM)]
        reads: frozenset[str] = scalars[0].reads | scalars[1].reads
        masks = any(f.shape and self.kind(f) == FLOAT and not in_denominator(f)  # x * (x > 0)
                    for f in factors)                                        # is right
        small: Shape = ()                     # the shape of the factors not of full size
        full: dict[int, Code] = {}            # the full-size factors, by place in `top`
        for factor in sorted(factors, key=lambda f: self.kind(f) == BOOL):   # masks last
            k = const_value(factor.args[1]) if factor.op == "pow" else None
            if k is not None and k.is_negative and factor not in self.names:  # (a named
                code = self.arg(raw_power(factor.args[0], -k), POW)          # one is reused)
                bottom.append(code.text)
                small = broadcast_shapes(small, factor.shape)
            else:
                code = self.arg(factor, MUL if not top else UNARY, masks=masks)
                if factor.shape == node.shape or self.kind(factor) == BOOL:   # masks stay last
                    full[len(top)] = code
                else:
                    small = broadcast_shapes(small, factor.shape)
                top.append(code.text)
            reads |= code.reads
        quotient = bottom[0] if len(bottom) == 1 else "(" + " * ".join(bottom) + ")"
        parts = [t for i, t in enumerate(top) if i not in full]
        if bottom and parts and full and small != node.shape:   # the small ones divided first:
            text = " / ".join([" * ".join(parts), quotient])    # one full-size pass less
            text += "".join(f" * {self.paren(code, UNARY)}" for code in full.values())
        else:
            text = " * ".join(top) or "1"
            if bottom:
                text += " / " + quotient
        if not sign:
            return Code(text, MUL, FLOAT, reads)
        # `-a` is unary; `-a * b` is a product (`x ** -a * b` would mean `(x ** -a) * b`)
        single = not bottom and len(top) == 1 and (
            not factors or self.expr(factors[0]).prec >= UNARY)
        return Code(f"-{text}", UNARY if single else MUL, FLOAT, reads)

    def with_named_products(self, factors: list[Node]) -> list[Node]:
        """``factors`` with a product already named among them read by its name, the largest
        first (a ⊙ b ⊙ c is t ⊙ c once t = a ⊙ b): one full-size pass less for each."""
        if len(factors) > MAX_FACTORS:
            return factors
        for count in range(len(factors) - 1, 1, -1):
            for part in itertools.combinations(factors, count):
                named = next((n for n in self.products.get(multiset(part), ())
                              if n in self.names), None)
                if named is not None:
                    rest = list(factors)
                    for f in part:
                        rest.remove(f)
                    return self.with_named_products([*rest, named])
        return factors

    def gelu_backward(self, node: Node) -> Code | None:
        """G ⊙ gelu′(x), G of x's shape, as torch's one ``gelu_backward`` kernel (a product
        and a kernel for gelu′ alone read and write the array three times more)."""
        slopes = [f for f in node.args if f.op == "gelu_slope" and f.shape == node.shape]
        if self.dialect is not TORCH or len(slopes) != 1:
            return None
        g = product([f for f in node.args if f is not slopes[0]])
        if g.shape != node.shape:
            return None
        grad, x = self.arg(g, ADD), self.arg(slopes[0].args[0], ADD)
        return Code(f"{self.xp()}.ops.aten.gelu_backward({grad.text}, {x.text})", ATOM, FLOAT,
                    grad.reads | x.reads)

    def softmax_backward(self, node: Node) -> Code | None:
        """s ⊙ (G − sum(s ⊙ G, axis, keepdims)) for s = softmax(x, axis), times any other
        factors, with torch's one ``_softmax_backward_data`` kernel for the first part."""
        if self.dialect is not TORCH:
            return None
        for s in node.args:
            softmax = s.args[0] if s.op == "named" else s
            if softmax.op != "softmax" or s.shape != node.shape or softmax.attrs.axis is None:
                continue
            axis = softmax.attrs.axis % s.rank
            for d in node.args:
                if self.uses[d] > 1 or (g := softmax_cotangent(d, s, axis)) is None:
                    continue                    # (a shared G − Σ is computed once, by name)
                grad, out = self.arg(g, ADD), self.arg(s, ATOM)
                text = (f"{self.xp()}._softmax_backward_data({grad.text}, {out.text}, {axis}, "
                        f"{out.text}.dtype)")
                rest = [f for f in node.args if f is not s and f is not d]
                if not rest:
                    return Code(text, ATOM, FLOAT, grad.reads | out.reads)
                more = self.arg(product(rest), UNARY, masks=True)
                return Code(f"{text} * {more.text}", MUL, FLOAT,
                            grad.reads | out.reads | more.reads)
        return None

    def e_standardize(self, node: Node) -> Code:
        """x̂ by torch's layer-norm kernel (over the last axis), bound with the mean and the
        1 / √(σ² + ε) it computes too, which the backward kernel reads (the only dialect and
        the only nodes :func:`expanded` leaves standardize to: the others compute its
        primitives)."""
        x, eps = node.args[0], node.attrs.eps
        hat = self.binding[1] if self.binding[0] is node else None
        inputs = self.arg(x, ADD)
        if not inputs.text.isidentifier():   # named first: a statement too long to fit would
            self.bind(self.temp_name(x), x)  # name its longest part, this node itself
            inputs = self.arg(x, ADD)
        stem = f"_{self.names[x]}" if x in self.names else ""
        hat = hat or self.temp_name(node)
        mean, rstd = (self.allocate.fresh(f"{what}{stem}", numbered=not stem)
                      for what in ("mean", "rstd"))
        helper = fill("{_layer_norm}", self.allocate, self.block)
        epsilon = self.constant(eps)
        call = f"{helper}({inputs.text}, {epsilon.text})"
        self.add(Statement(f"{hat}, {mean}, {rstd}",
                           Code(call, ATOM, FLOAT, inputs.reads | epsilon.reads)), node)
        self.names[node], self.kinds[hat] = hat, FLOAT
        self.moments[node] = (mean, rstd)     # not differentiable: for the backward kernel only
        return Code(hat, ATOM, FLOAT, frozenset({hat}))

    def layer_norm_backward(self, node: Node) -> Code | None:
        """(G − mean(G) − x̂ ⊙ mean(G ⊙ x̂)) / √(σ² + ε), x̂ = standardize(x) over the last axis
        (standardize's rule), as torch's one layer-norm backward kernel."""
        if self.dialect is not TORCH:
            return None
        if node in self.fused:                    # already bound, with the gain's gradient
            return self.fused[node]
        for d in node.args:
            found = standardize_cotangent(d) if self.uses[d] == 1 else None
            if found is None:
                continue
            g, hat = found
            s = definition_of(hat)
            x, axis, eps = s.args[0], s.attrs.axis, s.attrs.eps
            scale = next((f for f in node.args if f.shape == s.shape[:-1] + (ONE,)
                          and equivalent(f, inverse_std(x, axis, eps))), None)
            if axis == s.rank - 1 and scale is not None:
                g, gain = gain_of(g)
                codes = [self.arg(v, ADD) for v in (g, x) if v is not None]
                codes += [Code(name, ATOM, FLOAT, frozenset({name})) for name in self.moments[s]
                          ] if s in self.moments else [self.arg(v, ADD) for v in (
                              mean(x, axis, keepdims=True), inverse_std(x, axis, eps))]
                codes += [self.arg(gain, ADD)] if gain is not None else []
                helper = fill("{_layer_norm_backward}", self.allocate, self.block)
                text = f"{helper}({', '.join(c.text for c in codes)})"
                reads = frozenset().union(*(c.reads for c in codes))
                weight = self.gain_gradient(hat, g, gain) if gain is not None else None
                rest = [f for f in node.args if f is not d and f is not scale]
                if weight is not None:      # the gain's gradient too, from the same kernel
                    own = self.binding[1] if self.binding[0] is node and not rest else None
                    inputs, sums = own or self.temp_name(node), self.temp_name(weight)
                    x_hat = self.arg(hat, ADD)
                    call = Code(f"{text[:-1]}, xhat={x_hat.text})", ATOM, FLOAT,
                                reads | x_hat.reads)
                    self.add(Statement(f"{inputs}, {sums}", call), node)
                    self.names[weight], self.kinds[sums] = sums, FLOAT
                    if own:                 # the value being named: by the name asked for
                        self.names[node], self.kinds[own] = own, FLOAT
                    text, reads = inputs, frozenset({inputs})
                code = Code(text, ATOM, FLOAT, reads)
                if rest:
                    more = self.arg(product(rest), UNARY, masks=True)   # (1/std ⊙ d) ⊙ rest
                    code = Code(f"{text} * {more.text}", MUL, FLOAT, reads | more.reads)
                self.fused[node] = code
                return code
        return None

    def gain_gradient(self, hat: Node, g: Node, gain: Node) -> Node | None:
        """Σ x̂ ⊙ G over the leading axes, the gradient of a layer norm's gain, when the code
        computes it (torch's backward kernel gives it with the input's)."""
        wanted = lower(reduce_to(mul(hat, g), gain.shape), self.memo, self.dialect,
                       self.swapped, self.definitions)
        return wanted if wanted in self.present and wanted not in self.names else None

    def e_pow(self, node: Node) -> Code:
        base, k = node.args
        value = const_value(k)
        if value == sympy.Rational(1, 2):
            inner = self.arg(base, ADD)
            return Code(f"{self.xp()}.sqrt({inner.text})", ATOM, FLOAT, inner.reads)
        if value is not None and value.is_negative:
            inner = self.arg(raw_power(base, -value), POW)
            return Code(f"1 / {inner.text}", MUL, FLOAT, inner.reads)
        b, e = self.arg(base, ATOM), self.arg(k, UNARY)
        return Code(f"{b.text} ** {e.text}", POW, FLOAT, b.reads | e.reads)


def template_precedence(template: str) -> int:
    """How tightly a filled template binds: ``f(…)`` and ``(…)`` are atoms; otherwise the
    loosest operator outside parentheses decides (``0.5 * (1 + …)`` is a product), and an
    argument ``{0}`` written bare there, whose own precedence is unknown, counts as a sum."""
    depth, loosest = 0, UNARY if template.startswith("-") else ATOM
    for i, char in enumerate(template):
        if char == "{" and not depth and template[i + 1:i + 2].isdigit():
            loosest = ADD
        depth += (char in "([{") - (char in ")]}")
        if depth or i == 0:
            continue
        if char in "+-" and template[i - 1] == " ":
            loosest = min(loosest, ADD)
        elif char in "*/" and template[i - 1:i + 1] != "**" and template[i:i + 2] != "**":
            loosest = min(loosest, MUL)
        elif char == "*":
            loosest = min(loosest, POW)
    return loosest


def multiset(nodes: Iterable[Node]) -> frozenset:
    """``nodes`` as a multiset (a ⊙ b and b ⊙ a alike)."""
    return frozenset(Counter(nodes).items())


def product(factors: Sequence[Node]) -> Node:
    """The product of ``factors`` (one of them alone)."""
    return factors[0] if len(factors) == 1 else make("mul", tuple(factors))


def softmax_cotangent(d: Node, s: Node, axis: int) -> Node | None:
    """G when ``d`` is G − sum(s ⊙ G, axis, keepdims=True) (a softmax's backward pass)."""
    if d.op != "add" or len(d.args) != 2:
        return None
    for g, t in (d.args, d.args[::-1]):
        if t.op == "mul" and len(t.args) == 2 and const_value(t.args[0]) == -1 and (
                total := t.args[1]).op == "sum" and total.attrs.keepdims and (
                total.attrs.axis is not None and total.attrs.axis % s.rank == axis) and (
                total.args[0].op == "mul" and Counter(total.args[0].args) == Counter((s, g))):
            return g if g.shape == s.shape else None
    return None


def standardize_cotangent(d: Node) -> tuple[Node, Node] | None:
    """``(G, x̂)`` when ``d`` is G − mean(G) − x̂ ⊙ mean(G ⊙ x̂) for x̂ = standardize(x) (the
    part of its rule after the 1 / √(σ² + ε)), x̂ as ``d`` reads it, else None."""
    if d.op != "add" or len(d.args) != 3:
        return None
    hats = dict.fromkeys(f for t in d.args if t.op == "mul" for f in t.args
                         if definition_of(f).op == "standardize")
    for s in hats:
        axis = definition_of(s).attrs.axis
        for g in d.args:
            if g.shape == d.shape and s not in g.args and d is add(
                    g, -mean(g, axis, keepdims=True), -(s * mean(g * s, axis, keepdims=True))):
                return g, s
    return None


def gain_of(g: Node) -> tuple[Node, Node | None]:
    """``(G', w)`` for G = w ⊙ G', w a vector along the last axis (a layer norm's gain, which
    torch's kernel multiplies by itself), else ``(G, None)``."""
    if g.op != "mul" or len(g.args) < 2:
        return g, None
    gains = [f for f in g.args if f.shape == g.shape[-1:] and f.op != "const"]
    if len(gains) != 1:
        return g, None
    rest = product([f for f in g.args if f is not gains[0]])
    return (rest, gains[0]) if rest.shape == g.shape else (g, None)


def equivalent(a: Node, b: Node) -> bool:
    """Whether ``a`` and ``b`` compute the same: equal up to names, the order of terms and
    factors, and how a square root is written."""
    a, b = root_form(definition_of(a)), root_form(definition_of(b))
    if a is b:
        return True
    if a.op != b.op or a.attrs != b.attrs or len(a.args) != len(b.args):
        return False
    if a.op not in ("add", "mul"):
        return all(map(equivalent, a.args, b.args))
    unmatched = list(b.args)
    for x in a.args:
        match = next((y for y in unmatched if equivalent(x, y)), None)
        if match is None:
            return False
        unmatched.remove(match)
    return True


def onehot_part(term: Node) -> tuple[sympy.Expr, Node] | None:
    """``(c, onehot(y))`` for a term ``c · onehot(y)``, else None."""
    if term.op == "onehot":
        return sympy.Integer(1), term
    if term.op == "mul" and len(term.args) == 2 and term.args[1].op == "onehot" and (
            term.args[0].op == "const"):
        return const_value(term.args[0]), term.args[1]
    return None


def in_denominator(factor: Node) -> bool:
    """``x⁻ᵏ``: written after ``/``."""
    k = const_value(factor.args[1]) if factor.op == "pow" else None
    return bool(k is not None and k.is_negative)


def negative(term: Node) -> bool:
    """A term with a negative constant coefficient (written ``a - b``, not ``a + -b``)."""
    coefficient = const_value(term.args[0]) if term.op == "mul" else const_value(term)
    return bool(coefficient is not None and coefficient.is_negative)


def fits_by_parts(code: Code, width: int) -> bool:
    """A long sum or product whose operands each fit on a line of their own."""
    return bool(code.parts) and max(len(p) for p in code.parts) <= width


def view_base(node: Node) -> Node:
    """The array ``node`` may be a view of: through transposes, new axes, slices and names."""
    while node.op in ("transpose", "expand", "slice", "named"):
        node = node.args[0]
    return node


def mask_reference(node: Node, names: dict[Node, str]) -> Node | None:
    """The ``x`` of a mask ``x > 0`` (through transposes and names) when ``x`` has a name."""
    while node.op in ("transpose", "expand", "named"):
        node = node.args[0]
    if node.op == "step" and node.args[0] in names:
        return node.args[0]
    return None


def outer_vectors(node: Node) -> tuple[Node, Node] | None:
    """``(u, v)`` with ``node = u vᵀ`` when ``node`` is a product around an outer product."""
    if node.op == "outer":
        return node.args[0], node.args[1]
    if node.op == "broadcast" and node.rank == 2 and not node.args[0].shape:   # c 𝟙𝟙ᵀ
        return broadcast_to(node.args[0], node.shape[:1]), broadcast_to(const(1), node.shape[1:])
    if node.op != "matmul" or node.rank != 2:
        return None
    a, b = node.args
    inner = outer_vectors(b)
    if inner is not None and a.rank == 2:
        return matmul(a, inner[0]), inner[1]
    inner = outer_vectors(a)
    if inner is not None and b.rank == 2:
        return inner[0], matmul(transpose(b), inner[1])
    return None


# ----------------------------------------------------------------------------------------------
# Blocks of statements


RELEASE_FROM = 30
"""A function of more statements than this frees each intermediate after its last use, so
that its peak memory is what is alive, not everything it computed (half, for a transformer)."""


def release(statements: Sequence[Statement], keep: Iterable[str]) -> None:
    """Mark after which statement each intermediate is last read, to be freed there; the
    ``keep`` names (what the function returns) live on. Short functions are left as they are."""
    if len(statements) <= RELEASE_FROM:
        return
    kept, last = set(keep), {}
    for i, statement in enumerate(statements):
        last |= dict.fromkeys(statement.code.reads, i)
    computed = {t.strip() for s in statements for t in s.target.split(",") if t.strip()}
    freed: dict[int, list[str]] = {}
    for name, i in last.items():
        if name in computed and name not in kept:
            freed.setdefault(i, []).append(name)
    for i, statement in enumerate(statements):
        statement.released = tuple(sorted(freed.get(i, ())))


def prune(block: Block, keep: Iterable[str]) -> None:
    """Drop the statements whose targets no later statement reads and that are not kept."""
    needed = set(keep)
    kept: list[Statement] = []
    for statement in reversed(block.statements):
        targets = {t.strip() for t in statement.target.split(",")} - {""}
        if targets & needed:
            kept.append(statement)
            needed |= statement.code.reads
    block.statements = kept[::-1]


def user_names(inputs: Sequence[Node], nodes: Sequence[Node]) -> set[str]:
    """Every name a user chose that the code may meet: variables, intermediates, sizes."""
    found = {v.attrs.name for v in inputs}
    found |= {node.attrs.name for node in postorder(list(nodes)) if node.op == "named"}
    for v in inputs:                     # every size is declared by some input
        for d in v.shape:
            found |= {str(s) for s in d.free_symbols}
    return found


Step = tuple[Node, Node]
"""An error signal: its ``delta`` leaf (how later expressions refer to it) and its expression."""


def emit_in_turn(emitter: Emitter, steps: Sequence[Step], outputs: Sequence[tuple[str, Node]],
                 of: str = "f") -> tuple[list[str], list[str]]:
    """Each error signal in turn (each may use the earlier ones), then every output; returns
    the names given to the error signals and to the outputs. The signal δ<k> = ∂f/∂Z2 is named
    ``dZ2`` after what it differentiates (``delta<k>`` for an unnamed value), under a comment
    saying which δ of the derivation it is."""
    deltas = []
    emitter.count([*(n for _, n in steps), *(n for _, n in outputs)])
    for leaf, node in steps:
        label, name = leaf.attrs.label, leaf.attrs.name
        stem = f"d{name}" if name.isidentifier() else f"delta{label}"
        (target,) = emitter.emit([(f"{stem}*", node)], comments=[f"δ{label} = ∂{of}/∂{name}"],
                                 counted=True)
        emitter.names[leaf] = target
        deltas.append(target)
    return deltas, emitter.emit(outputs, counted=True)


def numpy_block(outputs: Sequence[tuple[str, Node]], inputs: Sequence[Node],
                steps: Sequence[Step] = (), of: str = "f",
                fixed: Mapping[str, int] | None = None) -> Block:
    """Statements computing ``steps`` in turn, then each ``(name, expression)`` output.

    An output named ``stem*`` gets a fresh name; one named like a user's variable is computed
    under another name and assigned last, so that nothing reads the variable after it changed.
    """
    nodes = [node for _, node in [*steps, *outputs]]
    user = user_names(inputs, nodes)
    block = Block(Names(user))
    block.names.taken |= {name for name, _ in outputs if not name.endswith("*")}
    clashing = {name for name, _ in outputs if name in user}
    renamed = [(f"{name}*" if name in clashing else name, node) for name, node in outputs]
    deltas, targets = emit_in_turn(Emitter(inputs, block, fixed=fixed), steps, renamed, of)
    for (name, _), target in zip(outputs, targets, strict=True):
        if name in clashing:
            block.statements.append(Statement(name, Code(target, ATOM, FLOAT,
                                                         frozenset({target}))))
    block.outputs = [name if name in clashing else t
                     for (name, _), t in zip(outputs, targets, strict=True)]
    prune(block, [*deltas, *block.outputs])
    return block
