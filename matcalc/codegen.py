"""NumPy code generation: readable, CSE'd statements for a set of IR expressions.

:func:`numpy_block` turns named outputs into Python statements that need only ``import numpy as
np`` and the declared arrays bound. Named intermediates keep their names, error signals are
``delta1, delta2 …``, anything used twice is computed once into a temporary, and sizes are read
from the arrays (``N, D = X.shape``). Softmax, log-softmax, logsumexp and sigmoid go through
max-shifted / ``logaddexp`` helpers that are emitted only when used. Nothing materialises a
Jacobian; ``np.eye`` appears only when an identity is the answer itself (∂ tr X / ∂X = I).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import sympy

from matcalc.ir import Node, const, const_value, make, postorder
from matcalc.printing import TEXT, Printer
from matcalc.simplify import fit, matmul, raw_power, transpose

ADD, MUL, UNARY, POW, ATOM = 1, 2, 3, 4, 5

HELPERS = {
    "_softmax": '''def _softmax(x, axis=-1):
    """Max-shifted softmax."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)''',
    "_log_softmax": '''def _log_softmax(x, axis=-1):
    """Max-shifted log-softmax."""
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))''',
    "_logsumexp": '''def _logsumexp(x, axis=None):
    """Max-shifted log-sum-exp."""
    m = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(x - m), axis=axis))''',
    "_sigmoid": '''def _sigmoid(x):
    """Sigmoid that neither overflows nor loses precision in the tails."""
    return np.exp(-np.logaddexp(0, -x))''',
    "_kron": '''def _kron(a, b):
    """Kronecker product, vectors taken as columns."""
    return np.kron(a[:, None] if np.ndim(a) == 1 else a, b[:, None] if np.ndim(b) == 1 else b)''',
    "_commutation": '''def _commutation(rows, cols):
    """K with K @ vec(A) = vec(A.T) for a rows×cols matrix A (vec stacks columns)."""
    k = np.zeros((rows * cols, rows * cols))
    i, j = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    k[(j + cols * i).ravel(), (i + rows * j).ravel()] = 1
    return k''',
    "_diag_embedding": '''def _diag_embedding(n):
    """E with E @ v = vec(diag(v)) (vec stacks columns)."""
    e = np.zeros((n * n, n))
    e[np.arange(n) * (n + 1), np.arange(n)] = 1
    return e''',
    "_erf": '''def _erf(x):
    """The error function, entry by entry (NumPy has none)."""
    import math

    x = np.asarray(x)
    return np.vectorize(math.erf, otypes=[x.dtype])(x)''',
}

FUNCTIONS = {
    "exp": "np.exp({0})",
    "log": "np.log({0})",
    "sqrt": "np.sqrt({0})",
    "abs": "np.abs({0})",
    "sin": "np.sin({0})",
    "cos": "np.cos({0})",
    "tanh": "np.tanh({0})",
    "sign": "np.sign({0})",
    "sigmoid": "_sigmoid({0})",
    "relu": "np.maximum({0}, 0)",
    "softplus": "np.logaddexp(0, {0})",
    "gelu": "0.5 * {0} * (1 + _erf({0} / math.sqrt(2)))",
    "silu": "{0} * _sigmoid({0})",
    "erf": "_erf({0})",
    "normal_cdf": "0.5 * (1 + _erf({0} / math.sqrt(2)))",
    "normal_pdf": "np.exp(-0.5 * {0} ** 2) / math.sqrt(2 * math.pi)",
    "step": "({0} > 0)",
    "leaky_relu": "np.where({0} > 0, {0}, {1} * {0})",
    "trace": "np.trace({0})",
    "det": "np.linalg.det({0})",
    "logdet": "np.linalg.slogdet({0})[1]",
    "inv": "np.linalg.inv({0})",
    "diag": "np.diag({0})",
    "outer": "np.outer({0}, {1})",
    "kron": "_kron({0}, {1})",
    "vec": "np.ravel({0}, order=\"F\")",
    "norm": "np.linalg.norm({0})",
    "softmax": "_softmax({0}, axis={axis})",
    "log_softmax": "_log_softmax({0}, axis={axis})",
    "logsumexp": "_logsumexp({0}, axis={axis})",
    "mse": "np.mean(({0} - {1}) ** 2)",
    "matrix_power": "np.linalg.matrix_power({0}, {k})",
}
"""One line per operation: how NumPy computes it, ``{0}`` ``{1}`` being the arguments."""

NAMED_TEMPORARIES = {"step": "mask", "softmax": "softmax", "log_softmax": "log_softmax",
                     "inv": "inv", "sigmoid": "sigmoid", "det": "det", "norm": "norm",
                     "exp": "exp", "tanh": "tanh"}

DEFAULT_AXIS = {"softmax": -1, "log_softmax": -1, "logsumexp": None}

INLINE_PRODUCTS = {"gelu", "silu", "leaky_relu", "normal_cdf", "normal_pdf"}
"""Templates that use their argument inside a product: arguments are parenthesised."""

TORCH_SPELLING = {"np.": "torch.", "_erf(": "torch.erf(", "_sigmoid(": "torch.sigmoid("}


def torch_template(template: str) -> str:
    """A NumPy template in PyTorch, where torch spells the operation alike."""
    for numpy_name, torch_name in TORCH_SPELLING.items():
        template = template.replace(numpy_name, torch_name)
    return template


TORCH_FUNCTIONS = {
    **{op: torch_template(template) for op, template in FUNCTIONS.items()},
    "relu": "torch.relu({0})",
    "softplus": "torch.nn.functional.softplus({0})",
    "softmax": "torch.softmax({0}, dim={axis})",
    "log_softmax": "torch.log_softmax({0}, dim={axis})",
    "logsumexp": "torch.logsumexp({0}, dim={axis})",
}
"""The same operations in PyTorch."""


def is_mask(node: Node) -> bool:
    """A boolean array in the generated code: ``(x > 0)`` or its transpose."""
    return node.op == "step" or (node.op == "transpose" and node.args[0].op == "step")


def mask_argument(node: Node) -> Node:
    """The ``x`` of the mask ``(x > 0)`` (or of its transpose)."""
    return (node.args[0] if node.op == "transpose" else node).args[0]


@dataclass(frozen=True)
class Dialect:
    """How an array library spells what the emitter writes."""

    module: str
    functions: dict[str, str]
    axis: str = "axis"
    keepdims: str = "keepdims"
    like: str = ", dtype={0}.dtype"
    """Keywords making a new array match the array named ``{0}``."""
    cast: str = ".astype({0}.dtype)"
    """Converting a mask to the dtype of the array named ``{0}``."""
    methods: bool = False
    """Sums as methods, ``x.sum(axis=0)``: less call overhead than ``np.sum`` on small arrays."""

    def axis_text(self, axis: int | None, rank: int) -> str:
        """An axis argument; torch spells "every axis" as a tuple."""
        if axis is None and self.module == "torch":
            return str(tuple(range(rank)))
        return str(axis)


NUMPY = Dialect("np", FUNCTIONS)
NUMPY_METHODS = Dialect("np", FUNCTIONS, methods=True)
TORCH = Dialect("torch", TORCH_FUNCTIONS, "dim", "keepdim", ", dtype={0}.dtype, device={0}.device",
                ".to({0}.dtype)")

SIZED = {"const", "zeros", "identity", "broadcast", "commutation", "diag_embedding"}
"""Operations whose attributes mention sizes that the statements need by name."""

CHEAP = {"var", "const", "named", "delta", "zeros", "identity", "transpose", "expand"}


def python_scalar(value: sympy.Expr) -> str:
    """A SymPy scalar as Python source: ints stay ints, irrationals become float literals."""
    if value.is_Integer and abs(value) < 2**53:
        return str(int(value))
    if value.is_Rational and abs(value.q) < 2**53 and abs(value.p) < 2**53:
        return f"{value.p} / {value.q}"
    if value.is_number:
        return repr(float(value))
    return re.sub(r"\*\*|\*", lambda op: f" {op.group()} ", sympy.sstr(value))  # n ** 2 * m


@dataclass
class Block:
    """Generated statements and the helper functions they call."""

    lines: list[str] = field(default_factory=list)
    helpers: list[str] = field(default_factory=list)
    needs_math: bool = False

    def source(self) -> str:
        """Imports, helpers and statements as one runnable text."""
        head = ["import numpy as np"] + (["import math"] if self.needs_math else [])
        parts = ["\n".join(head)] + [HELPERS[h] for h in self.helpers] + ["\n".join(self.lines)]
        return "\n\n".join(p for p in parts if p) + "\n"


class NumpyEmitter:
    """Emits statements computing ``outputs`` from the arrays ``inputs``."""

    def __init__(self, inputs: Sequence[Node], reserved: Sequence[str] = (),
                 dialect: Dialect = NUMPY, like: str | None = None) -> None:
        self.inputs = list(inputs)
        self.dialect, self.like = dialect, like
        self.names: dict[Node, str] = {v: v.attrs[0] for v in inputs}
        self.taken = set(self.names.values()) | set(reserved)
        self.block = Block()
        self.uses: Counter[Node] = Counter()
        self.order = Printer(TEXT)
        self.temporaries: set[str] = set()

    # -- statements ------------------------------------------------------------------------

    def emit(self, outputs: Sequence[tuple[str, Node]], later: Sequence[Node] = ()) -> Block:
        """Statements assigning each output to its name; shared work done once.

        Nodes already named are reused. ``later`` are expressions a later block computes: work
        they share with ``outputs`` gets a name here, so that the later block can reuse it.
        """
        roots = [node for _, node in outputs]
        order = postorder(roots, stop=self.names.__contains__)
        everything = postorder([*roots, *later], stop=self.names.__contains__)
        self.uses = Counter(arg for node in everything for arg in node.args)
        for node in reversed(everything):       # X.T used twice computes X twice: count it so
            if node.op in ("transpose", "expand") and self.uses[node] > 1:
                self.uses[node.args[0]] += self.uses[node] - 1
        self.taken |= {n.attrs[0] for n in order if n.op == "named"} | {n for n, _ in outputs}
        order = self.share_log_softmax(order, set(everything))
        self.bind_dims(order)
        for node in order:
            if node in self.names:
                continue
            if node.op == "named":
                self.assign(node.attrs[0], node)
            elif self.needs_statement(node):
                name = self.fresh(self.temp_name(node))
                self.temporaries.add(name)
                self.assign(name, node)
        for name, node in outputs:
            if node.op == "broadcast" and node not in self.names and self.dialect.module == "np":
                self.block.lines.append(f"{name} = {self.materialised(node)}")
                self.names.setdefault(node, name)
            else:
                self.assign(name, node, force=True)
        return self.block

    def materialised(self, node: Node) -> str:
        """A broadcast result as a writable array of the inputs' dtype (``np.full_like``)."""
        (x,) = node.args
        like = next((v for v in self.inputs if v.shape == node.shape), None)
        if like is not None and not x.shape:
            return f"np.full_like({self.names[like]}, {self.arg(x, ADD)})"
        return f"np.broadcast_to({self.arg(x, ADD)}, {self.shape_text(node.shape)}).copy()"

    def prune(self, context: Sequence[str] = ()) -> Block:
        """Drop temporaries no statement (nor a line of ``context``) reads.

        A node counted twice may still be printed once, e.g. ``x⁻¹`` inside ``y / (2 x)``.
        """
        while True:
            text = "\n".join([*self.block.lines, *context])
            unused = {name for name in self.temporaries
                      if len(re.findall(rf"\b{name}\b", text)) == 1}
            if not unused:
                return self.block
            self.block.lines = [line for line in self.block.lines
                                if line.split(" = ", 1)[0] not in unused]
            self.temporaries -= unused

    def needs_statement(self, node: Node) -> bool:
        return self.uses[node] > 1 and node.op not in CHEAP and node not in self.names

    def share_log_softmax(self, order: list[Node], present: set[Node]) -> list[Node]:
        """Cross-entropy and softmax of the same logits share one log-softmax (its exp)."""
        logits = {n.args[0] for n in order if n.op == "softmax_cross_entropy"
                  and make("softmax", n.args[:1], (-1,)) in present}
        result = []
        for node in order:
            result.append(node)
            if node in logits:
                shared = make("log_softmax", (node,), (-1,))
                self.uses[shared] += 2
                result.append(shared)
        return result

    def assign(self, name: str, node: Node, force: bool = False) -> None:
        if node.op == "named" and node not in self.names:
            text = self.expr(node.args[0])[0]
        elif node in self.names and not force:
            return
        else:
            text = self.expr(node)[0]
        if text != name:
            self.block.lines.append(f"{name} = {text}")
        self.names.setdefault(node, name)
        self.taken.add(name)

    def bind_dims(self, order: Sequence[Node]) -> None:
        """``n, m = A.shape`` for every dimension the statements use by name."""
        used: set[sympy.Symbol] = set()
        for node in order:
            if node.op in SIZED:
                for attr in node.attrs:
                    for value in attr if isinstance(attr, tuple) else (attr,):
                        used |= sympy.sympify(value).free_symbols
        used = {d for d in used if str(d) not in self.taken}  # bound by an earlier block
        for v in self.inputs:
            dims = [d if isinstance(d, sympy.Symbol) and d in used and d not in v.shape[:i]
                    else None for i, d in enumerate(v.shape)]
            if any(dims):
                targets = ", ".join(str(d) if d is not None else "_" for d in dims)
                comma = "," if len(dims) == 1 else ""
                self.block.lines.append(f"{targets}{comma} = {v.attrs[0]}.shape")
                used -= set(dims)
                self.taken |= {str(d) for d in dims if d is not None}

    def temp_name(self, node: Node) -> str:
        stem = NAMED_TEMPORARIES.get(node.op)
        if stem and len(node.args) == 1 and node.args[0] in self.names:
            return f"{stem}_{self.names[node.args[0]]}"
        return "t"

    def fresh(self, stem: str) -> str:
        if stem != "t" and stem not in self.taken:
            return stem
        k = 1
        while f"{stem}{k}" in self.taken:
            k += 1
        return f"{stem}{k}"

    # -- expressions -----------------------------------------------------------------------

    def arg(self, node: Node, level: int) -> str:
        text, prec = self.expr(node)
        return f"({text})" if prec < level else text

    def expr(self, node: Node) -> tuple[str, int]:
        if node in self.names:
            return self.names[node], ATOM
        method = getattr(self, "e_" + node.op, None)
        if method is not None:
            return method(node)
        return self.function(node)

    def function(self, node: Node) -> tuple[str, int]:
        template = self.dialect.functions[node.op]
        for helper in re.findall(r"\b(_[a-z_]+)\(", template):
            self.use_helper(helper)
        if "math." in template:
            self.block.needs_math = True
        tight = node.op in INLINE_PRODUCTS
        args = [self.arg(a, ATOM if tight else ADD) for a in node.args]
        if node.op == "mse":  # the target is subtracted: `p - (t + b)`, not `p - t + b`
            args[1] = self.arg(node.args[1], ADD + 1)
        key = "k" if node.op == "matrix_power" else "axis"
        if node.attrs and node.attrs[0] == DEFAULT_AXIS.get(node.op, "none"):
            template = template.replace(", axis={axis}", "")
        attrs = node.attrs
        if key == "axis" and attrs:
            attrs = (self.dialect.axis_text(attrs[0], node.args[0].rank),)
        if tight:  # a sole call argument needs no parentheses: `_sigmoid(x + y)`
            n = len(args)
            template = re.sub(r"\(\{(\d)\}\)", lambda m: f"({{{int(m[1]) + n}}})", template)
            args += [self.arg(a, ADD) for a in node.args]
        text = template.format(*args, **dict(zip((key,), attrs, strict=False)))
        return text, MUL if node.op in INLINE_PRODUCTS - {"leaky_relu"} else ATOM

    def e_softmax(self, node: Node) -> tuple[str, int]:
        shared = make("log_softmax", node.args, node.attrs)
        if shared in self.names:
            return f"{self.dialect.module}.exp({self.names[shared]})", ATOM
        return self.function(node)

    def e_delta(self, node: Node) -> tuple[str, int]:
        return f"delta{node.attrs[0]}", ATOM

    def e_var(self, node: Node) -> tuple[str, int]:
        return node.attrs[0], ATOM

    def e_const(self, node: Node) -> tuple[str, int]:
        text = python_scalar(node.attrs[0])
        if node.attrs[0].is_Add:  # `1/100 - 1/(m * n)` is a sum: `x - (…)` needs the parentheses
            return text, ADD
        return text, ATOM if re.fullmatch(r"[\w.]+", text) else MUL

    def e_zeros(self, node: Node) -> tuple[str, int]:
        return f"{self.dialect.module}.zeros({self.shape_text(node.shape)}{self.like_text()})", ATOM

    def e_diag_embedding(self, node: Node) -> tuple[str, int]:
        self.use_helper("_diag_embedding")
        return f"_diag_embedding({python_scalar(node.attrs[0])})", ATOM

    def e_commutation(self, node: Node) -> tuple[str, int]:
        self.use_helper("_commutation")
        rows, cols = (python_scalar(d) for d in node.attrs)
        return f"_commutation({rows}, {cols})", ATOM

    def e_identity(self, node: Node) -> tuple[str, int]:
        n = python_scalar(node.attrs[0])
        return f"{self.dialect.module}.eye({n}{self.like_text()})", ATOM

    def like_text(self) -> str:
        """Keywords giving a new array the dtype (and device) of the inputs."""
        return self.dialect.like.format(self.like) if self.like else ""

    def shape_text(self, shape: tuple) -> str:
        inner = ", ".join(python_scalar(d) for d in shape)
        return f"({inner},)" if len(shape) == 1 else f"({inner})"

    def e_broadcast(self, node: Node) -> tuple[str, int]:
        (x,) = node.args
        target = self.shape_text(node.shape)
        return f"{self.dialect.module}.broadcast_to({self.arg(x, ADD)}, {target})", ATOM

    def e_expand(self, node: Node) -> tuple[str, int]:
        (axis,) = node.attrs
        index = ", ".join("None" if i == axis else ":" for i in range(node.rank))
        return f"{self.arg(node.args[0], ATOM)}[{index}]", ATOM

    def e_transpose(self, node: Node) -> tuple[str, int]:
        return f"{self.arg(node.args[0], ATOM)}.T", ATOM

    def e_matmul(self, node: Node) -> tuple[str, int]:
        a, b = node.args
        vectors = outer_vectors(node)
        if vectors is not None:                 # M (a bᵀ) N = (M a)(Nᵀ b)ᵀ: O(n²), not O(n³)
            left, right = (self.arg(v, ADD) for v in vectors)
            return f"{self.dialect.module}.outer({left}, {right})", ATOM
        if b.op == "broadcast" and b.rank == 1 and not b.args[0].shape and a.rank == 2:
            total = f"{self.arg(a, ATOM)}.sum({self.dialect.axis}=1)"     # M 𝟙: row sums
            c = const_value(b.args[0])
            return (total, ATOM) if c == 1 else (f"{self.arg(b.args[0], UNARY)} * {total}", MUL)
        if a.op == "diag" and a.args[0].rank == 1 and b.rank == 2:   # diag(c) B scales rows
            return f"{self.arg(a.args[0], ATOM)}[:, None] * {self.arg(b, UNARY)}", MUL
        if b.op == "diag" and b.args[0].rank == 1 and a.rank == 2:   # A diag(c) scales columns
            return f"{self.arg(a, MUL)} * {self.arg(b.args[0], UNARY)}", MUL
        return f"{self.arg(a, MUL)} @ {self.arg(b, UNARY)}", MUL

    def e_sum(self, node: Node) -> tuple[str, int]:
        axis, keepdims = node.attrs
        d = self.dialect
        options = ([] if axis is None else [f"{d.axis}={axis}"]) + ([f"{d.keepdims}=True"]
                                                                    if keepdims else [])
        return self.total(*self.expr(node.args[0]), options), ATOM

    def total(self, text: str, precedence: int, options: Sequence[str] = ()) -> str:
        """The sum of an expression's entries: ``np.sum(x, …)`` or ``x.sum(…)``."""
        if self.dialect.methods:
            base = text if precedence >= ATOM else f"({text})"
            return f"{base}.sum({', '.join(options)})"
        return f"{self.dialect.module}.sum({', '.join([text, *options])})"

    def e_softmax_cross_entropy(self, node: Node) -> tuple[str, int]:
        z, y = node.args
        log_softmax = self.expr(make("log_softmax", (z,), (-1,)))[0]
        total = "-" + self.total(f"{self.arg(y, MUL)} * {log_softmax}", MUL)
        if z.rank == 2:
            return f"{total} / {self.arg(z, ATOM)}.shape[0]", MUL
        return total, UNARY

    def use_helper(self, name: str) -> None:
        if name not in self.block.helpers:
            self.block.helpers.append(name)

    def e_add(self, node: Node) -> tuple[str, int]:
        parts: list[str] = []
        for term in self.order.ordered_terms(node):
            coefficient = const_value(term.args[0]) if term.op == "mul" else const_value(term)
            if parts and coefficient is not None and coefficient.is_negative:
                parts.append(" - " + self.term(-term, MUL))
            else:
                parts.append((" + " if parts else "") + self.term(term, ADD + 1 if parts else ADD))
        return "".join(parts), ADD

    def term(self, node: Node, level: int) -> str:
        """A term of a sum: a boolean mask is cast first (`m1 + m2` would be a logical or)."""
        if not is_mask(node):
            return self.arg(node, level)
        return self.arg(node, ATOM) + self.dialect.cast.format(self.arg(mask_argument(node), ATOM))

    def e_mul(self, node: Node) -> tuple[str, int]:
        factors = list(node.args)
        coefficient = sympy.Integer(1)
        if factors[0].op == "const":
            coefficient = const_value(factors.pop(0))
        sign = "-" if coefficient.is_negative else ""
        num, den = sympy.fraction(-coefficient if sign else coefficient)  # abs() gives Abs(1 - 1/n)
        top = [] if num == 1 else [self.scalar_factor(num)]
        bottom = [] if den == 1 else [self.scalar_factor(den)]
        cast = coefficient != 1 and all(is_mask(f) for f in factors)
        for factor in sorted(factors, key=is_mask):  # masks last: `-(x > 0) * g` is an error
            k = const_value(factor.args[1]) if factor.op == "pow" else None
            if k is not None and k.is_negative:
                bottom.append(self.arg(raw_power(factor.args[0], -k), POW))
            elif cast:  # `0.99 * (x > 0)` would be float64 (torch: float32) whatever x is
                x = self.arg(mask_argument(factor), ATOM)
                top.append(f"{self.arg(factor, ATOM)}{self.dialect.cast.format(x)}")
            else:
                top.append(self.arg(factor, MUL if not top else UNARY))
        text = " * ".join(top) or "1"
        if bottom:
            text += " / " + (bottom[0] if len(bottom) == 1 else "(" + " * ".join(bottom) + ")")
        if not sign:
            return text, MUL
        # `-a` is unary; `-a * b` is a product (`x ** -a * b` would mean `(x ** -a) * b`)
        single = not bottom and len(top) == 1 and (
            not factors or self.expr(factors[0])[1] >= UNARY)
        return f"-{text}", UNARY if single else MUL

    def scalar_factor(self, value: sympy.Expr) -> str:
        text = python_scalar(value)
        return text if re.fullmatch(r"[\w.]+", text) else f"({text})"

    def e_pow(self, node: Node) -> tuple[str, int]:
        base, k = node.args
        value = const_value(k)
        if value == sympy.Rational(1, 2):
            return f"{self.dialect.module}.sqrt({self.arg(base, ADD)})", ATOM
        if value is not None and value.is_negative:
            return f"1 / {self.arg(raw_power(base, -value), POW)}", MUL
        return f"{self.arg(base, ATOM)} ** {self.arg(k, UNARY)}", POW


def outer_vectors(node: Node) -> tuple[Node, Node] | None:
    """``(u, v)`` with ``node = u vᵀ`` when ``node`` is a product around an outer product."""
    if node.op == "outer":
        return node.args[0], node.args[1]
    if node.op == "broadcast" and node.rank == 2 and not node.args[0].shape:   # c 𝟙𝟙ᵀ
        return fit(node.args[0], node.shape[:1]), fit(const(1), node.shape[1:])
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


def numpy_block(outputs: Sequence[tuple[str, Node]], inputs: Sequence[Node]) -> Block:
    """Statements computing each ``(name, expression)`` from the arrays ``inputs``."""
    emitter = NumpyEmitter(inputs)
    emitter.emit(outputs)
    return emitter.prune()

