# nri-netattach: the targets are a thin index over hack/*.sh.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GO      ?= go
BIN     := bin/nri-netattach
LDFLAGS := -s -w -X main.version=$(VERSION)
DESTDIR ?=
PREFIX  ?= /usr/local
NETWORKS ?= /etc/nri-netattach/networks.d

.PHONY: all help build test test-unit e2e-deps demo bench install check-config fuzz clean distclean

all: build

help: ## this list
	@awk -F':.*## ' '/^[a-z][a-z0-9-]*:.*## / { printf "  %-13s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

build: ## the binary, static
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/nri-netattach

test: ## every tier: hygiene, unit + root (-race), e2e on a private containerd
	hack/test.sh

test-unit: ## the unit tier only, no root needed
	$(GO) test -race $$($(GO) list ./... | grep -v /e2e)

e2e-deps: ## build pinned containerd, runc, CNI plugins and the pause image into .cache/e2e
	hack/e2e-deps.sh

demo: build e2e-deps ## a private containerd, the plugin, a pod with two secondary networks
	hack/demo.sh

bench: build e2e-deps ## both attach modes beside the libcni floor, PASS/FAIL targets (BENCH_FLAGS=--skip-scale: no scale phase)
	hack/bench.sh $(BENCH_FLAGS)

install: build ## node-image layout under DESTDIR: plugin, its conf.d file, example network, CLI
	DESTDIR=$(DESTDIR) PREFIX=$(PREFIX) hack/install.sh $(BIN)

check-config: build ## validate the networks in NETWORKS (for image build pipelines)
	$(BIN) validate --networks $(NETWORKS)

fuzz: ## run each fuzz target for 60s (not part of CI)
	$(GO) test -run XXX -fuzz FuzzParseAnnotation -fuzztime 60s ./config/
	$(GO) test -run XXX -fuzz FuzzParseDefinition -fuzztime 60s ./config/
	$(GO) test -run XXX -fuzz FuzzAnnotationToPlugins -fuzztime 60s ./attach/

clean: ## what the build and the tests made: bin/, test binaries, the e2e plugin build, bench output
	rm -rf bin .cache/bench .cache/e2e/nri-netattach .cache/e2e/last-e2e.log
	find . -name '*.test' -not -path './.cache/*' -delete

distclean: clean ## also the cached e2e dependencies (containerd, runc, CNI plugins): the next test rebuilds them
	rm -rf .cache
