# Targets a new machine needs: Go is assumed, Redis is installed on demand.
GO ?= go

.PHONY: demo test race fuzz bench compare build redis

build:
	$(GO) build -o bin/redis-relay ./cmd/redis-relay

# redis-server and redis-tools from Debian, when missing.
redis:
	@command -v redis-server >/dev/null 2>&1 || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server redis-tools; }

# A master, a relay and three replicas on this machine, under a write load.
demo: redis
	$(GO) run ./cmd/redis-relay demo

test: redis
	$(GO) test -count=1 ./...

race: redis
	$(GO) test -count=1 -race ./...

FUZZTIME ?= 30s
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzFramer -fuzztime=$(FUZZTIME) ./replstream/
	$(GO) test -run='^$$' -fuzz=FuzzPayloadLine -fuzztime=$(FUZZTIME) ./replstream/
	$(GO) test -run='^$$' -fuzz=FuzzCopyPayloadEOF -fuzztime=$(FUZZTIME) ./replstream/
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=$(FUZZTIME) ./rdbparse/
	$(GO) test -run='^$$' -fuzz=FuzzReadHeader -fuzztime=$(FUZZTIME) ./rdbparse/
	$(GO) test -run='^$$' -fuzz=FuzzClientCommands -fuzztime=$(FUZZTIME) ./proxy/
	$(GO) test -run='^$$' -fuzz=FuzzConfigParse -fuzztime=$(FUZZTIME) ./cmd/redis-relay/

bench:
	$(GO) test -run='^$$' -bench=. -benchtime=2s ./replstream/

# Relay vs direct replicas vs an intermediate redis-server (docs/BENCHMARKS.md).
compare: redis
	$(GO) run ./bench
