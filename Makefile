# Two commands on a fresh machine:  `make demo` (set up + index KAGL's test split + search)
# and `make test` (set up + lint + type check + the whole test suite). CI runs `make test` (see .ci/run).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
KAGL ?= ../shared/data/kagl
CATALOG ?= runs/kagl-test
# What `make demo` indexes: any CSV/Parquet table or image folder; IDS selects a subset (or IDS=).
SOURCE ?= $(KAGL)/styles.csv
IDS ?= --ids-file $(KAGL)/splits.csv --ids-where split=test
FILTER ?= --filter-if-present gender=Men
MODEL ?=
MODEL_FLAG := $(if $(MODEL),--model $(MODEL),)

.PHONY: setup system-deps demo test lint bench clean default-model

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The pinned CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[all]'
	touch $@

# Debian's Chromium for the browser test of the web page (no browser download at run time).
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: sudo apt-get install chromium (the browser test will be skipped)"; fi; }

demo: setup
	$(BIN)/fashionclip index --catalog $(CATALOG) --rebuild-if-model-changed $(MODEL_FLAG) $(SOURCE) $(IDS)
	$(BIN)/fashionclip search --catalog $(CATALOG) --top-k 5 "red dress"
	$(BIN)/fashionclip search --catalog $(CATALOG) --top-k 5 $(FILTER) "running shoes"
	$(BIN)/fashionclip search --catalog $(CATALOG) --top-k 5 "black leather handbag"

# Re-train the shipped default model from scratch (three stages, a 1:1 weight average, stage 4, then
# stage 5 on three seeds and their mean; see src/fashionclip/pretrained/fashion-clip-mini/MODEL_CARD.md).
# Writes runs/ (the model: runs/fashion-clip-mini-v6), not the package.
default-model: setup
	OMP_WAIT_POLICY=PASSIVE $(BIN)/fashionclip train --config configs/fashion-clip-mini.toml
	OMP_WAIT_POLICY=PASSIVE $(BIN)/fashionclip train --config configs/fashion-clip-mini-stage2.toml
	OMP_WAIT_POLICY=PASSIVE $(BIN)/fashionclip train --config configs/fashion-clip-mini-stage3.toml
	$(BIN)/python tools/wise_ft.py runs/fashion-clip-mini-stage3/best runs/fashion-clip-mini-v2 --alpha 0.5 --start runs/fashion-clip-mini-stage2/best
	OMP_WAIT_POLICY=PASSIVE $(BIN)/fashionclip train --config configs/fashion-clip-mini-stage4.toml
	for seed in 3 4 5; do OMP_WAIT_POLICY=PASSIVE $(BIN)/fashionclip train --config configs/fashion-clip-mini-stage5.toml --set seed=$$seed --output-dir runs/fashion-clip-mini-stage5-seed$$seed || exit 1; done
	$(BIN)/python tools/soup.py runs/fashion-clip-mini-v6 runs/fashion-clip-mini-stage5-seed3/best runs/fashion-clip-mini-stage5-seed4/best runs/fashion-clip-mini-stage5-seed5/best

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

test: setup system-deps lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs .pytest_cache
