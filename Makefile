# drplane — make help lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO        ?= go
BIN       := $(CURDIR)/bin
TOOLS     := $(CURDIR)/.tools
LAB_DIR   ?= $(CURDIR)/.lab
# The modules, as go.work lists them.
MODULES   := $(shell scripts/modules.sh)
SERVICES  := coordinator haagent reship collector
# Every package of every workspace module.
PKGS      := github.com/drplane/drplane/...
TEST_FLAGS ?= -count=1 -timeout 20m
# Where tests leave artifacts to look at (the dashboard's screenshots).
ARTIFACTS ?= $(CURDIR)/build/artifacts
# The Helm chart's tests: a module of its own, outside go.work (Helm's
# Kubernetes dependencies need a newer etcd than the workspace pins), so
# GOWORK=off. DRPLANE_BIN lets them run the service binaries' --check-config,
# DRPLANE_IMAGES check the images of make images against the chart.
CHART_TEST = cd deploy/charttest && DRPLANE_BIN=$(BIN) DRPLANE_IMAGES=$(IMAGE_DIR)/oci GOWORK=off $(GO) test $(TEST_FLAGS) ./...

# The container images (make images). VERSION defaults to the chart's
# appVersion, so the chart's default image tags name these images; it is
# stamped into the binaries (daemon.Version) and is the images' tag.
# REVISION and SOURCE_DATE_EPOCH (the commit and its time) are the labels and
# every file's time: two builds of one commit are identical.
IMAGE_DIR  ?= $(CURDIR)/build/images
STATIC_DIR ?= $(IMAGE_DIR)/bin
IMAGE_REPO ?= ghcr.io/drplane
VERSION    ?= $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$$/\1/p' deploy/helm/drplane/Chart.yaml)
REVISION   ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
# Static, path-free, version-stamped binaries; the Dockerfile runs this too.
STATIC_FLAGS := -trimpath -buildvcs=false -ldflags '-s -w -X github.com/drplane/drplane/pkg/daemon.Version=$(VERSION)'

.PHONY: help
help: ## list targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: deps-mariadb deps-java deps-chromium tools ## install what the build and tests need (MariaDB, a JDK and Maven, chromium via apt-get, pinned tools via go install)

.PHONY: deps-mariadb
deps-mariadb: ## install MariaDB server and client if mariadbd is missing
	@if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then \
		echo "deps: installing mariadb-server and mariadb-client"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq mariadb-server mariadb-client >/dev/null; \
	fi
	@/usr/sbin/mariadbd --version 2>/dev/null || mariadbd --version

.PHONY: deps-java
deps-java: ## install a JDK and Maven if missing (for the test Elasticsearch node)
	@if ! command -v java >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then \
		echo "deps: installing a JDK and Maven"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq default-jdk-headless maven >/dev/null; \
	fi
	@java -version 2>&1 | head -1

.PHONY: deps-chromium
deps-chromium: ## install Debian's chromium if missing (the dashboard's browser tests drive it headless)
	@if ! command -v chromium >/dev/null 2>&1 && [ -z "$$DRPLANE_CHROMIUM" ]; then \
		echo "deps: installing chromium"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null \
			|| echo "deps: chromium could not be installed: the browser tests will skip"; \
	fi
	@$${DRPLANE_CHROMIUM:-chromium} --version 2>/dev/null || true

.PHONY: tools
tools: ## install the pinned code generators and linters into .tools/
	@scripts/tools.sh ensure

.PHONY: build
build: ## build every binary into ./bin
	@mkdir -p $(BIN)
	@for s in $(SERVICES); do $(GO) build -o $(BIN)/$$s ./services/$$s/cmd/$$s || exit 1; done
	@$(GO) build -o $(BIN)/drctl ./cmd/drctl
	@$(GO) build -o $(BIN)/drlab ./cmd/drlab
	@echo "built: $(SERVICES) drctl drlab in ./bin"

.PHONY: static
static: ## the service binaries for images: static (CGO_ENABLED=0), -trimpath, VERSION stamped, into STATIC_DIR
	@mkdir -p $(STATIC_DIR)
	@for s in $(SERVICES); do CGO_ENABLED=0 $(GO) build $(STATIC_FLAGS) -o $(STATIC_DIR)/$$s ./services/$$s/cmd/$$s || exit 1; done
	@echo "static: $(SERVICES) $(VERSION) in $(STATIC_DIR)"

.PHONY: images
images: static ## the four service images, without Docker: OCI layout build/images/oci and build/images/drplane-images.tar (docker load)
	$(GO) run ./cmd/drimage --repo-root $(CURDIR) --bin $(STATIC_DIR) --out $(IMAGE_DIR) --repository $(IMAGE_REPO) \
		--version $(VERSION) --revision $(REVISION) --created $(SOURCE_DATE_EPOCH)

.PHONY: test
test: deps-mariadb deps-java deps-chromium build images ## install deps, build binaries and images, then run unit and integration tests (real mariadbd, etcd, NATS, Elasticsearch, headless chromium) and the chart and image tests
	DRPLANE_BIN=$(BIN) DRPLANE_ARTIFACTS=$(ARTIFACTS) $(GO) test $(TEST_FLAGS) $(PKGS)
	GO=$(GO) scripts/test-es.sh
	$(CHART_TEST)

.PHONY: test-charts
test-charts: build images ## the Helm chart's tests (deploy/charttest): lint, render per DC, strict decoding, service configs, the images
	$(CHART_TEST)

.PHONY: test-es
test-es: deps-java ## the Elasticsearch backends against a real single-node Elasticsearch (scripts/es-node.sh)
	GO=$(GO) scripts/test-es.sh

.PHONY: test-repeat
test-repeat: ## run make test N times (N=10; REPEAT_TARGET=test) and print the failures per test; logs in .test-repeat/
	@scripts/test-repeat.sh $(or $(N),10) $(or $(REPEAT_TARGET),test)

.PHONY: fuzz
fuzz: ## run every fuzz target beyond its seed corpus, FUZZTIME each (default 30s)
	@GO=$(GO) FUZZTIME=$(or $(FUZZTIME),30s) scripts/fuzz.sh

.PHONY: test-short
test-short: ## skip the whole-lab end-to-end test
	$(GO) test -short -count=1 $(PKGS)

.PHONY: lint
lint: tools ## golangci-lint v2 over every module (and deploy/charttest)
	@for m in $(MODULES); do echo "lint: $$m"; (cd $$m && $(TOOLS)/golangci-lint run --config $(CURDIR)/.golangci.yml ./...) || exit 1; done
	@echo "lint: deploy/charttest"; cd deploy/charttest && GOWORK=off $(TOOLS)/golangci-lint run --config $(CURDIR)/.golangci.yml ./...

.PHONY: proto
proto: ## regenerate the API code from proto/
	@scripts/proto.sh gen

.PHONY: verify
verify: verify-proto verify-fmt verify-mod ## fail when generated code, formatting or go.mod files are stale

.PHONY: verify-proto
verify-proto:
	@scripts/proto.sh verify

.PHONY: verify-fmt
verify-fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

.PHONY: verify-mod
verify-mod:
	@scripts/verify-mod.sh

.PHONY: run
run: build ## drlab up: the 3-DC lab in the foreground (Ctrl-C stops it)
	$(BIN)/drlab up --dir $(LAB_DIR)

# The demo's drill steps: 1-5. dc-loss and dc-return (drlab drill's default
# "all") are left out while a fault they found once under heavy load is not
# explained (README, "The DR drill"; docs/benchmarks.md).
DEMO_STEPS ?= kill,switchover,pause,evacuate,restore

.PHONY: demo
demo: deps-mariadb build ## start a fresh lab, run the DR drill on it, print the report, stop the lab
	$(BIN)/drlab drill --fresh --dir $(LAB_DIR) --steps $(DEMO_STEPS)

.PHONY: clean
clean: ## remove binaries and a lab left behind
	@[ ! -x $(BIN)/drlab ] || $(BIN)/drlab down --dir $(LAB_DIR)
	rm -rf $(BIN)
