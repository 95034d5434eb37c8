# Two commands do everything: `make demo` and `make test` (each creates .venv when missing).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo-output

.PHONY: demo test test-fast test-slow lint lint-web clean

# One stamp per extra: the demo installs only what it needs, the tests everything they exercise.
$(VENV)/.installed-%: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[$*]"
	touch $@

demo: $(VENV)/.installed-demo
	$(BIN)/imgtrain demo --out $(DEMO_OUT)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

# The edit-test loop: every test that neither trains a network nor drives a browser (under a minute).
test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m "not slow and not trains and not browser"

# Tests too long for `make test` (multi-process jobs, a two-node job over network namespaces as root, the
# benchmark figures); .ci/run runs them too.
test-slow: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m slow

# ruff (rules, import order, format) and mypy, configured in pyproject.toml. mypy reads the types of the optional
# packages too (fastapi, onnx, ...), so it runs in the test install.
lint: $(VENV)/.installed-test $(VENV)/.installed-lint
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy
	$(MAKE) lint-web

# ESLint on the studio's page (src/imgtrain/studio/static; eslint.config.js), from package-lock.json's pinned tools.
lint-web:
	test -d node_modules || npm ci --silent --no-audit --no-fund
	npx eslint src/imgtrain/studio/static

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .mypy_cache .ruff_cache
