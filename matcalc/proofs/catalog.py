"""Classic matrix-calculus identities as claims, for ``matcalc verify --catalog``.

Gradients are in gradient layout (shaped like the variable); Jacobians are in numerator layout
(rows follow the function), as the seeds write them. References are the Matrix Cookbook
(Petersen & Pedersen, 2012) where the equation number is certain, otherwise the identity's name.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Identity:
    """A named identity: a program with one claim."""

    name: str
    reference: str
    source: str

    @property
    def claim(self) -> str:
        """The claim line as written."""
        return next(line for line in self.source.splitlines() if line.startswith("claim"))


CATALOG = [
    Identity("linear map", "seed identity (1): z = W x, ∂z/∂x = W",
             "x: [n]; W: [m, n]\nz = W @ x\nclaim jacobian(z, x) = W"),
    Identity("row vector times matrix", "seed identity (2): z = x W, ∂z/∂x = Wᵀ",
             "x: [n]; W: [n, m]\nz = x @ W\nclaim jacobian(z, x) = W.T"),
    Identity("identity map", "seed identity (3): z = x, ∂z/∂x = I",
             "x: [n]\nz = x\nclaim jacobian(z, x) = eye(n)"),
    Identity("elementwise function", "seed identity (4): ∂f(x)/∂x = diag(f′(x)), here tanh",
             "x: [n]\nz = tanh(x)\nclaim jacobian(z, x) = diag(1 - tanh(x) ** 2)"),
    Identity("weights of z = W x", "seed identity (5): ∂J/∂W = δ xᵀ with δ = ∂J/∂z",
             "x: [n]; W: [m, n]; delta: [m]\nz = W @ x\nJ = delta @ z\n"
             "claim grad(J, W) = outer(delta, x)"),
    Identity("weights of z = x W", "seed identity (6): ∂J/∂W = xᵀ δ with δ = ∂J/∂z",
             "x: [n]; W: [n, m]; delta: [m]\nz = x @ W\nJ = z @ delta\n"
             "claim grad(J, W) = outer(x, delta)"),
    Identity("softmax cross-entropy", "seed identity (7): ∂L/∂z = ŷ − y (targets summing to 1)",
             "z: [C]; y: [C] onehot\nL = softmax_cross_entropy(z, y)\n"
             "claim grad(L, z) = softmax(z) - y"),
    Identity("linear form", "Matrix Cookbook (69): ∂aᵀx/∂x = a",
             "x: [n]; a: [n]\nf = a @ x\nclaim grad(f, x) = a"),
    Identity("bilinear form", "Matrix Cookbook (70): ∂aᵀXb/∂X = a bᵀ",
             "a: [m]; X: [m, n]; b: [n]\nf = a @ X @ b\nclaim grad(f, X) = outer(a, b)"),
    Identity("quadratic form", "Matrix Cookbook (81): ∂xᵀAx/∂x = (A + Aᵀ) x",
             "x: [n]; A: [n, n]\nf = x @ A @ x\nclaim grad(f, x) = (A + A.T) @ x"),
    Identity("trace", "trace derivatives: ∂tr(X)/∂X = I",
             "X: [n, n]\nf = trace(X)\nclaim grad(f, X) = eye(n)"),
    Identity("trace of a product", "trace derivatives: ∂tr(AX)/∂X = Aᵀ",
             "A: [n, m]; X: [m, n]\nf = trace(A @ X)\nclaim grad(f, X) = A.T"),
    Identity("trace of a sandwich", "trace derivatives: ∂tr(AXB)/∂X = Aᵀ Bᵀ",
             "A: [p, m]; X: [m, n]; B: [n, p]\nf = trace(A @ X @ B)\n"
             "claim grad(f, X) = A.T @ B.T"),
    Identity("trace of a quadratic form", "trace derivatives: ∂tr(XᵀAX)/∂X = (A + Aᵀ) X",
             "X: [n, m]; A: [n, n]\nf = trace(X.T @ A @ X)\nclaim grad(f, X) = (A + A.T) @ X"),
    Identity("determinant", "Matrix Cookbook (49): ∂det(X)/∂X = det(X) X⁻ᵀ",
             "X: [n, n]\nf = det(X)\nclaim grad(f, X) = det(X) * inv(X).T"),
    Identity("log-determinant", "Matrix Cookbook (57): ∂ln|det X|/∂X = X⁻ᵀ",
             "X: [n, n]\nf = logdet(X)\nclaim grad(f, X) = inv(X).T"),
    Identity("inverse inside a trace", "inverse derivatives: ∂tr(AX⁻¹)/∂X = −X⁻ᵀ Aᵀ X⁻ᵀ",
             "A: [n, n]; X: [n, n]\nf = trace(A @ inv(X))\n"
             "claim grad(f, X) = -inv(X).T @ A.T @ inv(X).T"),
    Identity("inverse in a bilinear form", "Matrix Cookbook (61): ∂aᵀX⁻¹b/∂X = −X⁻ᵀ a bᵀ X⁻ᵀ, "
             "by solves", "a: [n]; X: [n, n]; b: [n]\nf = a @ solve(X, b)\n"
             "claim grad(f, X) = -outer(solve(X.T, a), solve(X, b))"),
    Identity("trace of a Kronecker product", "Kronecker products: tr(A ⊗ B) = tr A tr B, so "
             "∂/∂A = tr(B) I", "A: [n, n]; B: [m, m]\nf = trace(kron(A, B))\n"
             "claim grad(f, A) = trace(B) * eye(n)"),
    Identity("squared Frobenius norm", "Frobenius norm: ∂‖X‖²_F/∂X = 2X",
             'X: [n, m]\nf = norm(X, "fro") ** 2\nclaim grad(f, X) = 2 * X'),
    Identity("product of entries", "∂∏ⱼxⱼ/∂xᵢ = ∏_{j≠i} xⱼ = ∏ⱼxⱼ / xᵢ (x without zeros)",
             "x: [n]\nf = prod(x)\nclaim grad(f, x) = prod(x) / x"),
    Identity("Euclidean distance", "norm derivatives: ∂‖x − a‖/∂x = (x − a) / ‖x − a‖",
             "x: [n]; a: [n]\nf = norm(x - a)\nclaim grad(f, x) = (x - a) / norm(x - a)"),
    Identity("least squares", "least squares: ∂‖Ax − b‖²/∂x = 2 Aᵀ(Ax − b)",
             "A: [m, n]; x: [n]; b: [m]\nf = sum((A @ x - b) ** 2)\n"
             "claim grad(f, x) = 2 * A.T @ (A @ x - b)"),
    Identity("mean squared error", "mean squared error: ∂mse(p, t)/∂p = 2 (p − t) / n",
             "p: [n]; t: [n]\nL = mse(p, t)\nclaim grad(L, p) = 2 * (p - t) / n"),
    Identity("softmax Jacobian", "softmax: ∂s/∂z = diag(s) − s sᵀ",
             "z: [n]\ns = softmax(z)\nclaim jacobian(s, z) = diag(s) - outer(s, s)"),
    Identity("log-sum-exp", "log-sum-exp: ∇ logsumexp(z) = softmax(z)",
             "z: [n]\nf = logsumexp(z)\nclaim grad(f, z) = softmax(z)"),
    Identity("sigmoid derivative", "logistic function: σ′ = σ (1 − σ)",
             "x: []\ns = sigmoid(x)\nclaim grad(s, x) = s * (1 - s)"),
    Identity("logistic regression gradient", "logistic regression: ∇L = Xᵀ(σ(Xw) − y)",
             "X: [N, d]; y: [N]; w: [d]\nz = X @ w\nL = sum(softplus(z) - y * z)\n"
             "claim grad(L, w) = X.T @ (sigmoid(z) - y)"),
    Identity("logistic regression Hessian",
             "logistic regression: ∇²L = Xᵀ diag(σ(Xw) ⊙ (1 − σ(Xw))) X",
             "X: [N, d]; y: [N]; w: [d]\nz = X @ w\nL = sum(softplus(z) - y * z)\n"
             "claim hessian(L, w) = X.T @ diag(sigmoid(z) * (1 - sigmoid(z))) @ X"),
    Identity("batched layer weights", "backpropagation: Z = X W + b, ∂J/∂W = Xᵀ G, G = ∂J/∂Z",
             "X: [N, D]; W: [D, H]; b: [H]; G: [N, H]\nZ = X @ W + b\nJ = sum(G * Z)\n"
             "claim grad(J, W) = X.T @ G"),
    Identity("batched layer bias", "backpropagation: Z = X W + b, ∂J/∂b = Σ rows of G",
             "X: [N, D]; W: [D, H]; b: [H]; G: [N, H]\nZ = X @ W + b\nJ = sum(G * Z)\n"
             "claim grad(J, b) = sum(G, axis=0)"),
    Identity("MLP weight gradient",
             "backpropagation through ReLU: ∂L/∂W1 = ((W2ᵀ(ŷ − y)) ⊙ 1[z1 > 0]) xᵀ",
             "x: [D]; y: [C] onehot; W1: [H, D]; W2: [C, H]\nz1 = W1 @ x\nh = relu(z1)\n"
             "z2 = W2 @ h\nL = softmax_cross_entropy(z2, y)\n"
             "claim grad(L, W1) = outer((W2.T @ (softmax(z2) - y)) * step(z1), x)"),
]
"""The built-in identities, in the order ``--catalog`` runs them."""
