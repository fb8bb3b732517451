# jobrelay: the verbs people expect. Everything runs in one virtual environment, .venv/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test lint unit e2e demo bench schemas schedules build deploy clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("jobrelay needs Python 3.11+") if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/cfn-lint template.yaml
	$(BIN)/checkov -f template.yaml --framework cloudformation --skip-download --quiet --compact

# Two pytest-xdist workers (2 cores); tests sharing a module's stack stay on one worker
# (xdist_group marks). The slowest tests are listed at the end.
TEST_WORKERS ?= 2
test: lint
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup --durations=25 --cov=jobrelay --cov-report=term-missing:skip-covered

unit: setup
	$(BIN)/pytest tests/unit -q

e2e: setup
	$(BIN)/pytest tests/e2e -q

schemas: setup
	$(BIN)/python -m jobrelay.schemas schemas

schedules: setup
	$(BIN)/python -m jobrelay_cli.schedules

demo: setup
	$(BIN)/jobrelay demo

bench: setup
	$(BIN)/python -m bench

build:
	sam build

deploy: build
	sam deploy --guided

clean:
	rm -rf $(VENV) .aws-sam .mypy_cache .ruff_cache .pytest_cache .coverage
