# Two commands do all the set-up on a fresh machine:
#   make demo   – the simulated park through the real pipeline onto the wall page
#   make test   – the whole test suite against real brokers
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test bench system-deps clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# Mosquitto (the demo falls back to an embedded broker without it) and, for the tests,
# Chromium + ChromeDriver: Debian packages, installed when missing and we may.
system-deps:
	bash scripts/system-deps.sh $(SYSTEM_DEPS)

demo: $(BIN)/.installed
	$(MAKE) system-deps SYSTEM_DEPS=demo
	$(BIN)/ecopark demo

test: $(BIN)/.installed
	$(MAKE) system-deps SYSTEM_DEPS=test
	$(BIN)/pytest -q

bench: $(BIN)/.installed
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .pytest_cache var
