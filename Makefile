# freshrec: `make demo` runs the main job on embedded defaults, `make test` the whole suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?=

.PHONY: demo test install clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/freshrec demo $(if $(DATA),--data $(DATA))

# Lint, format and type checks (ruff, mypy), then: starts a real Kafka broker
# and Redis server on free loopback ports (installing them if missing), runs
# every test, stops them. Point FRESHREC_KAFKA and FRESHREC_REDIS_URL at
# running services to use those instead.
test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) build *.egg-info
