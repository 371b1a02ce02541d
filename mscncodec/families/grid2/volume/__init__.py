"""grid3: grid2's latent grids in three dimensions (meshes as truncated SDFs, voxel occupancy, field time series).

The dimension-agnostic parts are grid2's (``context.Geometry``, the exact ARM and its wavefront coder
``latent_codec.LatentCodec``, the float ARM, soft rounding); what is 3-D is here: the context's offsets, the
synthesis that reads the latent pyramid at any point of the volume (trilinear), the encoder's fit from zero
latents (C3's refinement, no analysis network), rate control on real bytes and the shared-decoder trainer.
It is registered as its own family (``grid3``) because its model files and streams are not grid2's.
"""
