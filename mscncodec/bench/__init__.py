"""Rate-distortion benchmarking for mscn against classical and INR codecs.

Layout (each module is small and can be used on its own):

* :mod:`.base`    -- the ``Codec`` interface (encode at a target bpp, decode, availability).
* :mod:`.classic` -- JPEG, WebP, AVIF, JPEG 2000 (Pillow), HEIC (pillow-heif), JPEG XL (cjxl).
* :mod:`.inr`     -- mscn (one codec per shipped model) and the COIN-style baseline.
* :mod:`.codecs`  -- the registry of ``--codecs`` ids; re-exports all codec classes.
* :mod:`.metrics` -- PSNR, MS-SSIM and bpp, computed the same way for every codec.
* :mod:`.bd`      -- Bjontegaard delta rate / delta PSNR.
* :mod:`.runner`  -- the (image x codec x target-bpp) loop with a resumable cache.
* :mod:`.report`  -- aggregation into CompressAI-style JSON, CSV and BD tables.
* :mod:`.plot`    -- the rate-distortion figure with published anchors.
* :mod:`.cli`     -- the ``mscn bench`` click command.

Nothing here imports the codec core at import time, so the benchmark keeps
working (with mscn codecs reported as unavailable) while the core is broken.
"""
