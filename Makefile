# attnas: the two commands of the README.
#   make search   set up .venv and run the main job (embedded digits data, a few minutes on 2 CPU cores)
#   make test     set up .venv and run the test suite
#   make docs     install the docs extra into .venv and build the documentation site into site/
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install search test bench docs clean

$(BIN)/attnas: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[test,export,tensorboard,docs]"
	touch $(BIN)/attnas

install: $(BIN)/attnas

search: install
	$(BIN)/attnas search

test: install
	$(BIN)/python -m pytest -q

$(BIN)/mkdocs: pyproject.toml | $(BIN)/attnas
	$(BIN)/pip install --quiet -e ".[docs]"
	touch $(BIN)/mkdocs

docs: install $(BIN)/mkdocs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs .pytest_cache site
