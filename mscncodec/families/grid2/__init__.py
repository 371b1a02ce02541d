"""Full-resolution latent grids, learned upsampling and an auto-regressive context model (C3 / Cool-chic shape)."""
