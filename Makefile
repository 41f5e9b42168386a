# Two commands do all set-up themselves on a fresh machine:
#   make demo   main job (see README)
#   make test   create .venv, install fashionlens with test extras, run the tests offline
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

export HF_HUB_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: venv test demo lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(VENV)/bin/pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

demo: $(STAMP)
	@if [ -z "$(CCP)" ] || [ ! -d "$(CCP)" ]; then \
	  echo "make demo needs the Clothing Co-Parsing data: pass CCP=/path/to/clothing-co-parsing"; \
	  echo "(the folder with photos/, annotations/image-level/ and label_list.mat;"; \
	  echo " get it from https://github.com/bearpaw/clothing-co-parsing)"; exit 2; fi
	$(VENV)/bin/fashionlens train configs/demo_ccp.yaml --data $(CCP) --out $(DEMO_OUT)
	$(VENV)/bin/fashionlens evaluate $(DEMO_OUT)/model.safetensors --data $(CCP) --out $(DEMO_OUT)/eval

clean:
	rm -rf $(VENV) runs .pytest_cache
