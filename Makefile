# homemq — make run (dev broker), make test (everything CI runs).
GO        ?= go
NODE_DIR  := e2e/node
FUZZTIME  ?= 20s
BENCHTIME ?= 1s

.PHONY: build run test unit e2e node-deps bench bench-cutoff fuzz lint build-pi bench-compare bench-cluster clean

## build: bin/homemq (everything) and bin/homemq-agent (the Pi agent alone) for this machine
build:
	$(GO) build -buildvcs=auto -o bin/homemq ./cmd/homemq
	$(GO) build -buildvcs=auto -o bin/homemq-agent ./cmd/homemq-agent

## run: bin/homemq in dev mode on ./homemq-data (self-provisioned certificates and keys) with
## the demo home and agent; prints a sign-in link. Ctrl-C exits 0.
run: build
	./bin/homemq serve --demo $(ARGS)

## test: every Go test with the race detector (unit and e2e), and the JavaScript client tests
test: node-deps
	$(GO) vet ./...
	$(GO) test -race -count=1 -parallel 4 -timeout 15m ./...
	node --test clients/js/

node-deps: $(NODE_DIR)/node_modules/.installed

$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --no-audit --no-fund
	touch $@

bench:
	$(GO) test -run='^$$' -bench=. -benchmem -benchtime=$(BENCHTIME) ./topics ./envelope ./hooks ./auth

## bench-cutoff: revocation, expiry and shutdown times and PUBACK latency with a stalled reader present (e2e, a few minutes)
bench-cutoff:
	$(GO) test -run='^$$' -bench=Stalled -benchtime=3x -count=3 -timeout 30m ./e2e/

## bench-compare: homemq vs bare mochi vs Mosquitto under load (5 rounds, about 15 minutes, not part of test); writes docs/performance.md
bench-compare:
	GO=$(GO) bench/compare.sh

## bench-cluster: a cluster's scale (idle agents over three node processes, cross-node command round trip, re-admission after kill -9; about 3 minutes); prints the tables of docs/performance.md "A cluster's scale"
bench-cluster:
	$(GO) build -o $${TMPDIR:-/tmp}/homemq-bench-scale ./cmd/homemq-bench
	$${TMPDIR:-/tmp}/homemq-bench-scale cluster-scale $(ARGS)

## fuzz: every fuzz target for FUZZTIME each (corpus in testdata/fuzz)
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/func //'); do \
	    echo "== $$pkg $$f"; $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg; \
	  done; \
	done

## lint: gofmt, go.mod tidy, go vet and staticcheck (pinned by go.mod's tool directive)
lint:
	@test -z "$$(gofmt -l .)" || (echo "gofmt would change:"; gofmt -l .; exit 1)
	$(GO) mod tidy -diff
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	$(GO) test -count=1 -run '^TestNoLongSleepsInTests$$' ./internal/eventually/

## build-pi: the lean agent for Raspberry Pi: arm64 (Pi 3/4/5 on a 64-bit OS), arm v7 (Pi 2/3/4 on a 32-bit OS), arm v6 (Pi Zero/Zero W, Pi 1)
PI_FLAGS := -buildvcs=auto -trimpath -ldflags='-s -w'
build-pi:
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build $(PI_FLAGS) -o bin/homemq-agent-linux-arm64 ./cmd/homemq-agent
	GOOS=linux GOARCH=arm GOARM=7 CGO_ENABLED=0 $(GO) build $(PI_FLAGS) -o bin/homemq-agent-linux-armv7 ./cmd/homemq-agent
	GOOS=linux GOARCH=arm GOARM=6 CGO_ENABLED=0 $(GO) build $(PI_FLAGS) -o bin/homemq-agent-linux-armv6 ./cmd/homemq-agent

clean:
	rm -rf bin
