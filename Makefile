# settee: the two commands a new user needs are `make run` and `make test`.
DATA ?= ./data
BIND ?= 127.0.0.1:5984
CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)

.PHONY: run build test lint unit node-deps bench clean-data

run: ## build in release and start settee on http://127.0.0.1:5984 with its data in ./data
	$(CARGO) build --release
	$(TARGET_DIR)/release/settee serve --data $(DATA) --bind $(BIND)

build:
	$(CARGO) build --release

test: lint node-deps unit ## every test: format, lints, unit, integration, property, interop

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

unit:
	$(CARGO) test

node-deps: ## real peers for interop tests (PouchDB, pouchdb-server) from tests/node's lockfile
	@if [ -f tests/node/package-lock.json ] && [ ! -d tests/node/node_modules ]; then \
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

clean-data:
	rm -rf $(DATA)
