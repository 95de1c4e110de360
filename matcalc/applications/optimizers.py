"""The update rules ``matcalc train`` steps with: SGD, SGD with momentum, and Adam with
decoupled weight decay (AdamW, Loshchilov & Hutter), each as PyTorch defines it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

MOMENTUM = 0.9
BETAS = (0.9, 0.999)
EPSILON = 1e-8
DEFAULT_WEIGHT_DECAY = {"sgd": 0.0, "momentum": 0.0, "adam": 0.01}
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
OPTIMIZERS = tuple(UPDATES)


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
