"""fastai lesson 8: where does `out.g` come from? Linear -> ReLU -> Linear -> MSE, by matcalc.

The notebook writes the backward pass by hand (`mse_grad`, `lin_grad`, `relu_grad`), each
setting `.g` on its input. matcalc derives the same pass: every `.g` is an error signal δ.
Run: python examples/lesson8_backprop.py
"""

from pathlib import Path

import numpy as np

import matcalc
from matcalc.testing import assert_backward

SOURCE = (Path(__file__).parent / "lin_relu_mse.mc").read_text()

# 1. The derivation, step by step. δ1 = ∂loss/∂out is the notebook's `out.g`,
#    δ2 = ∂loss/∂l2 is `l2.g`, δ3 = ∂loss/∂l1 is `l1.g`.
derivation = matcalc.derive(SOURCE, ["inp", "w1", "b1", "w2", "b2"], steps=True)
print(derivation.text())
assert "δ1 = ∂loss/∂out = 2 (out − targ) / N" in derivation.text()


# 2. The notebook's hand-written backward pass, translated from PyTorch to NumPy. NumPy arrays
#    cannot carry a `.g` attribute, so each function returns the gradient it would have set.
def mse_grad(inp, targ):
    """inp.g = 2. * (inp.squeeze() - targ).unsqueeze(-1) / inp.shape[0]"""
    return 2.0 * (inp.squeeze(-1) - targ)[:, None] / inp.shape[0]


def relu_grad(inp, out_g):
    """inp.g = (inp > 0).float() * out.g"""
    return (inp > 0) * out_g


def lin_grad(inp, out_g, w):
    """inp.g = out.g @ w.t(); w.g = (inp.unsqueeze(-1) * out.g.unsqueeze(1)).sum(0);
    b.g = out.g.sum(0)"""
    return out_g @ w.T, (inp[:, :, None] * out_g[:, None, :]).sum(0), out_g.sum(0)


def forward_and_backward(inp, targ, w1, b1, w2, b2):
    """The notebook's forward pass, then its backward pass in reverse order."""
    l1 = inp @ w1 + b1
    l2 = np.maximum(l1, 0)
    out = l2 @ w2 + b2
    out_g = mse_grad(out, targ[:, 0])  # the notebook's targ is a vector: targ[:, 0]
    l2_g, w2_g, b2_g = lin_grad(l2, out_g, w2)
    l1_g = relu_grad(l1, l2_g)
    inp_g, w1_g, b1_g = lin_grad(inp, l1_g, w1)
    return {"inp": inp_g, "w1": w1_g, "b1": b1_g, "w2": w2_g, "b2": b2_g}


# 3. The check: on random inputs of several sizes, the hand-written gradients must equal the
#    derived ones (assert_backward raises AssertionError otherwise).
assert_backward(forward_and_backward, SOURCE, ["inp", "w1", "b1", "w2", "b2"])
print("\nassert_backward: the notebook's mse_grad, relu_grad and lin_grad agree with matcalc "
      "for inp, w1, b1, w2, b2.")

# The `sum(0)` of lin_grad is the same matrix product matcalc prints: w1.g = inpᵀ δ3.
rng = np.random.default_rng(0)
inp, l1_g = rng.normal(size=(5, 3)), rng.normal(size=(5, 4))
assert np.allclose(lin_grad(inp, l1_g, np.zeros((3, 4)))[1], inp.T @ l1_g)
print("(inp.unsqueeze(-1) * out.g.unsqueeze(1)).sum(0) is inpᵀ out.g: one outer product per "
      "row, summed.")
