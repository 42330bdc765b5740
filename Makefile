# Targets a new machine needs: Go is assumed, Redis and Prometheus are
# installed on demand.
GO ?= go

# make image: the container image of deploy/Dockerfile, tagged with the
# checkout's description. Push it and point deploy/kubernetes at it (README).
IMAGE ?= redis-relay
TAG ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BUILD_TIME := $(shell date -u +%Y-%m-%dT%H:%M:%SZ)

.PHONY: demo test race chaos fuzz bench compare compare-old compare-links build redis tools image

build:
	$(GO) build -buildvcs=auto -ldflags "-X main.buildTime=$(BUILD_TIME)" -o bin/redis-relay ./cmd/redis-relay

image:
	docker build -f deploy/Dockerfile --build-arg VERSION=$(TAG) --build-arg BUILD_TIME=$(BUILD_TIME) -t $(IMAGE):$(TAG) .

# redis-server and redis-tools from Debian, when missing.
redis:
	@command -v redis-server >/dev/null 2>&1 || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server redis-tools; }

# Everything the tests run: Redis, and Prometheus with promtool (the deploy
# tests check and unit-test the alert rules and scrape a relay with them).
tools: redis
	@command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends prometheus; }

# A master, a relay and three replicas on this machine, under a write load.
demo: redis
	$(GO) run ./cmd/redis-relay demo

test: tools
	$(GO) test -count=1 ./...

race: tools
	$(GO) test -count=1 -race ./...

# The chaos tests of proxy/chaos_test.go, longer than in make test and once
# per seed; each run logs its moves and the sync counts of every node.
CHAOS_DURATION ?= 60s
CHAOS_SEEDS ?= 1 2 3
chaos: redis
	@failed=""; for seed in $(CHAOS_SEEDS); do \
		echo "== chaos seed $$seed, $(CHAOS_DURATION) per test"; \
		$(GO) test -count=1 -timeout 60m -run '^TestChaos' -v ./proxy/ -chaos.seed=$$seed -chaos.duration=$(CHAOS_DURATION) || failed="$$failed $$seed"; \
	done; \
	if [ -n "$$failed" ]; then echo "chaos failed with seeds:$$failed"; exit 1; fi

FUZZTIME ?= 30s
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzFramer -fuzztime=$(FUZZTIME) ./replstream/
	$(GO) test -run='^$$' -fuzz=FuzzPayloadLine -fuzztime=$(FUZZTIME) ./replstream/
	$(GO) test -run='^$$' -fuzz=FuzzCopyPayloadEOF -fuzztime=$(FUZZTIME) ./replstream/
	$(GO) test -run='^$$' -fuzz=FuzzTimeIndex -fuzztime=$(FUZZTIME) ./replstream/
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=$(FUZZTIME) ./rdbparse/
	$(GO) test -run='^$$' -fuzz=FuzzReadHeader -fuzztime=$(FUZZTIME) ./rdbparse/
	$(GO) test -run='^$$' -fuzz=FuzzLibraries -fuzztime=$(FUZZTIME) ./rdbparse/
	$(GO) test -run='^$$' -fuzz=FuzzClientCommands -fuzztime=$(FUZZTIME) ./proxy/downstream/
	$(GO) test -run='^$$' -fuzz=FuzzAdminCommands -fuzztime=$(FUZZTIME) ./proxy/
	$(GO) test -run='^$$' -fuzz=FuzzParseRule -fuzztime=$(FUZZTIME) ./proxy/acl/
	$(GO) test -run='^$$' -fuzz=FuzzReadCommand -fuzztime=$(FUZZTIME) ./internal/resp/
	$(GO) test -run='^$$' -fuzz=FuzzConfigParse -fuzztime=$(FUZZTIME) ./cmd/redis-relay/

bench:
	$(GO) test -run='^$$' -bench=. -benchtime=2s ./replstream/

# Relay vs direct replicas vs an intermediate redis-server (docs/BENCHMARKS.md),
# redrawing the SVG plots next to it.
compare: redis
	$(GO) run ./bench -plots docs

# The relay against a build of an earlier commit, paired in one run:
# make compare-old OLD=<commit> (stream and fanout; docs/BENCHMARKS.md).
OLD_DIR := $(or $(TMPDIR),/tmp)/redis-relay-old
compare-old: redis
	@test -n "$(OLD)" || { echo "usage: make compare-old OLD=<commit>"; exit 2; }
	rm -rf $(OLD_DIR) && mkdir -p $(OLD_DIR)/src
	git archive $(OLD) | tar -x -C $(OLD_DIR)/src
	cd $(OLD_DIR)/src && $(GO) build -o $(OLD_DIR)/redis-relay ./cmd/redis-relay
	$(GO) run ./bench -scenarios stream,fanout -dataset 50mb -n 1,4 -stagger-n 0 -old-relay-bin $(OLD_DIR)/redis-relay

# The added latency of a zstd-compressed relay-to-relay hop against a plain
# one (docs/BENCHMARKS.md).
compare-links: redis
	$(GO) run ./bench -scenarios stream -configs chain,chain-zstd
