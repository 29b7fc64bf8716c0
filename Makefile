# The two commands: `make demo` (an example pipeline end to end) and `make test` (the whole suite).
# Both build .venv first when needed: torch is pinned and installed first so that no CUDA build
# is pulled in, then the core and every plugin are installed editable.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PLUGINS := $(sort $(dir $(wildcard plugins/*/pyproject.toml)))
STAMP := $(VENV)/.pixmill-installed
export HF_HUB_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup browser demo test lint bench clean

setup: $(STAMP)

$(STAMP): core/pyproject.toml $(wildcard plugins/*/pyproject.toml) requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -r requirements-dev.txt -e core $(foreach p,$(PLUGINS),-e $(p))
	# spandrel (the esrgan serving's loader) declares torchvision, which its upscalers never use and
	# which must not sit beside a CPU torch: install it without its declared dependencies.
	$(BIN)/python -m pip install -q --no-deps "spandrel==0.4.2"
	touch $@

# Headless Chromium for the gallery's browser tests (Debian's package: no browser download).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) \
	  || { echo "install Chromium for the browser tests: apt-get update && apt-get install -y chromium" >&2; exit 1; }

demo: setup
	$(BIN)/python example_data/demo.py

test: setup browser
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check core plugins tests bench

bench: setup
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) demo-run .pytest_cache
