# Developer entry points. The set-up itself lives in ./setup.sh (idempotent).
VENV ?= .venv
PY := $(VENV)/bin/python
TYPECHECK := build/typecheck

.PHONY: docs check lint typecheck test test-unit e2e bench clean typecheck-tree

check: lint typecheck test

lint: typecheck-tree
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@cd $(TYPECHECK) && PYTHONPATH=. ../../$(VENV)/bin/lint-imports --no-cache \
		--config ../../pyproject.toml > imports.log 2>&1; rc=$$?; sed -n '/^Contracts$$/,$$p' imports.log; exit $$rc

# mypy cannot follow setuptools' package-dir mapping, so give it a link tree
# shaped like the installed package.
typecheck-tree:
	@rm -rf $(TYPECHECK) && mkdir -p $(TYPECHECK)/iotrace
	@for f in iotrace/*; do ln -s ../../../$$f $(TYPECHECK)/iotrace/; done
	@ln -s ../../../tracer $(TYPECHECK)/iotrace/tracer
	@ln -s ../../../tui $(TYPECHECK)/iotrace/tui
	@ln -s ../../../workloads $(TYPECHECK)/iotrace/workloads
	@ln -s ../../bench $(TYPECHECK)/bench
	@ln -s ../../tests $(TYPECHECK)/tests

typecheck: typecheck-tree
	cd $(TYPECHECK) && ../../$(VENV)/bin/mypy --config-file ../../pyproject.toml -p iotrace -p bench
	cd $(TYPECHECK) && MYPYPATH=tests/e2e:tests/unit:tests/tui ../../$(VENV)/bin/mypy \
		--config-file ../../pyproject.toml --explicit-package-bases --allow-untyped-defs tests

# Unit and TUI tests on two workers; the e2e tests after them, one at a time
# (they measure timing and load real probes).
test:
	$(PY) -m pytest -n 2 tests/unit tests/tui
	$(PY) -m pytest tests/e2e

test-unit:
	$(PY) -m pytest -n 2 tests/unit tests/tui

e2e:
	$(PY) -m pytest tests/e2e

# Installs what the benchmarks compare against, then every benchmark (root; ~10 min).
bench:
	@if [ "$$(id -u)" = 0 ]; then ./setup.sh bench; else sudo ./setup.sh bench; fi

clean:
	rm -rf build .mypy_cache .ruff_cache .pytest_cache

# Every example output in README.md and docs/ from a real run, and the man page
# (root records the small trace the examples read).
docs:
	$(PY) -m tools.make_docs
