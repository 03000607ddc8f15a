# Two commands do all set-up: `make demo` and `make test` (each creates .venv when missing).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install browser clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

install: $(STAMP)

# The main job on the embedded IDC sample; runs/demo is the demo's own folder, replaced each time.
demo: $(STAMP)
	$(BIN)/advkeras assess --out runs/demo --force

# The report test drives headless Chromium; install it when missing and we may (root + apt), else it is skipped.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium and chromium-driver for the report's browser test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	    || echo "could not install chromium: the browser test will be skipped"; \
	else echo "chromium is missing and cannot be installed here: the browser test will be skipped"; fi

test: $(STAMP) browser
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) runs/demo .pytest_cache
