"""The forum's PReLU with a matrix slope `a`: is the poster's backward pass right?

The poster's module (PyTorch):

    def forward(self, inp):
        return inp.clamp_min(0.) + inp.clamp_max(0.) @ self.a
    def bwd(self, out, inp):
        inp.g = (inp > 0).float() * out.g + out.g @ self.a.t() * (inp < 0).float()
        self.a.g = ((inp <= 0).float() * inp).t() @ out.g

`clamp_min(0)` is relu(X) and `clamp_max(0)` is min(X, 0) = −relu(−X), so the layer is
relu(X) − relu(−X) a. A layer's backward receives `out.g` (here G) and must return
∂f/∂X and ∂f/∂a for f = sum(G ⊙ out): that is what matcalc derives below.
Run: python examples/prelu.py
"""

import numpy as np

import matcalc
from matcalc.testing import assert_backward

SOURCE = """
X: [N, n]; a: [n, n]
G: [N, n]                      # out.g: the gradient arriving from the next layer
out = relu(X) - relu(-X) @ a
f = sum(G * out)               # ∂f/∂X and ∂f/∂a are what bwd must compute
"""

derivation = matcalc.derive(SOURCE, ["X", "a"])
print("matcalc's backward pass for out = relu(X) − relu(−X) a:")
print(derivation.text())


def poster_bwd(X, a, G):
    """The poster's bwd in NumPy: (inp > 0).float() is (X > 0), .t() is .T."""
    inp_g = (X > 0) * G + G @ a.T * (X < 0)
    a_g = ((X <= 0) * X).T @ G
    return {"X": inp_g, "a": a_g}


# Read the two side by side:
#   inp.g: G ⊙ 1[X > 0] + (G aᵀ) ⊙ 1[X < 0]   (Python evaluates `G @ a.T * m` left to right,
#          so it is (G @ a.T) * m: the transpose and the order are right);
#   a.g:   ((X ≤ 0) ⊙ X)ᵀ G = min(X, 0)ᵀ G = −relu(−X)ᵀ G.
assert_backward(poster_bwd, SOURCE, ["X", "a"])
print("\nassert_backward: the poster's bwd equals the derived gradients, for X and for a. "
      "The formula is right.")


# What a wrong backward looks like: forget the transpose on `a` (a common slip) and the
# check fails on the first random draw, naming the variable.
def slipped_bwd(X, a, G):
    return {"X": (X > 0) * G + G @ a * (X < 0), "a": poster_bwd(X, a, G)["a"]}


try:
    assert_backward(slipped_bwd, SOURCE, ["X", "a"])
except AssertionError as failure:
    print(f"For contrast, `out.g @ self.a` without .t() fails: {failure}")
else:
    raise SystemExit("assert_backward should have rejected the slipped backward")

# At X = 0 exactly relu has no derivative; the poster and matcalc's generated code both use 0.
at_zero = {"X": np.zeros((2, 2)), "a": np.eye(2), "G": np.ones((2, 2))}
generated = matcalc.lambdify(SOURCE, ["X", "a"]).value_and_grad(**at_zero)[1]
assert np.array_equal(generated["X"], poster_bwd(**at_zero)["X"])
print("At X = 0 both give ∂f/∂X = 0.")
