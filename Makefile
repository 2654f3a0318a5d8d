# The two commands: `make run` starts the whole platform, `make test` runs the suite
# (`make lint` checks style and types; CI runs both).
# Both bootstrap what they need: uv in .tools/, the workspace in .venv/, bubblewrap when root
# (and, for the tests, chromium).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
PY_EXE := $(shell $(PYTHON) -c 'import sys; print(sys.executable)')
UV := .tools/bin/uv
VENV := .venv
PYTEST_ARGS ?=

.PHONY: run test bench lint install system-deps test-deps clean

$(UV):
	$(PY_EXE) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv

$(VENV)/.synced: $(UV) uv.lock pyproject.toml $(wildcard */*/pyproject.toml) cli/pyproject.toml testing/pyproject.toml
	$(UV) sync --all-packages --frozen --python $(PY_EXE)
	@touch $@

install: $(VENV)/.synced

# bubblewrap gives jobs their own namespaces; without it jobs still run, less isolated.
# strace lets a test check that the sandbox closes every descriptor exactly once.
SYSTEM_PACKAGES := bwrap:bubblewrap strace:strace
# Chromium runs the JS SDK's browser test (node and npm, which build and test the SDK, are
# expected on the machine).
TEST_PACKAGES := chromium:chromium

# Installs each command:package whose command is missing, when root with apt-get.
define apt_install
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		for entry in $(1); do \
			cmd=$${entry%%:*}; pkg=$${entry#*:}; \
			command -v $$cmd >/dev/null 2>&1 && continue; \
			apt-get install -y -qq $$pkg >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq $$pkg >/dev/null 2>&1) || echo "note: could not install $$pkg"; \
		done; \
	fi
endef

system-deps:
	$(call apt_install,$(SYSTEM_PACKAGES))

test-deps:
	$(call apt_install,$(TEST_PACKAGES))

run: install system-deps
	$(VENV)/bin/puras up

test: install system-deps test-deps
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: install system-deps
	$(VENV)/bin/python bench/run.py $(if $(QUICK),--quick,)

# ruff's rules and format, and mypy strict over the libraries, services, SDK and CLI
# (pyproject.toml [tool.mypy]).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean:
	rm -rf .tools $(VENV)
