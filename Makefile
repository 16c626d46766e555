# nri-netattach: the targets are a thin index over hack/*.sh.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GO      ?= go
BIN     := bin/nri-netattach
LDFLAGS := -s -w -X main.version=$(VERSION)
DESTDIR ?=
PREFIX  ?= /usr/local
NETWORKS ?= /etc/nri-netattach/networks.d

.PHONY: all help build test test-unit e2e-deps cluster-deps test-cluster demo bench install check-config fuzz clean distclean

all: build

help: ## this list
	@awk -F':.*## ' '/^[a-z][a-z0-9-]*:.*## / { printf "  %-13s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

build: ## the binaries, static: the daemon and CLI, and its wait-attached hook
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/ ./cmd/nri-netattach ./cmd/nri-netattach-wait

test: ## every tier: hygiene, unit + root (-race), e2e on a private containerd, cluster
	hack/test.sh

test-unit: ## the unit tier only, no root needed
	$(GO) test -race $$($(GO) list ./... | grep -v /e2e)

e2e-deps: ## build pinned containerd, runc, CNI plugins and the pause image into .cache/e2e
	hack/e2e-deps.sh

cluster-deps: ## build kube-apiserver, kubelet and an embedded etcd into .cache/cluster (first time: about half an hour)
	hack/cluster-deps.sh

test-cluster: e2e-deps cluster-deps ## the cluster tier only: a single-node cluster on a private containerd (root)
	$(GO) build -o .cache/e2e/ ./cmd/nri-netattach ./cmd/nri-netattach-wait
	$(GO) test -tags cluster -c -o .cache/cluster/cluster.test ./e2e/cluster
	NRI_NETATTACH_BINARY=$(CURDIR)/.cache/e2e/nri-netattach .cache/cluster/cluster.test -test.v -test.count=1 -test.timeout 20m

demo: build e2e-deps ## a private containerd, the plugin, a pod with two secondary networks
	hack/demo.sh

bench: build e2e-deps ## both attach modes beside Multus's design, containerd alone and the libcni floor, PASS/FAIL targets (BENCH_FLAGS=--skip-scale: no scale phase; MULTUS=PATH: Multus itself too, see hack/multus.sh)
	hack/bench.sh $(if $(MULTUS),--multus $(MULTUS)) $(BENCH_FLAGS)

install: build ## node-image layout under DESTDIR: plugin, its conf.d file, example network, CLI, hook
	DESTDIR=$(DESTDIR) PREFIX=$(PREFIX) hack/install.sh $(BIN)

check-config: build ## validate the networks in NETWORKS (for image build pipelines)
	$(BIN) validate --networks $(NETWORKS)

fuzz: ## run each fuzz target for 60s (not part of CI)
	$(GO) test -run XXX -fuzz FuzzParseAnnotation -fuzztime 60s ./config/
	$(GO) test -run XXX -fuzz FuzzParseDefinition -fuzztime 60s ./config/
	$(GO) test -run XXX -fuzz FuzzAnnotationToPlugins -fuzztime 60s ./attach/

clean: ## what the build and the tests made: bin/, test binaries, the e2e plugin build, bench output
	rm -rf bin .cache/bench .cache/e2e/nri-netattach .cache/e2e/nri-netattach-wait .cache/e2e/last-e2e.log
	find . -name '*.test' -not -path './.cache/*' -delete

distclean: clean ## also the cached e2e and cluster dependencies (containerd, runc, CNI plugins, kubelet, ...): the next test rebuilds them
	rm -rf .cache
