# Two commands do all set-up themselves on a fresh machine:
#   make demo   main job: the shipped model behind a web page (or PHOTOS=... tagged in the terminal)
#   make test   create .venv, install fashionlens with test and Ray extras, run the tests offline
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
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

# Debian's chromium for the headless-browser test of the web page (skipped with a reason if absent).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  elif command -v sudo >/dev/null 2>&1; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not installed and no root: the browser test will be skipped"; fi; }

test: $(STAMP) chromium
	$(VENV)/bin/pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

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
