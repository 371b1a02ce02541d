"""Coding shared by the families: quantisation, entropy models, gates, the sparse-update coder, latent tables."""
