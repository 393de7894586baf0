# nsys-agent — see README.md. `make demo` and `make test` are the quickstart.
GO        ?= go
BIN       := bin
PKGS      := ./...
GOFLAGS   ?=
# cgo on: the demo target's rank workers call libc so nsys --trace=osrt sees them.
export CGO_ENABLED ?= 1

.PHONY: all build test test-deps ci bench bench-merge bench-analyze bench-fleet demo proto proto-check vet fmt-check nsys clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/...

# Installs nsys if it is missing (needs root on Debian), then runs every test with -race.
# Tests that need nsys fail (never skip) when CI=true and nsys is missing.
test: nsys test-deps
	CGO_ENABLED=1 $(GO) test -race -count=1 -p 1 -timeout 30m $(PKGS)

nsys:
	@bash scripts/install-nsys.sh

# Chromium for the HTML report screenshot test (needs root to install; idempotent).
test-deps:
	@bash scripts/install-test-deps.sh

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

ci: fmt-check vet proto-check test

# The plugin wire's Go code from proto/**/*.proto, with the generators pinned in go.mod
# (no protoc); proto-check fails with a diff when the committed code is stale.
proto:
	@bash scripts/gen-proto.sh

proto-check:
	@bash scripts/gen-proto.sh --check

# Control overhead vs bare nsys, then the read routes under 1 000 req/s each while a window
# captures (docs/performance.md).
bench: build
	$(GO) run ./scripts/bench-control -bin $(BIN)/nsys-agent
	$(GO) run ./scripts/bench-api -bin $(BIN)/nsys-agent

# Merge/analyze throughput and peak RSS on generated 4-rank traces of 1 M and 4 M events
# (kept under $${TMPDIR:-/tmp}/nsys-agent-bench-merge). SGLANG_MERGER=path/to/profile_merger.py
# also times SGLang's ProfileMerger on the same input.
bench-merge: build
	$(GO) run ./scripts/bench-merge -bin $(BIN)/nsys-agent $(if $(SGLANG_MERGER),-sglang $(SGLANG_MERGER))

# analyze at 1 M and 16 M generated kernels, as Kineto traces and as an nsys export: time
# and peak RSS (docs/performance.md).
bench-analyze: build
	$(GO) run ./scripts/bench-merge -bin $(BIN)/nsys-agent -analyze-kernels 1000000,16000000 -nsys

# Group windows on N real agents on this machine (16, 32, 64; demo targets under the real
# nsys, torch plugin): the start's phases, stop, pull, merge, start and fire skew, medians
# of 3 (docs/fleet.md). FLEET_N=16,32 or FLEET_FLAGS=-concurrency=8 to change them.
FLEET_N ?= 16,32,64
bench-fleet: nsys build
	$(GO) run ./scripts/bench-fleet -bin $(BIN)/nsys-agent -n $(FLEET_N) $(FLEET_FLAGS)

demo: nsys build
	@bash scripts/demo.sh

clean:
	rm -rf $(BIN)
