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
HAPROXY := $(BIN)/haproxy
HELM := $(BIN)/helm
KUBECTL := $(BIN)/kubectl
CONTROLLER_GEN := $(BIN)/controller-gen
KUBE_APISERVER := $(BIN)/kube-apiserver
ETCD := $(BIN)/etcd
PROMETHEUS := $(BIN)/prometheus
PROMTOOL := $(BIN)/promtool
CHROMIUM := $(BIN)/chromium
JAEGER := $(BIN)/jaeger
# ENVTEST_ASSETS is the directory controller-runtime's envtest finds
# kube-apiserver, etcd (and kubectl) in, passed as KUBEBUILDER_ASSETS.
ENVTEST_ASSETS := $(BIN)/envtest
# SUDO is empty for root (CI, containers) and sudo otherwise, for apt-get.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# apt_install is the shell step that installs Debian package $(1) unless the
# program $(2) (its absolute path) is there or on PATH: apt-get install,
# and once more after apt-get update when the package lists are stale.
apt_install = if [ ! -x $(2) ] && ! command -v $(notdir $(2)) >/dev/null 2>&1; then \
	echo "installing $(1) (Debian package)"; \
	export DEBIAN_FRONTEND=noninteractive; \
	$(SUDO) apt-get install -y --no-install-recommends $(1) \
	  || { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends $(1); }; \
	fi

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
GO_PACKAGES := ./...
TEST_FLAGS ?= -race -timeout 15m
# TOOL_LDFLAGS: the test tools (kube-apiserver, Helm, kubectl, controller-gen)
# only have to work, not be fast or debuggable: compiled without optimization
# and linked without symbols they build with about a fifth less CPU, which a
# cold CI run feels most.
TOOL_LDFLAGS := -gcflags='all=-N -l' -ldflags='-s -w'

.PHONY: all build test lint fmt-check vet staticcheck unit demo clean bench-go generate verify-generate envtest-assets

all: build

## build: compile the igw binary into bin/igw
build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(IGW) ./cmd/igw

## test: formatting, vet, staticcheck, the generated-code drift check, the race-enabled test suite
## and the Helm chart test (what CI runs)
test:
	@# Two independent chains, side by side: igw's own checks (one go command
	@# at a time, so no package is compiled twice at once) and the test tools
	@# (kube-apiserver, Helm, kubectl, ...: other modules). Each keeps the
	@# cores busy through the other's single-threaded phases (linking,
	@# analysis). The tests need both, so they come after.
	$(MAKE) -j2 --output-sync=target lint-chain tools-chain
	$(MAKE) unit chart-test

.PHONY: lint-chain tools-chain
lint-chain:
	$(MAKE) -j1 build lint
tools-chain:
	$(MAKE) -j1 test-tools

# test-tools builds everything the tests run besides igw's own packages.
test-tools: envtest-assets $(REDIS_SERVER) $(HAPROXY) $(HELM) $(KUBECTL) $(PROMETHEUS) $(PROMTOOL) $(CHROMIUM) $(JAEGER)

## lint: gofmt check, go vet, staticcheck and the generated-code drift check
lint: fmt-check vet staticcheck verify-generate

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

## unit: the race-enabled test suite, with a real kube-apiserver and etcd for envtest,
## a real redis-server for the quota tests, a real Prometheus (and promtool) for the
## ops files, a real Jaeger for tracing, headless Chromium for the live dashboard,
## Debian's haproxy in front of active-active replicas and the official Node SDKs
## for the SDK test. IGW_REQUIRE_TOOLS=1: a missing program fails its tests
## instead of skipping them (internal/testtool).
unit: envtest-assets $(REDIS_SERVER) $(HAPROXY) $(PROMETHEUS) $(PROMTOOL) $(CHROMIUM) $(JAEGER) node-sdk
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) IGW_REDIS_SERVER=$(REDIS_SERVER) IGW_REQUIRE_REDIS=1 IGW_HAPROXY=$(HAPROXY) \
	  IGW_PROMETHEUS=$(PROMETHEUS) IGW_PROMTOOL=$(PROMTOOL) IGW_JAEGER=$(JAEGER) IGW_CHROMIUM=$(CHROMIUM) \
	  IGW_REQUIRE_TOOLS=1 $(GO) test $(TEST_FLAGS) $(GO_PACKAGES)

## generate: deepcopy code (api/*/zz_generated.deepcopy.go) and CRDs (config/crd/bases) from the kubebuilder markers,
## and the llm-d.ai copies of the objective and rewrite CRDs (config/crd/llm-d: the same schema under llm-d.ai)
generate: $(CONTROLLER_GEN)
	$(CONTROLLER_GEN) object paths=./api/... crd:crdVersions=v1 output:crd:artifacts:config=config/crd/bases
	for k in inferenceobjectives inferencemodelrewrites; do \
	  sed 's/inference\.networking\.x-k8s\.io/llm-d.ai/g' config/crd/bases/inference.networking.x-k8s.io_$$k.yaml > config/crd/llm-d/llm-d.ai_$$k.yaml; \
	done

## verify-generate: fail when `make generate` would change a checked-in file
verify-generate: $(CONTROLLER_GEN)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	for v in v1 v1alpha2; do \
	  $(CONTROLLER_GEN) object paths=./api/$$v output:object:dir=$$tmp/api/$$v || exit 1; \
	  diff -u api/$$v/zz_generated.deepcopy.go $$tmp/api/$$v/zz_generated.deepcopy.go || \
	    { echo "api/$$v/zz_generated.deepcopy.go is out of date: run make generate"; exit 1; }; \
	done && \
	$(CONTROLLER_GEN) crd:crdVersions=v1 paths=./api/... output:crd:artifacts:config=$$tmp/crd || exit 1; \
	diff -ru config/crd/bases $$tmp/crd || { echo "config/crd/bases is out of date: run make generate"; exit 1; }

$(CONTROLLER_GEN): hack/tools/controller-gen/go.mod hack/tools/controller-gen/go.sum
	@mkdir -p $(BIN)
	cd hack/tools/controller-gen && $(GO) build $(TOOL_LDFLAGS) -o $(CONTROLLER_GEN) sigs.k8s.io/controller-tools/cmd/controller-gen

# kube-apiserver is built from k8s.io/kubernetes (hack/tools/kube pins it and
# its staging modules); it takes several minutes on two cores, once.
$(KUBE_APISERVER): hack/tools/kube/go.mod hack/tools/kube/go.sum
	@mkdir -p $(BIN)
	cd hack/tools/kube && $(GO) build -p 2 $(TOOL_LDFLAGS) -o $(KUBE_APISERVER).tmp k8s.io/kubernetes/cmd/kube-apiserver
	mv $(KUBE_APISERVER).tmp $(KUBE_APISERVER)

# etcd comes from Debian's etcd-server package unless one is on PATH.
$(ETCD):
	@mkdir -p $(BIN)
	@$(call apt_install,etcd-server,/usr/bin/etcd)
	ln -sf "$$(command -v etcd)" $(ETCD)

## envtest-assets: bin/envtest with kube-apiserver, etcd (and kubectl when installed), for KUBEBUILDER_ASSETS
envtest-assets: $(KUBE_APISERVER) $(ETCD)
	@mkdir -p $(ENVTEST_ASSETS)
	ln -sf $(KUBE_APISERVER) $(ENVTEST_ASSETS)/kube-apiserver
	ln -sf "$$(readlink -f $(ETCD))" $(ENVTEST_ASSETS)/etcd
	@if command -v kubectl >/dev/null 2>&1; then ln -sf "$$(command -v kubectl)" $(ENVTEST_ASSETS)/kubectl; fi

## redis-server: Debian's redis-server, which the quota tests start on loopback
## ports (internal/testredis); installed with apt-get when missing and linked
## into bin/. Under `make test` a missing redis-server fails the quota tests
## (IGW_REQUIRE_REDIS=1) instead of skipping them.

$(REDIS_SERVER):
	@mkdir -p $(BIN)
	@$(call apt_install,redis-server,/usr/bin/redis-server)
	@path=$$(command -v redis-server || echo /usr/bin/redis-server); \
	ln -sf "$$path" $(REDIS_SERVER) && $(REDIS_SERVER) --version

.PHONY: redis-server
redis-server: $(REDIS_SERVER)

## prometheus: Debian's prometheus package, for its prometheus and promtool:
## the ops-file tests (test/e2e TestOpsFiles_*) check config/prometheus with
## promtool and run a real Prometheus against igw serve and igw sim.
## Installed with apt-get when missing and linked into bin/.
$(PROMETHEUS):
	@mkdir -p $(BIN)
	@$(call apt_install,prometheus,/usr/bin/promtool)
	ln -sf /usr/bin/prometheus $(PROMETHEUS) && $(PROMETHEUS) --version | head -1

$(PROMTOOL): $(PROMETHEUS)
	ln -sf /usr/bin/promtool $(PROMTOOL)

.PHONY: prometheus chromium jaeger
prometheus: $(PROMETHEUS) $(PROMTOOL)

## chromium: Debian's chromium, which the live-dashboard test runs headless
## (pkg/telemetry TestDashboard_*); large, installed once with apt-get when
## missing and linked into bin/.
$(CHROMIUM):
	@mkdir -p $(BIN)
	@$(call apt_install,chromium,/usr/bin/chromium)
	ln -sf /usr/bin/chromium $(CHROMIUM) && $(CHROMIUM) --version

chromium: $(CHROMIUM)

## jaeger: Jaeger all-in-one (v1.75.0) built from its Go module in
## hack/tools/jaeger (its own go.mod, so its dependencies stay out of igw's),
## cached in bin/: the tracing tests send spans to it over OTLP and read
## them back from its query API.
$(JAEGER): hack/tools/jaeger/go.mod hack/tools/jaeger/go.sum
	@mkdir -p $(BIN)
	cd hack/tools/jaeger && $(GO) build -p 2 $(TOOL_LDFLAGS) -o $(JAEGER).tmp github.com/jaegertracing/jaeger/cmd/jaeger
	mv $(JAEGER).tmp $(JAEGER)

jaeger: $(JAEGER)

## haproxy: Debian's haproxy, the round-robin load balancer in front of the
## active-active igw replicas of `igw bench compare --only igw-precise-x2,...`
## (and its test); installed with apt-get when missing and linked into bin/
$(HAPROXY):
	@mkdir -p $(BIN)
	@$(call apt_install,haproxy,/usr/sbin/haproxy)
	@path=$$(command -v haproxy || echo /usr/sbin/haproxy); \
	ln -sf "$$path" $(HAPROXY) && $(HAPROXY) -v | head -1

.PHONY: haproxy bench-tools
haproxy: $(HAPROXY)

## bench-tools: what the optional active-active contenders of igw bench need
bench-tools: $(HAPROXY) $(REDIS_SERVER)

## node-sdk: the official openai and @anthropic-ai/sdk npm packages, pinned in
## test/node/package-lock.json (versions that run on Node 20), installed with
## npm ci from the npm registry into bin/node-sdk for cmd/igw's SDK test.
## Without node and npm it says so and the test skips.
NODE_SDK := $(BIN)/node-sdk
NODE_SDK_STAMP := $(NODE_SDK)/node_modules/.installed

.PHONY: node-sdk
node-sdk:
	@if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then \
	  $(MAKE) -s --no-print-directory $(NODE_SDK_STAMP); \
	else \
	  echo "node-sdk: node or npm is not installed; the official-SDK test (cmd/igw TestSDK_*) will skip"; \
	fi

$(NODE_SDK_STAMP): test/node/package.json test/node/package-lock.json
	@mkdir -p $(NODE_SDK)
	cp test/node/package.json test/node/package-lock.json $(NODE_SDK)/
	cd $(NODE_SDK) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

## bench-go: run every testing.B benchmark once (figures go in docs/performance.md)
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem $(GO_PACKAGES)

## demo: simulated model servers behind igw, answering a curl. The first build on a
## fresh machine downloads and compiles the dependencies (a few minutes) and lists
## each package as it compiles it; Ctrl-C stops the demo
demo:
	@echo "Building bin/igw. On a fresh machine the first build downloads and compiles the dependencies: a few minutes, each package listed as it is compiled."
	$(GO) build -v -ldflags '$(LDFLAGS)' -o $(IGW) ./cmd/igw
	$(IGW) demo

clean:
	rm -rf $(BIN)

.PHONY: bench

## bench: the standard routing comparison (igw vs round-robin, least-request, random on
## 8 simulated replicas, bench/workloads/shared-prefix.yaml); report in bench/results/shared-prefix/
bench: build
	$(IGW) bench compare --workload bench/workloads/shared-prefix.yaml --out bench/results/shared-prefix

# --- chart-test: the Helm chart against a real API server -------------------
# Helm and kubectl are built from their Go modules in hack/tools/helm (its own
# go.mod, so their Kubernetes dependencies stay out of igw's), cached in bin/.
HELM_TOOLS := hack/tools/helm/go.mod hack/tools/helm/go.sum

.PHONY: chart-test test-tools

$(HELM): $(HELM_TOOLS)
	@mkdir -p $(BIN)
	cd hack/tools/helm && $(GO) build $(TOOL_LDFLAGS) -o $(HELM).tmp helm.sh/helm/v4/cmd/helm
	mv $(HELM).tmp $(HELM)

$(KUBECTL): $(HELM_TOOLS) hack/tools/helm/kubectl/main.go
	@mkdir -p $(BIN)
	cd hack/tools/helm && $(GO) build $(TOOL_LDFLAGS) -o $(KUBECTL).tmp ./kubectl
	mv $(KUBECTL).tmp $(KUBECTL)

## chart-test: lint and render config/charts/inferencepool (every provider, several value sets,
## the examples of docs/kubernetes.md), apply it with kubectl apply --server-side --dry-run=server
## to a real kube-apiserver + etcd (envtest) with config/crd/bases installed, then install it and
## run bin/igw with the rendered Deployment's arguments as the chart's ServiceAccount
# The tool module's own Go code (the test and kubectl's main) is vetted here;
# staticcheck over it would type-check all of Helm and kubectl again, minutes
# of a cold CI run for two small files.
chart-test: $(HELM) $(KUBECTL) envtest-assets build
	cd hack/tools/helm && $(GO) vet ./...
	cd hack/tools/helm && HELM=$(HELM) KUBECTL=$(KUBECTL) IGW=$(IGW) KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) \
	  $(GO) test -count=1 -timeout 10m ./charttest
