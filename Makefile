# ai_batch — build, test, demo, bench.
#   make          build build/release/ai_batch.duckdb_extension
#   make test     everything CI runs: fmt, clippy, unit tests, SQL logic tests, pytest
#   make demo     the main job on the built-in local (fake) provider (PROVIDER=openai|anthropic)
#   make wheel    the ai-batch Python wheel (extension + gh-analysis commands) into dist/
#   make bench    the benchmark (see BENCHMARKS.md)

EXT_NAME        := ai_batch
CARGO_TARGET_DIR ?= $(CURDIR)/target
export CARGO_TARGET_DIR
PYTHON          ?= python3
VENV            := $(CURDIR)/.venv
VPY             := $(VENV)/bin/python
EXT             := build/release/$(EXT_NAME).duckdb_extension
# Other DuckDB wheels the load tests use (installed with pip --target, no venv each).
EXTRA_DUCKDB    := 2.0.0 1.5.5 1.4.4
EXTRA_DIR       := $(CURDIR)/.venv/duckdb-versions
# DuckDB version folder(s) the wheel installs the extension under (one copy each).
WHEEL_DUCKDB    ?= 2.0.1
# The provider the demo runs its job on (the fake speaks both): openai or anthropic.
PROVIDER        ?= openai

.PHONY: all release test venv unit clippy fmt-check sqltest pytest demo bench wheel clean

all: release

release: $(EXT)

$(EXT): $(shell find src core/src -name '*.rs') Cargo.toml core/Cargo.toml tools/append_footer.py
	cargo build --release -p $(EXT_NAME)
	mkdir -p build/release
	$(PYTHON) tools/append_footer.py $(CARGO_TARGET_DIR)/release/lib$(EXT_NAME).so $(EXT) \
	  --abi C_STRUCT --capi-version v1.5.6 --platform linux_amd64 --extension-version v$$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

$(VENV)/.done: requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-test.txt
	for v in $(EXTRA_DUCKDB); do \
	  $(VENV)/bin/pip install -q --disable-pip-version-check --no-deps --target $(EXTRA_DIR)/$$v duckdb==$$v || exit 1; \
	done
	touch $@

venv: $(VENV)/.done

fmt-check:
	cargo fmt --all -- --check

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

unit:
	cargo test --release --workspace

# Every SQL logic test in the Python wheels 2.0.1 (the venv's) and 2.0.0, and in the PyPI CLI 1.5.6.
sqltest: release venv
	$(VPY) test/run_sqllogictest.py --extension $(EXT) --host python --host python:$(EXTRA_DIR)/2.0.0 \
	  --host cli:$(VENV)/bin/duckdb test/sql/*.test

pytest: release venv
	AI_BATCH_EXTENSION=$(CURDIR)/$(EXT) AI_BATCH_EXTRA_DUCKDB=$(EXTRA_DIR) $(VPY) -m pytest -q test/python

test: fmt-check clippy unit sqltest pytest

wheel: release
	$(PYTHON) tools/build_wheel.py --extension $(EXT) --out dist $(foreach v,$(WHEEL_DUCKDB),--duckdb-version $(v))

demo: release venv
	$(VPY) demo/run_demo.py --extension $(EXT) --provider $(PROVIDER)

bench: release venv
	$(VPY) bench/run_bench.py --extension $(EXT) $(BENCH_ARGS)

clean:
	rm -rf build dist
