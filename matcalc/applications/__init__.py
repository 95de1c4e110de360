"""Applications: initialisation variances from Gaussian moments, training with the
generated code, and figures."""
