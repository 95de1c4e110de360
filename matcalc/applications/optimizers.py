"""The update rules ``matcalc train`` steps with: SGD, SGD with momentum, and Adam with
decoupled weight decay (AdamW, Loshchilov & Hutter), each as PyTorch defines it; and damped
Newton with the generated Hessian (or Hessian-vector products and conjugate gradients)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

MOMENTUM = 0.9
BETAS = (0.9, 0.999)
EPSILON = 1e-8
DEFAULT_WEIGHT_DECAY = {"sgd": 0.0, "momentum": 0.0, "adam": 0.01, "newton": 0.0}
"""PyTorch's defaults: SGD without decay, AdamW's 0.01."""


@dataclass
class Moments:
    """What an optimizer remembers of one parameter's past gradients."""

    first: np.ndarray | float = 0.0
    second: np.ndarray | float = 0.0


Update = Callable[[np.ndarray, Moments, int], np.ndarray]
"""``(gradient, moments, step) -> direction``: the parameter moves by −lr · direction."""


def sgd(g: np.ndarray, moments: Moments, step: int) -> np.ndarray:
    """θ ← θ − η g."""
    return g


def momentum(g: np.ndarray, moments: Moments, step: int) -> np.ndarray:
    """v ← μ v + g; θ ← θ − η v (PyTorch's form, μ = 0.9)."""
    moments.first = MOMENTUM * moments.first + g
    return moments.first


def adam(g: np.ndarray, moments: Moments, step: int) -> np.ndarray:
    """m ← β₁m + (1 − β₁)g, v ← β₂v + (1 − β₂)g²; θ ← θ − η m̂ / (√v̂ + ε), with the bias
    corrections m̂ = m / (1 − β₁ᵗ), v̂ = v / (1 − β₂ᵗ)."""
    beta1, beta2 = BETAS
    moments.first = beta1 * moments.first + (1 - beta1) * g
    moments.second = beta2 * moments.second + (1 - beta2) * g * g
    corrected = np.sqrt(moments.second / (1 - beta2 ** step)) + EPSILON
    return moments.first / (1 - beta1 ** step) / corrected


UPDATES: dict[str, Update] = {"sgd": sgd, "momentum": momentum, "adam": adam}
OPTIMIZERS = (*UPDATES, "newton")
"""The first-order update rules, and damped Newton (:func:`newton_step`, full batch)."""


@dataclass
class Optimizer:
    """One update rule at learning rate ``lr``; ``decayed`` parameters also shrink by
    η λ θ each step (decoupled weight decay)."""

    kind: str
    lr: float
    weight_decay: float = 0.0
    decayed: frozenset[str] = frozenset()
    moments: dict[str, Moments] = field(default_factory=dict)
    steps: int = 0

    def step(self, params: dict[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        """Move each parameter (in place) against its gradient."""
        self.steps += 1
        for name, grad in grads.items():
            if name in self.decayed and self.weight_decay:
                params[name] *= 1 - self.lr * self.weight_decay
            moments = self.moments.setdefault(name, Moments())
            params[name] -= self.lr * UPDATES[self.kind](grad, moments, self.steps)


def new_optimizer(kind: str, lr: float, weight_decay: float | None = None,
              decayed: Iterable[str] = ()) -> Optimizer:
    """An optimizer, with PyTorch's default weight decay for ``kind`` when none is given."""
    decay = DEFAULT_WEIGHT_DECAY[kind] if weight_decay is None else weight_decay
    return Optimizer(kind, lr, decay, frozenset(decayed))


# ----------------------------------------------------------------------------------------------
# Damped Newton: second-order steps with the generated Hessian, or its products with vectors

FORMED_HESSIAN = 2000
"""One vector parameter of at most this many entries has its Hessian formed and solved; larger
ones, matrices (whose ∂²f/∂vec(W)² has Kronecker factors the size of the data) and several
parameters together are solved by conjugate gradients on Hessian-vector products."""
ARMIJO = 1e-4
"""The fraction of the predicted decrease a step must achieve (Armijo's condition)."""
HALVINGS = 40
ROUNDING = 1e-13
"""A predicted decrease below this fraction of the loss is lost in its rounding: there the full
Newton step is taken if it makes the gradient smaller, and none otherwise."""


@dataclass
class SecondOrder:
    """What a Newton step evaluates, each at parameters given by name: the loss, the loss and
    its gradients, the Hessian (None: not generated) and Hessian-vector products."""

    loss: Callable[[Mapping[str, np.ndarray]], float]
    loss_and_grad: Callable[[Mapping[str, np.ndarray]], tuple[float, dict[str, np.ndarray]]]
    hessian: Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]] | None
    hvp: Callable[[Mapping[str, np.ndarray], Mapping[str, np.ndarray]], dict[str, np.ndarray]]


def newton_step(params: dict[str, np.ndarray], f: SecondOrder) -> tuple[float, float, bool]:
    """One damped Newton step, in place: Δ solving H Δ = ∇f, then θ ← θ − 2⁻ᵏ Δ for the first
    k whose step decreases f by at least ARMIJO of what the model predicts. Returns the loss
    and the gradient norm before the step, and whether a step was taken."""
    loss, grads = f.loss_and_grad(params)
    norm = float(np.sqrt(sum(np.sum(g * g) for g in grads.values())))
    if norm == 0.0:
        return loss, norm, False
    direction = newton_direction(params, grads, f)
    slope = float(sum(np.sum(grads[n] * direction[n]) for n in grads))
    if not slope > 0:                       # not a descent direction: the gradient is one
        direction, slope = grads, norm * norm
    if slope <= ROUNDING * max(1.0, abs(loss)):  # the loss cannot see the step: the gradient can
        trial = {**params, **{n: params[n] - direction[n] for n in direction}}
        _, after = f.loss_and_grad(trial)
        smaller = np.sqrt(sum(np.sum(g * g) for g in after.values())) < norm
        if smaller:
            params.update({n: trial[n] for n in direction})
        return loss, norm, bool(smaller)
    t = 1.0
    for _ in range(HALVINGS):
        trial = {**params, **{n: params[n] - t * direction[n] for n in direction}}
        value = f.loss(trial)
        if value < loss and value <= loss - ARMIJO * t * slope:   # at the optimum: no step
            params.update({n: trial[n] for n in direction})
            return loss, norm, True
        t /= 2
    return loss, norm, False


def newton_direction(params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray],
                     f: SecondOrder) -> dict[str, np.ndarray]:
    """H⁻¹ ∇f: from the formed Hessian of one small parameter (vec stacking columns, as
    matcalc forms it), damped until positive definite; else by conjugate gradients."""
    if len(grads) == 1 and f.hessian is not None:
        ((name, g),) = grads.items()
        if g.size <= FORMED_HESSIAN and np.ndim(g) <= 1:
            h = np.asarray(f.hessian(params)[name], dtype=float).reshape(g.size, g.size)
            step = damped_solve(h, np.ravel(g, order="F"))
            return {name: step.reshape(np.shape(g), order="F")}
    return conjugate_gradients(lambda v: f.hvp(params, v), grads)


def damped_solve(h: np.ndarray, g: np.ndarray) -> np.ndarray:
    """(H + μ I)⁻¹ g for the least μ ≥ 0 (0, then growing from 10⁻⁸ of the largest diagonal
    entry) at which H + μ I has a Cholesky factor: positive definite."""
    scale = max(float(np.max(np.abs(np.diag(h)))), 1e-300)
    mu = 0.0
    while True:
        try:
            factor = np.linalg.cholesky(h + mu * np.eye(len(g)))
            return np.linalg.solve(factor.T, np.linalg.solve(factor, g))
        except np.linalg.LinAlgError:
            mu = max(2 * mu, 1e-8 * scale)


def conjugate_gradients(product: Callable[[dict], dict], g: Mapping[str, np.ndarray]
                        ) -> dict[str, np.ndarray]:
    """An approximate solution of H x = g from products H v (each parameter's array as it
    is), to a relative residual of min(0.1, ‖g‖) (superlinear Newton), stopping early at
    negative curvature."""
    def dot(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> float:
        return float(sum(np.sum(a[n] * b[n]) for n in a))

    x = {n: np.zeros_like(v) for n, v in g.items()}
    r = {n: np.array(v, dtype=float) for n, v in g.items()}
    p = dict(r)
    rr = dot(r, r)
    tolerance = min(0.1, np.sqrt(rr)) ** 2 * rr
    for _ in range(max(sum(v.size for v in g.values()), 1)):
        hp = product(p)
        curvature = dot(p, hp)
        if curvature <= 0:
            return x if dot(x, x) > 0 else dict(g)
        alpha = rr / curvature
        x = {n: x[n] + alpha * p[n] for n in x}
        r = {n: r[n] - alpha * hp[n] for n in r}
        new = dot(r, r)
        if new <= tolerance:
            break
        p = {n: r[n] + new / rr * p[n] for n in p}
        rr = new
    return x
