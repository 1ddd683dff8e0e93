# Quick start: `make run` starts the engine on an embedded NATS server; `make test` runs the suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

NODE_TOOLS := tests/js/node_modules/.package-lock.json
TS_CLIENT := clients/typescript/node_modules/.package-lock.json

.PHONY: install run test test-unit bench soak clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# what only the benchmark needs (FastStream, to compare it with the engine's own request path)
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

# npm tools the contract tests use (TypeScript generation, Ajv, the AsyncAPI parser); gitignored
$(NODE_TOOLS): tests/js/package.json tests/js/package-lock.json
	cd tests/js && npm ci --no-audit --no-fund --loglevel=error

# the TypeScript client's dependencies (nats.js, and tsc to build it); its tests run in tests/test_typescript_client.py
$(TS_CLIENT): clients/typescript/package.json clients/typescript/package-lock.json
	cd clients/typescript && npm ci --no-audit --no-fund --loglevel=error

run: $(STAMP)
	$(BIN)/agentledger serve

test: $(STAMP) $(NODE_TOOLS) $(TS_CLIENT)
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	$(BIN)/pytest -q

# the tests marked unit (tests/markers.py): no nats-server, no subprocess; seconds
test-unit: $(STAMP)
	$(BIN)/pytest -q -m unit

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run

# the replicated races and the fault tests again and again under CPU load (not part of `make test`)
MINUTES ?= 30
soak: $(STAMP)
	$(BIN)/python -m tests.soak --minutes $(MINUTES)

clean:
	rm -rf $(VENV) .agentledger tests/js/node_modules clients/typescript/node_modules clients/typescript/build
