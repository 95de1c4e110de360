"""d2l 3.14: back-propagation through a one-hidden-layer network with an L2-regularised objective.

    z = W1 x,  h = φ(z),  o = W2 h,  L = l(o, y),  s = λ/2 (‖W1‖²_F + ‖W2‖²_F),  J = L + s

d2l's chain rule gives ∂J/∂W2 = ∂L/∂o hᵀ + λ W2: one path through the loss, one through the
penalty. matcalc derives both gradients (φ = ReLU, l = softmax cross-entropy, λ = lam).
Run: python examples/l2_regularised.py
"""

from pathlib import Path

import numpy as np

import matcalc
from matcalc.testing import assert_backward

SOURCE = (Path(__file__).parent / "l2_regularised.mc").read_text()

derivation = matcalc.derive(SOURCE, ["W2", "W1"], steps=True)
print(derivation.text())
# δ1 = ∂J/∂o = ∂L/∂o (∂J/∂L = 1), so this is d2l's ∂L/∂o hᵀ + λ W2:
assert "∂J/∂W2 = δ1 hiddenᵀ + lam W2" in derivation.text()


def d2l_gradients(x, y, W1, W2, lam):
    """d2l's backward pass step by step, in NumPy."""
    z = W1 @ x
    h = np.maximum(z, 0)
    o = W2 @ h
    dJ_do = np.exp(o - o.max()) / np.exp(o - o.max()).sum() - y   # ∂J/∂o = ∂L/∂o
    dJ_dh = W2.T @ dJ_do                                           # prod(∂J/∂o, ∂o/∂h)
    dJ_dz = dJ_dh * (z > 0)                                        # ⊙ φ′(z)
    return {"W2": np.outer(dJ_do, h) + lam * W2,                   # ∂L/∂o hᵀ + λ W2
            "W1": np.outer(dJ_dz, x) + lam * W1}                   # ∂J/∂z xᵀ + λ W1


assert_backward(d2l_gradients, SOURCE, ["W2", "W1"])
print("\nassert_backward: d2l's ∂J/∂W2 = ∂L/∂o hᵀ + λ W2 and ∂J/∂W1 = ∂J/∂z xᵀ + λ W1 "
      "agree with matcalc.")
