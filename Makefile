# `make demo` and `make test` are the README's two front-door commands.
# Both create .venv once (re-installing only when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
DEMO := results/demo

.PHONY: setup demo test lint clean
setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, by exact pin, so pip takes the local 2.14.1 wheel and never a multi-GB download
	$(BIN)/pip install -q torch==2.14.1 torchaudio==2.11.0
	$(BIN)/pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

demo: setup
	$(BIN)/samplegan-tune train --steps 400 --out $(DEMO)/run --force
	$(BIN)/samplegan-tune generate $(DEMO)/run --seconds 8 --out $(DEMO)/continuation.wav --force

test: setup lint
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) results/demo
