# The two commands: `make run` starts the whole platform, `make test` runs the suite.
# Both bootstrap what they need: uv in .tools/, the workspace in .venv/, bubblewrap when root.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
PY_EXE := $(shell $(PYTHON) -c 'import sys; print(sys.executable)')
UV := .tools/bin/uv
VENV := .venv
PYTEST_ARGS ?=

.PHONY: run test bench lint install system-deps clean

$(UV):
	$(PY_EXE) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv

$(VENV)/.synced: $(UV) uv.lock pyproject.toml $(wildcard */*/pyproject.toml) cli/pyproject.toml
	$(UV) sync --all-packages --frozen --python $(PY_EXE)
	@touch $@

install: $(VENV)/.synced

# bubblewrap gives jobs their own namespaces; without it jobs still run, less isolated.
system-deps:
	@if ! command -v bwrap >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get install -y -qq bubblewrap >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq bubblewrap >/dev/null 2>&1) || echo "note: could not install bubblewrap"; \
	fi

run: install system-deps
	$(VENV)/bin/puras up

test: install system-deps
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: install system-deps
	$(VENV)/bin/python bench/run.py $(if $(QUICK),--quick,)

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf .tools $(VENV)
