# homemq — make run (dev broker), make test (everything CI runs).
GO        ?= go
NODE_DIR  := e2e/node
FUZZTIME  ?= 20s
BENCHTIME ?= 1s

.PHONY: build run test unit e2e node-deps bench fuzz lint build-pi bench-compare clean

build:
	$(GO) build -buildvcs=auto -o bin/homemq ./cmd/homemq

## run: bin/homemq in dev mode on ./homemq-data (self-provisioned certificates and keys) with
## the demo home and agent; prints a sign-in link. Ctrl-C exits 0.
run: build
	./bin/homemq serve --demo $(ARGS)

## test: every Go test with the race detector (unit and e2e), and the JavaScript client tests
test: node-deps
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...
	node --test clients/js/

node-deps: $(NODE_DIR)/node_modules/.installed

$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --no-audit --no-fund
	touch $@

bench:
	$(GO) test -run='^$$' -bench=. -benchmem -benchtime=$(BENCHTIME) ./topics ./envelope ./hooks ./auth

## bench-compare: homemq vs bare mochi vs Mosquitto under load (about 10 minutes, not part of test); writes docs/performance.md
bench-compare:
	GO=$(GO) bench/compare.sh

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

## build-pi: the agent for Raspberry Pi (linux/arm64 and linux/arm v7)
build-pi:
	GOOS=linux GOARCH=arm64 $(GO) build -o bin/homemq-linux-arm64 ./cmd/homemq
	GOOS=linux GOARCH=arm GOARM=7 $(GO) build -o bin/homemq-linux-armv7 ./cmd/homemq

clean:
	rm -rf bin
