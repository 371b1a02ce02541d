#!/usr/bin/env bash
# Encode Kodak on a lent GPU (issue 28) and decode every stream on the CPU: scripts/gpu_encode_kodak.py under a
# wall-clock budget, with the machine's own python3 (torch, numpy, pillow are there; constriction is not, so its
# wheel travels in .whl/: `make gpu-wheels` here, and the call names ".whl" in carry).
#
#   scripts/gpu_encode_kodak.sh [MINUTES] [extra options of gpu_encode_kodak.py]
#
# Here first: `make gpu-wheels gpu-kodak-data` (the photos travel inside the checkout, shared/kodak, 15 MB: remove
# shared/natural-train if `make gpu-data` left it, the tree must stay under 64 MiB). Results: $OUT/gpu-encode-kodak.json
# and $OUT/gpu-encode-kodak.log. A dry run here: scripts/gpu_encode_kodak.sh 5 --device cpu --limit 1 --efforts fast --steps 2
set -u
MIN=${1:-8}
shift $(( $# > 0 ? 1 : 0 ))
PY=${PY:-python3}
OUT=${OUT:-build/gpu-encode}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
if ls .whl/*.whl >/dev/null 2>&1 && ! $PY -c "import constriction" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1
exec > >(tee -a "$OUT/gpu-encode-kodak.log") 2>&1
command -v nvidia-smi >/dev/null && nvidia-smi -L
$PY -c "import torch, constriction; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" || exit 1
$PY scripts/gpu_encode_kodak.py --minutes "$MIN" --out "$OUT" "$@"
