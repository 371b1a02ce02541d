# mscn: `make demo` sets everything up (.venv + package) and runs the codec on the bundled example;
# `make test` runs the test suite (what .ci/run calls).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= build
BPP    ?= 0.5

.PHONY: install demo test test-all bench bench-grid2 bench-grid2-max train-grid2 gpu-train-grid2 gpu-data gpu-encode-kodak gpu-wheels gpu-kodak-data train-mesh bench-meshes train-sphere bench-fields clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,bench,zarr]'
	touch $(STAMP)

demo: install
	@mkdir -p $(OUT)
	$(BIN)/mscn encode examples/example.png -o $(OUT)/example.mscn --bpp $(BPP) --force
	$(BIN)/mscn info $(OUT)/example.mscn
	$(BIN)/mscn decode $(OUT)/example.mscn -o $(OUT)/example.decoded.png --force --verbose
	$(BIN)/mscn encode examples/shape.obj -o $(OUT)/shape.mscn --bytes 4000 --force
	$(BIN)/mscn info $(OUT)/shape.mscn
	$(BIN)/mscn decode $(OUT)/shape.mscn -o $(OUT)/shape.decoded.ply --force --verbose
	$(BIN)/mscn encode examples/field.nc -o $(OUT)/field.mscn --bytes 2000 --force
	$(BIN)/mscn info $(OUT)/field.mscn
	$(BIN)/mscn decode $(OUT)/field.mscn -o $(OUT)/field.decoded.nc --force --verbose
	$(BIN)/mscn decode $(OUT)/field.mscn -o $(OUT)/field.quarter-degree.nc --grid 0.25 --force --verbose

test: install
	$(BIN)/python -m pytest -q

test-all: install
	$(BIN)/python -m pytest -q -m ''

bench: install
	$(BIN)/mscn bench ../shared/data/kodak --out results/kodak --codecs jpeg,jpeg444,webp,jpeg2000,avif,heic,jxl,mscn:siren@fast,mscn:grid@fast,mscn:grid --report-only mscn:grid@fast,mscn:grid --points 0.1,0.2,0.3,0.5,0.75,1.0 --inr-points 0.25,0.5,1.0 --jobs 2

# grid2 on Kodak at two efforts beside the committed points (results/kodak/cache.jsonl, committed as cache.jsonl.gz):
# the classical codecs are cached, the old siren/grid rows are reported from the cache only (measured at 0.25, 0.5, 1.0 bpp)
OLD_INR = mscn:siren@fast,mscn:grid@fast,mscn:grid
bench-grid2: install
	$(BIN)/mscn bench ../shared/data/kodak --out results/kodak --codecs jpeg,jpeg444,webp,jpeg2000,avif,heic,jxl,$(OLD_INR),mscn:grid2@fast,mscn:grid2 --report-only $(OLD_INR) --points 0.1,0.2,0.3,0.5,0.75,1.0 --inr-points 0.1,0.25,0.5,0.75,1.0 --jobs 2

# grid2 at `max` effort (its route: the per-file dense decoder update, 400 steps) on a Kodak subset beside fast,
# default and the classical codecs; raise MAX_IMAGES for more of Kodak (each max encode: minutes)
MAX_IMAGES ?= 4
bench-grid2-max: install
	$(BIN)/mscn bench ../shared/data/kodak --out results/kodak-max --codecs jpeg2000,heic,webp,mscn:grid2@fast,mscn:grid2,mscn:grid2@max --limit $(MAX_IMAGES) --points 0.1,0.2,0.3,0.5,0.75,1.0 --inr-points 0.25,0.5,1.0 --jobs 2 --no-anchors

# Resume the flagship grid2 meta-training from its committed checkpoint (mscncodec/weights/grid2-l7.run/); raise STEPS
# to train longer. One thread: the other core stays free.
STEPS ?= 24000
GRID2_TRAIN = $(BIN)/mscn train image --arch grid2 --data ../shared/data/natural-train --out mscncodec/weights/grid2-l7 --steps $(STEPS) --log2-lam -13,-1
train-grid2: install
	MSCN_THREADS=1 $(GRID2_TRAIN) --threads 1 --resume

# The same on a lent GPU (device tool), for a wall-clock budget, the script's recipes at once on one card
# (it resumes the shipped grid2-l7-ft256c from its committed checkpoint and tries one more):
# scripts/gpu_train_grid2.sh (the machine's own python3; results in $$OUT/NAME.tgz). The training photos must
# travel inside the checkout: `make gpu-data` copies into shared/natural-train all of natural-train but
# Urban100 and as many Urban100 files as keep the tree under the device's 64 MiB (GPU_DATA_MB: 64 MiB less the
# tracked files, ~19 MB since grid2-l7-ft256c and its checkpoint landed, less ~2 MB so that a run folder can be
# carried for a continuation on the same lease).
GPU_MINUTES ?= 7
gpu-train-grid2:
	scripts/gpu_train_grid2.sh $(GPU_MINUTES) cuda

# scripts/gpu_encode_kodak.sh on a lent GPU (issue 28): Kodak encoded with --device cuda at max and placebo, photo
# by photo within GPU_ENCODE_MINUTES, every stream decoded on the CPU and checked against the encoder's own
# reconstruction; $$OUT/gpu-encode-kodak.json. Here first `make gpu-wheels gpu-kodak-data` (constriction's wheel for
# the device's Python 3.12; the photos inside the checkout), then on the device, carrying .whl: `make gpu-encode-kodak`.
GPU_ENCODE_MINUTES ?= 8
gpu-encode-kodak:
	scripts/gpu_encode_kodak.sh $(GPU_ENCODE_MINUTES) $(GPU_ENCODE_ARGS)

gpu-wheels:
	rm -rf .whl && mkdir -p .whl
	$(BIN)/pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
	  constriction==$$($(BIN)/python -c "import importlib.metadata as m; print(m.version('constriction'))")
	[ ! -d .git ] || grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
	ls .whl

gpu-kodak-data:
	rm -rf shared/kodak && mkdir -p shared/kodak && cp ../shared/data/kodak/*.png shared/kodak/ && du -sh shared

GPU_DATA_MB ?= 45
gpu-data:
	rm -rf shared/natural-train && mkdir -p shared/natural-train
	cp -r ../shared/data/natural-train/bsds500 ../shared/data/natural-train/mcmaster ../shared/data/natural-train/sunhays80 shared/natural-train/
	mkdir -p shared/natural-train/urban100-subset
	for f in ../shared/data/natural-train/urban100-subset/*.png; do \
	  [ $$(( $$(du -sb shared/natural-train | cut -f1) + $$(stat -c %s $$f) )) -le $$(( $(GPU_DATA_MB) * 1000000 )) ] && cp $$f shared/natural-train/urban100-subset/; \
	done; du -sh shared/natural-train; ls shared/natural-train/urban100-subset | wc -l

clean:
	rm -rf $(OUT) .pytest_cache

# Meta-train (or resume) the shipped signed-distance SIREN for meshes on the training collection (one thread)
MESH_STEPS ?= 20000
train-mesh: install
	MSCN_THREADS=1 $(BIN)/mscn train mesh --data ../shared/data/meshes-collection --out mscncodec/weights/sdf-w32 --width 32 --batch 8 --steps $(MESH_STEPS) --lr 2e-4 --threads 1 --no-progress --resume

# Mesh bench: the test meshes and the trainer's detailed held-out meshes, mscn against Draco and
# quadric decimation + Draco at 2, 4 and 8 KB (results, plots and pictures in results/meshes/)
MESH_CODECS ?= draco,simplify-draco,mscn,mscn:sdf-w32,mscn:sdf-w32+dense,mscn:random-sdf-w32d5+dense
bench-meshes: install
	$(BIN)/python scripts/mesh_heldout.py ../shared/data/meshes-collection build/meshes-heldout --min-faces 1000
	$(BIN)/mscn bench ../shared/data/meshes-test --out results/meshes/test --codecs $(MESH_CODECS) --sizes 2000,4000,8000
	$(BIN)/mscn bench build/meshes-heldout --out results/meshes/heldout --codecs $(MESH_CODECS) --sizes 2000,4000,8000

# Meta-train (or resume) the shipped SIRENs for global fields: run B06.57 of the annual 2 m temperature and the
# monthly surface temperature train, run B06.59 is held out (one thread). sphere-w32 (<= 6 KB):
# `make train-sphere`; sphere-w64 (> 6 KB): `make train-sphere SPHERE_WIDTH=64 SPHERE_LR=1e-4 SPHERE_BATCH=6`
SPHERE_STEPS ?= 6000
SPHERE_WIDTH ?= 32
SPHERE_LR ?= 2e-4
SPHERE_BATCH ?= 8
train-sphere: install
	MSCN_THREADS=1 $(BIN)/mscn train sphere --data ../shared/data/spherical --out mscncodec/weights/sphere-w$(SPHERE_WIDTH) --width $(SPHERE_WIDTH) --steps $(SPHERE_STEPS) --lr $(SPHERE_LR) --batch $(SPHERE_BATCH) --threads 1 --no-progress --resume

# Fields bench: 3 fields of the held-out run and the 1-degree January 2 m temperature, mscn against zfp,
# SZ3 and JPEG 2000 16-bit at 1-8 KB (results, plot and error maps in results/fields/)
FIELD_CODECS ?= zfp,sz3,jpeg2000-16,mscn,mscn:sphere-w32,mscn:random-sphere-w32d5+dense
bench-fields: install
	mkdir -p build/fields && ln -sf $(abspath ../shared/data/spherical/ccsm-trefht-annual/TREFHT.B06.59.atm.1890-1999ANN.nc) $(abspath ../shared/data/spherical/single-fields/T2m_1x1.nc) build/fields/
	$(BIN)/mscn bench build/fields --out results/fields --codecs $(FIELD_CODECS) --per-file 3
