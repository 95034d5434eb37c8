# Two commands do everything: `make demo` and `make test` (each creates .venv when missing).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-output

.PHONY: demo test test-slow clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/imgtrain demo --out $(DEMO_OUT)

test: $(STAMP)
	$(BIN)/python -m pytest

# Tests too long for `make test` (a two-node job over network namespaces, as root; the transfer and Grad-CAM
# corner figures); .ci/run runs them too.
test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
