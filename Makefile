# omnistream — the two commands a newcomer needs:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
# constraints.txt pins torch to the CPU build (an unpinned torch pulls a multi-GB CUDA build).
PIP_INSTALL := $(PIP) install -q -c constraints.txt

.PHONY: install install-test system-deps demo test test-fast bench serve clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip
	$(PIP_INSTALL) -e ".[serve]"
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP_INSTALL) -e ".[serve,test]"
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

# Debian packages: espeak-ng (speech for the demo, tests and training data), chromium (web page test).
# espeak-ng: speech for the built-in model and tests; chromium: the page test; gcc: the native CPU kernels
# (omnistream/kernels, optional at run time — without a compiler torch's kernels are used).
system-deps:
	@command -v espeak-ng >/dev/null && command -v chromium >/dev/null && command -v gcc >/dev/null || \
	  { (apt-get update -q || sudo apt-get update -q) >/dev/null && \
	    (apt-get install -y -q espeak-ng chromium gcc || sudo apt-get install -y -q espeak-ng chromium gcc) \
	    >/dev/null; }

# Draws a picture, asks the built-in model a spoken question about it, streams the answer, saves the speech.
demo: system-deps install
	$(PY) -m omnistream.cli demo

test: system-deps install-test
	$(PY) -m pytest -q -ra

test-fast: install-test
	$(PY) -m pytest -q -ra -m "not slow"

bench: install-test
	$(PY) -m omnistream.cli bench

serve: install
	$(PY) -m omnistream.cli serve

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
