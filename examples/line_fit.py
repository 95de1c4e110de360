"""The seeds' gradient-descent line fit y = m x + b, with matcalc deriving ∂E/∂m and ∂E/∂b.

The seed fits a line to make_blobs points (random_state=170, stretched by its anisotropic
transformation) by minimising the mean squared error E = (1/N) Σ (yᵢ − (m xᵢ + b))². Its
`step_gradient` sums −xᵢ (yᵢ − (m xᵢ + b)) and −(yᵢ − (m xᵢ + b)): the true partial
derivatives have a factor 2/N in front. Leaving it out is the same as a learning rate N/2 times
larger, so the seed's learning rate 0.0001 is really 0.0001 · N/2 = 0.05 on the true gradient.
Run: python examples/line_fit.py   (needs scikit-learn: pip install 'matcalc[train]')
"""

import importlib.util

import numpy as np

import matcalc
from matcalc.training import load_data

if importlib.util.find_spec("sklearn") is None:
    print("skipped: this example needs scikit-learn (pip install 'matcalc[train]')")
    raise SystemExit(0)
data = load_data("blobs")  # the seed's gen_data(): make_blobs, then the stretch

SOURCE = """
x: [N]; y: [N]; m: []; b: []
E = mean((y - (m * x + b)) ** 2)
"""
print(matcalc.derive(SOURCE, ["m", "b"]).text())

x, y = data.inputs[:, 0], data.targets[:, 0]
N = len(x)


def seed_step(b, m, learning_rate):
    """The seed's step_gradient, its loop over points written as sums: no 2/N."""
    m_gradient = np.sum(-x * (y - (m * x + b)))
    b_gradient = np.sum(-(y - (m * x + b)))
    return b - learning_rate * b_gradient, m - learning_rate * m_gradient


E_and_grad = matcalc.lambdify(SOURCE, ["m", "b"]).value_and_grad


def matcalc_step(b, m, learning_rate):
    """One gradient-descent step with the gradient matcalc derived and generated."""
    _, grad = E_and_grad(x=x, y=y, m=m, b=b)
    return b - learning_rate * grad["b"], m - learning_rate * grad["m"]


# The two gradients differ by exactly the factor 2/N.
_, grad = E_and_grad(x=x, y=y, m=0.5, b=-1.0)
seed_b, seed_m = seed_step(-1.0, 0.5, 1.0)
assert np.allclose([-1.0 - seed_b, 0.5 - seed_m], [N / 2 * grad["b"], N / 2 * grad["m"]])
print(f"\nAt m = 0.5, b = −1: matcalc's ∂E/∂m = {grad['m']:.6f}, the seed's sum = "
      f"{0.5 - seed_m:.4f} = (N/2) ∂E/∂m with N = {N}.")

seed, ours = (0.0, 0.0), (0.0, 0.0)
for _ in range(1000):
    seed = seed_step(*seed, learning_rate=0.0001)
    ours = matcalc_step(*ours, learning_rate=0.0001 * N / 2)
error = E_and_grad(x=x, y=y, m=ours[1], b=ours[0])[0]
print("After 1000 steps:")
print(f"  the seed (lr 0.0001): b = {seed[0]:.6f}, m = {seed[1]:.6f}")
print(f"  matcalc (lr 0.05):    b = {ours[0]:.6f}, m = {ours[1]:.6f}, E = {error:.6f}")
assert np.allclose(seed, ours)
# The seed printed: b = -3.2643663545390273, m = -1.3386872077957057, error = 0.11444715957515363
assert np.allclose(ours, (-3.2643663545390273, -1.3386872077957057))

best_m, best_b = np.polyfit(x, y, 1)
best_error = np.mean((y - (best_m * x + best_b)) ** 2)
print(f"  least squares:        b = {best_b:.6f}, m = {best_m:.6f}, E = {best_error:.6f} "
      "(gradient descent has not quite converged)")
