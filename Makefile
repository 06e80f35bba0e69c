# attnas: the two commands of the README.
#   make search   set up .venv and run the main job (embedded digits data, a few minutes on 2 CPU cores)
#   make test     set up .venv and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install search test bench clean

$(BIN)/attnas: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[test,export]"
	touch $(BIN)/attnas

install: $(BIN)/attnas

search: install
	$(BIN)/attnas search

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
