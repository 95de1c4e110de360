"""The CS224n-style one-layer network: all five gradients, in the notes' δ1/δ2 notation.

    z = W x + b1,  h = ReLU(z),  θ = U h + b2,  ŷ = softmax(θ),  J = CE(y, ŷ)

The notes define two error signals, δ1 = ∂J/∂θ and δ2 = ∂J/∂z, and write them as row vectors
(numerator layout), so their gradients carry transposes: ∂J/∂U = δ1ᵀ hᵀ. matcalc uses
gradient layout (each gradient shaped like its variable, column vectors), where the same
results read ∂J/∂U = δ1 hᵀ. It also names ∂J/∂h, so the notes' δ2 is matcalc's δ3.
(The notes' ∂J/∂W = ∂J/∂θ ∂z/∂W has a slip: the first factor is ∂J/∂z = δ2, as the next
step of the notes uses.)
Run: python examples/one_layer_network.py
"""

from pathlib import Path

import numpy as np

import matcalc
from matcalc.testing import assert_backward

SOURCE = (Path(__file__).parent / "one_layer.mc").read_text()
WRT = ["U", "b2", "W", "b1", "x"]

derivation = matcalc.derive(SOURCE, WRT, steps=True)
print(derivation.text())
print("\nIn the notes' notation: δ1 = ∂J/∂θ = ŷ − y (identity 7), "
      "δ2 = ∂J/∂z = (Uᵀ δ1) ⊙ 1[z > 0] (identities 1 and 4): matcalc's δ1 and δ3.")

for line in ("δ1 = ∂J/∂theta = softmax(theta) − y", "δ3 = ∂J/∂z = δ2 ⊙ 1[z > 0]",
             "∂J/∂U = δ1 hᵀ", "∂J/∂W = δ3 xᵀ", "∂J/∂x = Wᵀ δ3"):
    assert line in derivation.text(), line


def notes_gradients(x, y, W, b1, U, b2):
    """The notes' five results, with their row vectors turned into NumPy 1-D arrays."""
    z = W @ x + b1
    h = np.maximum(z, 0)
    theta = U @ h + b2
    y_hat = np.exp(theta - theta.max()) / np.exp(theta - theta.max()).sum()
    delta1 = y_hat - y                     # (7) cross-entropy wrt logits
    delta2 = (delta1 @ U) * np.sign(h)     # δ1 U ∘ sgn(h): (1) then (4), ReLU′(z) = sgn(h)
    return {
        "U": np.outer(delta1, h),          # δ1ᵀ hᵀ: (5), an outer product
        "b2": delta1,                      # δ1ᵀ
        "W": np.outer(delta2, x),          # δ2ᵀ xᵀ: (5)
        "b1": delta2,                      # δ2ᵀ
        "x": W.T @ delta2,                 # (δ2ᵀ W)ᵀ: (1), transposed
    }


# The check: the notes' formulas (translated to NumPy) against matcalc's, on random inputs.
assert_backward(notes_gradients, SOURCE, WRT)
print("assert_backward: the notes' ∂J/∂U, ∂J/∂b2, ∂J/∂W, ∂J/∂b1 and ∂J/∂x agree with matcalc.")
