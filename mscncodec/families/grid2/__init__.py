"""Full-resolution latent grids, learned upsampling and an auto-regressive context model (C3 / Cool-chic shape).

``levels`` (7) one-channel latent grids from full resolution down to 1/64 are upsampled by learned separable
filters and turned into RGB by a small per-pixel synthesis; an auto-regressive context model (ARM) gives each
latent a Laplace mean and scale from its causal neighbours and the coarser grid, and drives the range coder.
Latents are coded in symbol units: integer symbols times a global step tied to lambda
(``coding.latents.step_for``), so one model covers every rate. A meta-learned start (the decoder theta0 and an
amortised analysis network) is what a model file holds; the encoder refines each file's latents.

The parts (Cool-chic's ``component/core`` and CompressAI's ``latent_codecs`` shape):

==================  ====================================================================================
``config.py``       ``Grid2Config`` (hashed into the model id), the coder's constants, the seeded init
``context.py``      the grids' geometry: the ARM's context offsets, the wavefront order, their gathers
                    (number of axes and per-axis boundary rule as parameters; grid2 is 2-D, clamped)
``upsampling.py``   the learned 2x steps
``synthesis.py``    upsampled latents -> RGB
``arm.py``          the ARM: the float twin (training, refinement) and the exact fixed-point one (coding)
``latent_codec.py`` ``LatentCodec``: the ARM of one file's decoder at its lambda, its estimated bits and the
                    wavefront range coder (compress / decompress)
``quantizer.py``    soft rounding, straight-through rounding, symbol units, the dead-zone quantiser
``network.py``      the encoder-side analysis network
``refine.py``       the encode-time refinement, its schedule as data (``PRESETS``, one per effort)
``rate_control.py`` lambda aims and the size fit on real bytes
``update.py``       the per-file decoder update of ``+dense`` / ``+scratch``
``frame.py``        one image's passes, whole or tile by tile (``tiles.py``)
``encoder.py``      encode: the parts in order; ``decoder.py``: decode and ``mscn info``
``model.py``        ``Grid2Model`` (a weights file); ``train.py``: the meta-training
==================  ====================================================================================
"""
