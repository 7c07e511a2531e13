# The two commands a new user needs: `make demo` and `make test`. Everything else is a step they call.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell $(PYTHON) -c "import hashlib,sys;print(hashlib.sha1(open('pyproject.toml','rb').read()).hexdigest()[:12])")

.PHONY: demo test install lint typecheck bench bench-pipeline bench-copy bench-memory bench-status bench-prune bench-ingest bench-thumbnails bench-archive bench-globus bench-slurm bench-archive-nersc bench-analysis clean help

help:
	@echo "make demo   - create .venv, install beamflow, run the demo on the embedded NATS server"
	@echo "make test   - create .venv with dev tools, run lint, type checks and the whole test suite"
	@echo "make bench  - run the benchmarks in bench/ and print their figures"

$(STAMP): pyproject.toml
	@$(PYTHON) -c "import sys; assert sys.version_info >= (3, 11), 'beamflow needs Python 3.11 or newer'"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/beamflow demo

lint: $(STAMP)
	$(BIN)/ruff check libs services tests bench
	$(BIN)/ruff format --check libs services tests bench
	@mkdir -p .beamflow/typecheck/beamflow && ln -sfn ../../../libs/common .beamflow/typecheck/beamflow/common \
	  && ln -sfn ../../../libs/scicat_local .beamflow/typecheck/beamflow/scicat_local \
	  && ln -sfn ../../../services/ingestor .beamflow/typecheck/beamflow/ingestor \
	  && ln -sfn ../../../libs/sfapi_local .beamflow/typecheck/beamflow/sfapi_local \
	  && ln -sfn ../../../services/archiver .beamflow/typecheck/beamflow/archiver \
	  && ln -sfn ../../../services/analyzer .beamflow/typecheck/beamflow/analyzer \
	  && ln -sfn ../../../libs/globus_local .beamflow/typecheck/beamflow/globus_local \
	  && ln -sfn ../../../services/flightcheck .beamflow/typecheck/beamflow/flightcheck \
	  && ln -sfn ../../../services/statuspage .beamflow/typecheck/beamflow/statuspage
	MYPYPATH=.beamflow/typecheck $(BIN)/mypy -p beamflow.common -p beamflow.scicat_local -p beamflow.ingestor \
	  -p beamflow.sfapi_local -p beamflow.archiver -p beamflow.analyzer -p beamflow.globus_local \
	  -p beamflow.flightcheck -p beamflow.statuspage

test: $(STAMP) lint
	$(BIN)/python -m pytest -p no:cacheprovider

bench: bench-copy bench-pipeline bench-memory bench-status bench-prune bench-ingest bench-thumbnails bench-archive bench-globus

# These start a real Slurm (slurm-wlm, installed with apt if missing): run them as root.
bench-slurm: bench-archive-nersc bench-analysis

bench-pipeline: $(STAMP)
	$(BIN)/python bench/pipeline.py

bench-copy: $(STAMP)
	$(BIN)/python bench/copy_speed.py

bench-memory: $(STAMP)
	$(BIN)/python bench/memory.py

bench-status: $(STAMP)
	$(BIN)/python bench/status.py

bench-prune: $(STAMP)
	$(BIN)/python bench/prune.py

bench-ingest: $(STAMP)
	$(BIN)/python bench/ingest.py

bench-thumbnails: $(STAMP)
	$(BIN)/python bench/thumbnails.py

bench-archive: $(STAMP)
	$(BIN)/python bench/archive.py

bench-globus: $(STAMP)
	$(BIN)/python bench/globus.py

bench-archive-nersc: $(STAMP)
	$(BIN)/python bench/archive_nersc.py

bench-analysis: $(STAMP)
	$(BIN)/python bench/analysis.py --site slurm

clean:
	rm -rf $(VENV) .beamflow build *.egg-info
