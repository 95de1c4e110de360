"""examples/transformer.mc written in PyTorch, as a PyTorch user writes it, and matcalc's
generated code checked against it: the loss and every one of the 29 parameter gradients agree
to 1e-9 in float64 (PyTorch computes its gradients by autograd, matcalc by its own derivation).

Run: ``python examples/transformer_torch.py`` (needs torch).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from matcalc import lambdify, parse
from matcalc.language.sizes import concrete_shape

SOURCE = (Path(__file__).parent / "transformer.mc").read_text()
BLOCKS = ((1, "g1", "c1", "g2", "c2", "W11", "b11", "W12", "b12"),
          (2, "g3", "c3", "g4", "c4", "W21", "b21", "W22", "b22"))
"""Each block's index and the names of its LayerNorms' and its MLP's parameters."""


def torch_loss(p: dict, tokens, y, heads: int):
    """The model with nn.functional's embedding, layer_norm, gelu and cross_entropy, the heads
    split with view, a causal mask; ``p`` holds tensors named as in transformer.mc."""
    import torch
    from torch.nn import functional as F  # noqa: N812

    batch, length = tokens.shape
    width = p["E"].shape[1]
    causal = torch.tril(torch.ones(length, length, dtype=torch.bool))

    def attention(x, i):
        def split(w):
            return (x @ w).view(batch, length, heads, -1).transpose(1, 2)
        q, k, v = split(p[f"Wq{i}"]), split(p[f"Wk{i}"]), split(p[f"Wv{i}"])
        scores = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(~causal, -1e9)
        out = (F.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(batch, length, width)
        return out @ p[f"Wo{i}"]

    x = F.embedding(tokens, p["E"]) + p["P"]
    for i, g_a, c_a, g_m, c_m, w_up, b_up, w_down, b_down in BLOCKS:
        x = x + attention(F.layer_norm(x, (width,), p[g_a], p[c_a], eps=1e-5), i)
        hidden = F.gelu(F.layer_norm(x, (width,), p[g_m], p[c_m], eps=1e-5) @ p[w_up] + p[b_up])
        x = x + hidden @ p[w_down] + p[b_down]
    logits = F.layer_norm(x, (width,), p["g5"], p["c5"], eps=1e-5) @ p["U"]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def random_model(sizes: dict[str, int], seed: int = 0, dtype=np.float64) -> dict[str, np.ndarray]:
    """Parameters (gains near 1, weights of scale 0.5), tokens and next-token labels."""
    program = parse(SOURCE)
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, node in program.variables.items():
        shape = concrete_shape(node.shape, sizes)
        if name in ("tokens", "y"):
            arrays[name] = rng.integers(0, sizes["V"], shape)
        else:
            scale = 0.5 if name[0] in "WU" else 0.1 if name[0] == "g" else 1.0
            arrays[name] = ((name[0] == "g") + scale * rng.standard_normal(shape)).astype(dtype)
    return arrays


def parameters(arrays: dict[str, np.ndarray]) -> list[str]:
    return [name for name in arrays if name not in ("tokens", "y")]


def main() -> None:
    try:
        import torch
    except ImportError:
        print("skipped: this example needs torch (pip install 'matcalc[torch]')")
        return

    sizes = {"B": 3, "T": 5, "V": 7, "h": 2, "k": 3}
    arrays = random_model(sizes)
    names = parameters(arrays)
    leaves = {n: torch.tensor(arrays[n], requires_grad=True) for n in names}
    loss = torch_loss(leaves, torch.tensor(arrays["tokens"]), torch.tensor(arrays["y"]),
                      sizes["h"])
    loss.backward()
    value, grads = lambdify(SOURCE, names, sizes={"h": sizes["h"]}).value_and_grad(**arrays)
    worst = max(float(np.max(np.abs(grads[n] - leaves[n].grad.numpy()))) for n in names)
    print(f"loss: matcalc {value:.12f}, PyTorch {loss.item():.12f}")
    print(f"largest gradient difference over {len(names)} parameters: {worst:.1e}")
    assert abs(value - loss.item()) <= 1e-9 and worst <= 1e-9


if __name__ == "__main__":
    main()
