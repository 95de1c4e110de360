"""Proofs: checks of matcalc against independent references (torch.autograd), and a fuzzer.

Nothing here is imported by the rest of the package; the submodules need PyTorch.
"""
