# The provisioning worker. `make run` brings it up end to end against the
# local Postgres and the bundled CP simulator; `make test` is what CI runs.

SHELL := /bin/bash
GO ?= go
PG_SERVER ?= postgres://postgres@127.0.0.1:5432
DB_NAME ?= provision_worker
export DATABASE_URL ?= $(PG_SERVER)/$(DB_NAME)?sslmode=disable
export MOLECULE_ORG_ID ?= dev-org
export CP_PROVISION_URL ?= http://127.0.0.1:8081
CPSIM_ADDR ?= 127.0.0.1:8081
BIN := bin

.PHONY: all build run example db test test-short lint chaos bench fuzz clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# db creates the local database (DB_NAME on PG_SERVER) when it is missing.
db:
	@psql "$(PG_SERVER)/postgres?sslmode=disable" -tAc "SELECT 1 FROM pg_database WHERE datname = '$(DB_NAME)'" | grep -q 1 || \
		psql "$(PG_SERVER)/postgres?sslmode=disable" -qc 'CREATE DATABASE "$(DB_NAME)"'

# run: the CP simulator in the background, migrations, then the worker in
# the foreground (Ctrl-C stops both).
run: build db
	$(BIN)/worker migrate up
	@$(BIN)/cpsim --addr $(CPSIM_ADDR) --boot-time 1s --shutdown-time 1s & sim=$$!; \
		trap "kill $$sim 2>/dev/null" EXIT INT TERM; \
		$(BIN)/worker

# example: the example host platform (examples/platform) with the worker
# embedded, against the CP simulator, in its own database (EXAMPLE_DB).
# SECRETS_KEY is generated when unset (the secrets then last one run).
EXAMPLE_DB ?= platform_example
EXAMPLE_URL := $(PG_SERVER)/$(EXAMPLE_DB)?sslmode=disable
example: build
	@$(MAKE) --no-print-directory db DB_NAME=$(EXAMPLE_DB)
	cd examples/platform && $(GO) build -o ../../$(BIN)/platform .
	DATABASE_URL='$(EXAMPLE_URL)' $(BIN)/worker migrate up
	@export DATABASE_URL='$(EXAMPLE_URL)' SECRETS_KEY="$${SECRETS_KEY:-$$($(BIN)/platform keygen)}"; \
		$(BIN)/cpsim --addr $(CPSIM_ADDR) --boot-time 1s --shutdown-time 1s & sim=$$!; \
		trap "kill $$sim 2>/dev/null" EXIT INT TERM; \
		$(BIN)/platform

# The example handler is a module of its own: it compiles only against
# what the worker exports (no internal/ type can leak into its API).
test:
	$(GO) vet ./...
	cd examples/handler && $(GO) vet ./... && $(GO) build ./...
	$(GO) test -race -count=1 -timeout 20m ./...
	cd examples/platform && $(GO) vet ./... && $(GO) test -race -count=1 -timeout 20m ./...

test-short:
	$(GO) test -short -count=1 ./...

lint:
	@test -z "$$(gofmt -l .)" || (gofmt -l . && echo "gofmt needed" && exit 1)
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	cd examples/platform && $(GO) vet ./... && $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

chaos:
	set -o pipefail; $(GO) test -v -count=1 -run TestChaos -timeout 60m ./internal/chaos/ -chaos.n=$(or $(N),1000) | grep -E "^(chaos(-sweep)?:|--- |ok|FAIL|PASS)"

bench:
	$(GO) run ./cmd/bench

fuzz:
	./scripts/fuzz.sh $(or $(FUZZTIME),10s)

clean:
	rm -rf $(BIN)
