# igw — inference gateway for self-hosted LLMs.
#
# Every target installs what it needs itself and caches it under bin/, so
# `make demo` and `make test` work on a fresh Debian machine with Go.

SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
IGW := $(BIN)/igw
STATICCHECK := $(BIN)/staticcheck
REDIS_SERVER := $(BIN)/redis-server
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
GO_PACKAGES := ./...
TEST_FLAGS ?= -race -timeout 15m

.PHONY: all build test lint fmt-check vet staticcheck unit demo clean bench-go

all: build

## build: compile the igw binary into bin/igw
build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(IGW) ./cmd/igw

## test: formatting, vet, staticcheck and the race-enabled test suite (what CI runs)
test: lint unit

## lint: gofmt check, go vet and staticcheck
lint: fmt-check vet staticcheck

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './bin/*')); \
	if [ -n "$$out" ]; then echo "gofmt needs to be run on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(GO_PACKAGES)

$(STATICCHECK): hack/tools/go.mod hack/tools/go.sum
	@mkdir -p $(BIN)
	cd hack/tools && $(GO) build -o $(STATICCHECK) honnef.co/go/tools/cmd/staticcheck

staticcheck: $(STATICCHECK)
	$(STATICCHECK) $(GO_PACKAGES)

unit: $(REDIS_SERVER)
	IGW_REDIS_SERVER=$(REDIS_SERVER) IGW_REQUIRE_REDIS=1 $(GO) test $(TEST_FLAGS) $(GO_PACKAGES)

## redis-server: Debian's redis-server, which the quota tests start on loopback
## ports (internal/testredis); installed with apt-get when missing and linked
## into bin/. Under `make test` a missing redis-server fails the quota tests
## (IGW_REQUIRE_REDIS=1) instead of skipping them.

$(REDIS_SERVER):
	@mkdir -p $(BIN)
	@if ! command -v redis-server >/dev/null 2>&1 && [ ! -x /usr/bin/redis-server ]; then \
		sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		echo "installing redis-server (Debian package)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		$$sudo apt-get install -y --no-install-recommends redis-server \
		  || { $$sudo apt-get update && $$sudo apt-get install -y --no-install-recommends redis-server; }; \
	fi
	@path=$$(command -v redis-server || echo /usr/bin/redis-server); \
	ln -sf "$$path" $(REDIS_SERVER) && $(REDIS_SERVER) --version

.PHONY: redis-server
redis-server: $(REDIS_SERVER)

## bench-go: run every testing.B benchmark once (figures go in docs/performance.md)
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem $(GO_PACKAGES)

## demo: simulated model servers behind igw, answering a curl
demo: build
	$(IGW) demo

clean:
	rm -rf $(BIN)

.PHONY: bench

## bench: the standard routing comparison (igw vs round-robin, least-request, random on
## 8 simulated replicas, bench/workloads/shared-prefix.yaml); report in bench/results/shared-prefix/
bench: build
	$(IGW) bench compare --workload bench/workloads/shared-prefix.yaml --out bench/results/shared-prefix
