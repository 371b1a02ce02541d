#!/usr/bin/env bash
# Meta-train grid2 starts on a lent GPU for a wall-clock budget, several recipes at once on one card
# (each run is launch-bound: one process leaves most of an H200 idle), and pack each run for the trip back.
#
#   scripts/gpu_train_grid2.sh MINUTES [DEVICE]       (DEVICE: cuda; cpu for a dry run here)
#
# Runs with the machine's own python3 (torch is there; nothing can be installed: training imports neither
# constriction nor trimesh) from the repository root. Data: shared/natural-train (../shared does not travel;
# `make gpu-data` copies what fits). Every recipe first takes two steps, so a broken one fails in seconds,
# not after the budget. Results: $OUT/NAME.tgz (NAME.pt, NAME.md, NAME.run/) and $OUT/gpu.log.
set -u
MIN=${1:?minutes}
DEV=${2:-cuda}
PY=${PY:-python3}
DATA=${DATA:-shared/natural-train}
OUT=${OUT:-build/gpu-out}
WORK=${WORK:-build/gpu}
THREADS=${THREADS:-4}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$WORK" && OUT=$(cd "$OUT" && pwd)
exec > >(tee -a "$OUT/gpu.log") 2>&1
command -v nvidia-smi >/dev/null && nvidia-smi -L
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
echo "data: $(find "$DATA" -type f | wc -l) files, $(du -sh "$DATA" | cut -f1)"

# NAME and its options (beside --data/--out/--device/--threads). A recipe whose models/NAME.run/checkpoint.pt is
# committed resumes it (a warm restart: the cosine starts again from --lr over the budget).
# 2026-11-30's four recipes and what came of them: benchmarks/grid2-gpu/README.md.
RECIPES=(
  "grid2-l7-c256|--patch 256 --batch 32 --log2-lam -13,-1 --lr 1e-3"
  "grid2-c256-lam3|--patch 256 --batch 32 --log2-lam -13,-3"
)
train() {  # NAME OUTDIR extra...
  local name=$1 dir=$2; shift 2
  $PY -m mscncodec.cli train image --arch grid2 --data "$DATA" --out "$dir/$name" --device "$DEV" \
      --threads "$THREADS" --no-progress "$@"
}
for r in "${RECIPES[@]}"; do
  name=${r%%|*}; opts=${r#*|}
  # shellcheck disable=SC2086
  if ! train "$name" "$WORK/smoke" $opts --steps 2 --val-every 1 > "$WORK/smoke-$name.log" 2>&1; then
    echo "SMOKE FAILED: $name"; cat "$WORK/smoke-$name.log"; exit 1
  fi
  echo "smoke ok: $name"
done
pids=()
for r in "${RECIPES[@]}"; do
  name=${r%%|*}; opts=${r#*|}
  resume=()
  if [ -f "models/$name.run/checkpoint.pt" ]; then
    rm -rf "$WORK/$name.run" && cp -r "models/$name.run" "$WORK/$name.run" && resume=(--resume)
  fi
  # shellcheck disable=SC2086
  train "$name" "$WORK" $opts --steps 1000000 --minutes "$MIN" "${resume[@]}" > "$WORK/$name.out" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || echo "a run exited with $?"; done
for r in "${RECIPES[@]}"; do
  name=${r%%|*}
  tail -3 "$WORK/$name.out"; tail -2 "$WORK/$name.run/train.log" 2>/dev/null
  (cd "$WORK" && tar czf "$OUT/$name.tgz" $(ls -d "$name.pt" "$name.md" "$name.run" 2>/dev/null) "$name.out")
done
ls -la "$OUT"
