# settee: the two commands a new user needs are `make run` and `make test`.
DATA ?= ./data
BIND ?= 127.0.0.1:5984
CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)

.PHONY: run build test lint unit node-deps bench screenshots clean-data fuzz soak

run: ## build in release and start settee on http://127.0.0.1:5984 with its data in ./data
	$(CARGO) build --release
	$(TARGET_DIR)/release/settee serve --data $(DATA) --bind $(BIND)

build:
	$(CARGO) build --release

test: lint node-deps unit ## every test: format, lints, unit, integration, property, interop

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

unit: ## every test of every binary side by side with cargo-nextest (.config/nextest.toml); cargo test where it is missing
	@if $(CARGO) nextest --version >/dev/null 2>&1; then $(CARGO) nextest run; \
	else echo "cargo-nextest not found: running cargo test (slower)"; $(CARGO) test; fi

node-deps: ## real peers for interop tests (PouchDB, pouchdb-server, playwright-core) from tests/node's lockfile
	@if [ -f tests/node/package-lock.json ] && { [ ! -d tests/node/node_modules ] || \
		[ tests/node/package-lock.json -nt tests/node/node_modules/.package-lock.json ]; }; then \
		cd tests/node && npm ci --no-audit --no-fund --loglevel=error; fi

bench: node-deps ## prints one table; keep its output in BENCHMARKS.md
	$(CARGO) bench --bench store
	$(CARGO) build --release
	bash benches/http.sh
	bash benches/server.sh
	bash benches/selector.sh
	bash benches/replicate.sh
	bash benches/jobs.sh
	bash benches/recovery.sh
	bash benches/couchdb.sh

soak: ## 30 minutes of mixed load on a release settee (SOAK_MINUTES to change); prints a table per minute, fails on divergence or growth
	$(CARGO) build --release
	python3 benches/soak.py

fuzz: ## every fuzz target under AFL++ for FUZZ_SECONDS each (default 60); crashes become fuzz/regressions/
	bash fuzz/run.sh $(or $(FUZZ_SECONDS),60)

screenshots: node-deps ## refresh the README's screenshots of /_utils (headless Chromium, 1280x800)
	$(CARGO) test --test web_ui -- --nocapture
	mkdir -p tests/screenshots
	cd target/screenshots && cp replications.png new-replication.png new-replication-errors.png document.png ../../tests/screenshots/

clean-data:
	rm -rf $(DATA)
