"""Rate-distortion benchmarking for mscn against classical and INR codecs.

Layout (each module is small and can be used on its own):

* :mod:`.base`    -- the ``Codec`` interface (encode at a target bpp, decode, availability), the one
  cache-key scheme every bench codec shares (``Keyed``: a codec's declared version and config), the
  one-line ``BenchError`` and the lazy import of the ``bench`` extra's libraries.
* :mod:`.classic` -- JPEG, WebP, AVIF, JPEG 2000 (Pillow), HEIC (pillow-heif), JPEG XL (cjxl).
* :mod:`.inr`     -- mscn (one codec per shipped model, or a family's routed model) and the COIN-style baseline.
* :mod:`.codecs`  -- the registry of ``--codecs`` ids; re-exports all codec classes.
* :mod:`.metrics` -- PSNR, MS-SSIM and bpp, computed the same way for every codec.
* :mod:`.bd`      -- Bjontegaard delta rate / delta PSNR.
* :mod:`.cache`   -- ``OUT/cache.jsonl`` (seeded from ``cache.jsonl.gz``), shared by every bench.
* :mod:`.result`  -- ``ImageRef`` and ``BenchResult``, shared by the runner and the report.
* :mod:`.runner`  -- the (image x codec x target-bpp) loop with a resumable cache.
* :mod:`.report`  -- aggregation into CompressAI-style JSON, CSV and BD tables.
* :mod:`.plot`, :mod:`.crops` -- the rate-distortion figure with published anchors; the crops picture.
* :mod:`.html`    -- ``report.html``: curves, BD tables and an A/B crop viewer on one self-contained page.
* :mod:`.estimate` -- the run's time, said before it starts.
* :mod:`.mesh`, :mod:`.fields` -- the mesh and global-field benches.
* :mod:`.cli`     -- the ``mscn bench`` click command.

Nothing here imports the codec core at import time, so the benchmark keeps
working (with mscn codecs reported as unavailable) while the core is broken;
matplotlib and pytorch_msssim (the ``bench`` extra) are imported when used.
"""
