# Two commands for a newcomer: `make demo` (try it) and `make test` (check everything).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DATA ?= $(CURDIR)/.tsq
PORT ?= 8080

.PHONY: demo test test-servers lint bench install install-test clean

# Re-installed whenever pyproject.toml changes, so new dependencies arrive in an old venv too.
$(BIN)/tsq: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[examples]'
	# bytecode now, as an installed package has it: every `tsq` command starts faster
	$(BIN)/python -m compileall -q tsq
	touch $@

# The web UI's chart library, from the npm registry at its pinned version and sha256
# (tsq/ui/assets.py), into tsq/ui/static/vendor/ (ignored by git).
UI_ASSETS := tsq/ui/static/vendor/uPlot.iife.min.js

$(UI_ASSETS): tsq/ui/assets.py | $(BIN)/tsq
	$(BIN)/python -m tsq.ui.assets

install: $(BIN)/tsq $(UI_ASSETS)

install-test: install
	$(BIN)/pip install --quiet -e '.[test]'

## demo: install, deploy the examples, run one, backfill the scheduled one and the example
## pipeline (rollups, reports, retention), then serve it
demo: install
	TSQ_DATA_DIR=$(DEMO_DATA) $(BIN)/tsq deploy examples/hello/loops.yml
	TSQ_DATA_DIR=$(DEMO_DATA) $(BIN)/tsq run hello --event gra
	TSQ_DATA_DIR=$(DEMO_DATA) $(BIN)/tsq show heartbeat
	TSQ_DATA_DIR=$(DEMO_DATA) $(BIN)/tsq backfill heartbeat \
	  --from $$(date -u -d '-1 min' +%Y-%m-%dT%H:%M:00Z) --to $$(date -u +%Y-%m-%dT%H:%M:00Z)
	TSQ_DATA_DIR=$(DEMO_DATA) $(BIN)/tsq runs --loop heartbeat --limit 6
	TSQ_DATA_DIR=$(DEMO_DATA) $(BIN)/tsq demo
	@echo "Serving on http://127.0.0.1:$(PORT) (API docs at /docs); Ctrl-C stops it. The web UI, signed in:"
	@echo "  http://127.0.0.1:$(PORT)/login?token=$$(TSQ_DATA_DIR=$(DEMO_DATA) $(BIN)/tsq token admin)"
	@echo "heartbeat fires every 10 s: run 'TSQ_DATA_DIR=$(DEMO_DATA) $(BIN)/tsq runs --loop heartbeat' in another terminal."
	TSQ_DATA_DIR=$(DEMO_DATA) $(BIN)/tsq serve --port $(PORT)

## test: lint, type-check and run the whole test suite (with the database servers the tests
## compare against: installed where it runs as root with apt, else it says what is skipped)
test: install-test test-servers lint
	$(BIN)/pytest

test-servers:
	@tests/install-servers

lint:
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

## bench: the benchmarks of benchmarks/ (a table on screen, JSON lines in benchmarks/results/)
bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) $(DEMO_DATA) build *.egg-info
