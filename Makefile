# webpacs — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run
HOST   ?= 127.0.0.1
PORT   ?= 8042
DATA   ?=
DATA_FLAG := $(if $(DATA),--data-dir $(DATA),)
PYTEST_ARGS ?=

.PHONY: run test fuzz bench lint format clean help viewer

help:
	@echo "make run    - install, load the sample studies, serve DICOMweb on http://$(HOST):$(PORT)/dicomweb"
	@echo "make test   - install test dependencies and run the whole suite"
	@echo "make fuzz   - fuzz the parsers of untrusted bytes longer (hypothesis, then atheris; FUZZ_SECONDS)"
	@echo "make bench  - run the benchmarks under bench/ (ANCHOR=orthanc, BACKENDS=sqlite+files,couchdb+s3,postgresql+files, NGINX=0)"
	@echo "             CURVES=1 [CURVE_SIZES=10000,100000,1000000]: the cost curves instead (bench/curves.py)"
	@echo "make lint   - ruff check, ruff format --check, mypy"
	@echo "make viewer - fetch OHIF 3 (npm @ohif/app) for the viewer that webpacs serve hosts at /viewer/"

# `make run` installs what serving needs (and the sample data); the test tools only come
# with `make test`, `make lint` and `make bench`.
$(RUN_STAMP): pyproject.toml
	@echo "installing webpacs into $(VENV) (serving dependencies, codecs, sample data)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[samples,codecs]"
	@touch $@

$(STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test,samples,codecs]"
	touch $(STAMP)

# pouchdb-server (a CouchDB-compatible server) for the CouchDB backend tests, project-local.
# Without npm the CouchDB tests skip with a reason (fail if WEBPACS_REQUIRE_SYSTEM_DEPS=1).
NPM_TOOLS := .npm-tools
# The stamp's name changes when the package list grows, so that existing checkouts reinstall.
NPM_STAMP := $(NPM_TOOLS)/.installed-oidc
$(NPM_STAMP):
	@if command -v npm >/dev/null 2>&1; then \
		npm install --silent --no-audit --no-fund --prefix $(NPM_TOOLS) pouchdb-server@4 oidc-provider@9 \
		&& touch $(NPM_STAMP) \
		|| echo "npm install pouchdb-server oidc-provider failed: CouchDB and OIDC tests will be skipped"; \
	else echo "npm not found: CouchDB backend tests will be skipped"; fi

# OHIF 3's built app (npm @ohif/app, pinned) for the hosted viewer at /viewer/ and the browser
# tests. `npm install @ohif/app` cannot resolve its dependencies (@ohif/i18n@3.13.2 is not
# published) and only dist/ is needed, so npm fetches the package tarball (`npm pack`).
# Without npm the browser tests skip with a reason (fail if WEBPACS_REQUIRE_SYSTEM_DEPS=1).
OHIF_VERSION := 3.13.2
OHIF_DIR := $(NPM_TOOLS)/node_modules/@ohif/app
OHIF_STAMP := $(OHIF_DIR)/.webpacs-installed-$(OHIF_VERSION)
$(OHIF_STAMP):
	@mkdir -p $(NPM_TOOLS)
	@if command -v npm >/dev/null 2>&1; then \
		rm -rf $(NPM_TOOLS)/ohif-pack && mkdir -p $(NPM_TOOLS)/ohif-pack \
		&& npm pack --silent --pack-destination $(NPM_TOOLS)/ohif-pack @ohif/app@$(OHIF_VERSION) >/dev/null \
		&& rm -rf $(OHIF_DIR) && mkdir -p $(OHIF_DIR) \
		&& tar -xzf $(NPM_TOOLS)/ohif-pack/ohif-app-$(OHIF_VERSION).tgz -C $(OHIF_DIR) --strip-components=1 \
		&& rm -rf $(NPM_TOOLS)/ohif-pack && touch $@ \
		|| echo "npm pack @ohif/app failed: /viewer/ is off and the browser tests will be skipped"; \
	else echo "npm not found: /viewer/ is off and the browser tests will be skipped"; fi

# OHIF 2 (npm @ohif/viewer, pinned: its standalone dist/) for the OHIF 2 browser tests only.
OHIF2_VERSION := 4.12.51
OHIF2_DIR := $(NPM_TOOLS)/node_modules/@ohif/viewer
OHIF2_STAMP := $(OHIF2_DIR)/.webpacs-installed-$(OHIF2_VERSION)
$(OHIF2_STAMP): | $(NPM_STAMP)
	@if command -v npm >/dev/null 2>&1; then \
		rm -rf $(NPM_TOOLS)/ohif2-pack && mkdir -p $(NPM_TOOLS)/ohif2-pack \
		&& npm pack --silent --pack-destination $(NPM_TOOLS)/ohif2-pack @ohif/viewer@$(OHIF2_VERSION) >/dev/null \
		&& rm -rf $(OHIF2_DIR) && mkdir -p $(OHIF2_DIR) \
		&& tar -xzf $(NPM_TOOLS)/ohif2-pack/ohif-viewer-$(OHIF2_VERSION).tgz -C $(OHIF2_DIR) --strip-components=1 \
		&& rm -rf $(NPM_TOOLS)/ohif2-pack && touch $@ \
		|| echo "npm pack @ohif/viewer failed: the OHIF 2 browser tests will be skipped"; \
	else echo "npm not found: the OHIF 2 browser tests will be skipped"; fi

viewer: $(OHIF_STAMP)

# The viewer is fetched when npm is there (else the server says how to get it).
run: $(RUN_STAMP) $(OHIF_STAMP)
	@$(BIN)/webpacs import --samples $(DATA_FLAG)
	@$(BIN)/webpacs serve --host $(HOST) --port $(PORT) $(DATA_FLAG)

# pytest exits 5 when it collected no test: that is a failure of the suite here.
test: $(STAMP) $(NPM_STAMP) $(OHIF_STAMP) $(OHIF2_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; fi; exit $$rc

# The fuzz tests with many random examples (`make test` runs a few, always the same ones),
# then atheris (coverage-guided, libFuzzer) on each parser for FUZZ_SECONDS when it installs
# (a wheel for CPython on Linux x86-64); inputs that crash it are left in .fuzz/.
FUZZ_SECONDS ?= 120
FUZZ_TARGETS := multipart qido json part10
fuzz: $(STAMP)
	WEBPACS_FUZZ=long $(BIN)/python -m pytest -p no:cacheprovider --timeout 0 \
		tests/test_fuzz_parsers.py tests/test_fuzz_server.py tests/test_fuzz_regressions.py
	@if $(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[fuzz]"; then \
		for t in $(FUZZ_TARGETS); do \
			echo "atheris: $$t for $(FUZZ_SECONDS) s"; \
			$(BIN)/python -m tests.fuzz_atheris $$t -max_total_time=$(FUZZ_SECONDS) || exit 1; \
		done; \
	else echo "atheris did not install: coverage-guided fuzzing skipped"; fi

# BACKENDS=sqlite+files,couchdb+s3 also needs pouchdb-server (installed into .npm-tools as for
# `make test`); without it the couchdb+s3 column is skipped with a note.
bench: $(STAMP) $(if $(findstring couchdb,$(BACKENDS)),$(NPM_STAMP),)
	$(BIN)/python bench/run.py $(if $(ANCHOR),--anchor $(ANCHOR),) $(if $(SIZE),--size $(SIZE),) \
		$(if $(BACKENDS),--backends $(BACKENDS),) $(if $(INSTANCES),--instances $(INSTANCES),) \
		$(if $(filter 0,$(NGINX)),--no-nginx,) \
		$(if $(CURVES),--curves,) $(if $(CURVE_SIZES),--curve-sizes $(CURVE_SIZES),)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src  # strict: [tool.mypy] in pyproject.toml

format: $(STAMP)
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
