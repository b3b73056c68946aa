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
	# the judge's pretrained music embedding (weights in the wheel); --no-deps: its declared
	# TensorFlow is neither needed (samplegan_tune/judge/musicnn.py reads the weights) nor installable
	$(BIN)/pip install -q --no-deps musicnn==0.1.0
	rm -f $(VENV)/.installed-* && touch $@

# A small search on the built-in corpus, then the best model exported and heard.
demo: setup
	rm -rf $(DEMO)
	$(BIN)/samplegan-tune search --space smoke --storage $(DEMO) --name search
	$(BIN)/samplegan-tune export $(DEMO)/search --rank 1 --out $(DEMO)/best-model
	$(BIN)/samplegan-tune generate $(DEMO)/best-model --seconds 8 --out $(DEMO)/continuation.wav
	@echo "listening page: $(DEMO)/search/listening/index.html"
	@echo "exported model: $(DEMO)/best-model"
	@echo "generated WAV:  $(DEMO)/continuation.wav"

test: setup lint
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) results/demo
