"""Latent grids + a small synthesis network, a checkerboard context model (the first grid family)."""
