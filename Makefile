# mscn: `make demo` sets everything up (.venv + package) and runs the codec on the bundled example;
# `make test` runs the test suite (what .ci/run calls).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= build
BPP    ?= 0.5

.PHONY: install demo test test-all bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	touch $(STAMP)

demo: install
	@mkdir -p $(OUT)
	$(BIN)/mscn encode examples/example.png -o $(OUT)/example.mscn --bpp $(BPP) --force
	$(BIN)/mscn info $(OUT)/example.mscn
	$(BIN)/mscn decode $(OUT)/example.mscn -o $(OUT)/example.decoded.png --force --verbose

test: install
	$(BIN)/python -m pytest -q

test-all: install
	$(BIN)/python -m pytest -q -m ''

bench: install
	$(BIN)/mscn bench ../shared/data/kodak --out benchmarks/kodak --codecs jpeg,jpeg444,webp,jpeg2000,avif,heic,jxl,mscn:siren@fast,mscn:grid@fast,mscn:grid --points 0.1,0.2,0.3,0.5,0.75,1.0 --inr-points 0.25,0.5,1.0 --jobs 2

clean:
	rm -rf $(OUT) .pytest_cache
