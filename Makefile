# nexmux developer targets. `make test` is the one test command (CI runs it,
# then `make e2e`, then a bounded `make fuzz`).

GO       ?= go
FUZZTIME ?= 30s
# Go minimizes each new input for up to 60s by default, during which a short
# run makes no progress (docs/bench/notes.md); crashers are still minimized.
FUZZMINIMIZETIME ?= 2s
PKGS     ?= ./...
# $(GO)'s own gofmt, which need not be on PATH; its failure (a file it
# cannot parse) fails the check.
GOFMT ?= $(shell $(GO) env GOROOT)/bin/gofmt
# Pinned; fetched through the module proxy like every dependency.
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
BIN      := bin

.PHONY: all build test test-short soak e2e demo fuzz bench bench-go pgo clean

all: build

build:
	$(GO) build -buildvcs=auto -o $(BIN)/nexmux ./cmd/nexmux
	$(GO) build -o $(BIN)/nexus-fixture ./fixtures/cmd/nexus-fixture
	$(GO) build -o $(BIN)/gencert ./fixtures/cmd/gencert

# benchtool is a module of its own, so ./... at the root leaves it out; the
# darwin and windows vets keep the non-Linux fallbacks (and the tests)
# compiling where developers run go build and go vet.
# -timeout: go test's default of 10 minutes per package binary is about
# what internal/daemon takes under -race on two cores.
test:
	@unformatted=$$($(GOFMT) -l .) || exit 1; if [ -n "$$unformatted" ]; then echo "gofmt -l lists:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)
	GOOS=darwin $(GO) vet $(PKGS)
	GOOS=windows $(GO) vet $(PKGS)
	$(STATICCHECK) $(PKGS)
	$(GO) test -race -count=1 -timeout 40m $(PKGS)
	cd scripts/benchtool && $(GO) vet ./... && $(STATICCHECK) ./... && $(GO) test -race -count=1 ./...

# The quick loop while editing: skips the 1 GiB, slowloris, load and
# binary-building tests.
test-short:
	$(GO) test -race -short -count=1 -timeout 40m $(PKGS)

# The load test for longer: SOAK=10m make soak
soak:
	NEXMUX_SOAK=$${SOAK:-1m} $(GO) test -race -count=1 -run '^TestLoad$$' -v ./internal/daemon

# Real docker/skopeo clients against nexmux and the Nexus fixture; needs root
# (private dockerd, /etc/hosts, /etc/docker/certs.d, iptables).
e2e:
	bash scripts/e2e.sh

demo:
	bash scripts/demo.sh

# Runs every Fuzz* function of every package for $(FUZZTIME) each (go test
# takes one -fuzz target per run). Fails on the first failing target; a
# failing input is written to that package's testdata/fuzz/ to commit, and
# printed, since CI's clone is thrown away.
# Go 1.26's fuzz coordinator can end a run at -fuzztime with a bare
# "context deadline exceeded" and no failing input (go.dev/issue/75804,
# fixed in 1.27): that ending is reported, not failed on.
fuzz:
	@set -e; found=0; out=$$(mktemp); trap 'rm -f "$$out"' EXIT; \
	pkgs=$$($(GO) list $(PKGS)); \
	for pkg in $$pkgs; do \
		list=$$($(GO) test -list 'Fuzz.*' $$pkg); \
		for fn in $$(printf '%s\n' "$$list" | grep -E '^Fuzz[A-Za-z0-9_]*$$' || true); do \
			found=$$((found + 1)); \
			echo "== fuzz $$pkg $$fn ($(FUZZTIME))"; \
			rc=0; $(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINIMIZETIME) $$pkg >"$$out" 2>&1 || rc=$$?; \
			cat "$$out"; \
			if [ $$rc != 0 ]; then \
				if grep -q '^    context deadline exceeded$$' "$$out" && ! grep -q 'Failing input written to' "$$out"; then \
					echo "fuzz: $$fn: Go's -fuzztime deadline race (go.dev/issue/75804), no failing input: not a failure"; \
				else \
					f=$$(sed -n 's/^ *Failing input written to //p' "$$out" | head -n 1); \
					if [ -n "$$f" ]; then echo "== $$fn failing input ($$pkg $$f), to commit:"; cat "$$($(GO) list -f '{{.Dir}}' $$pkg)/$$f" || true; fi; \
					exit $$rc; \
				fi; \
			fi; \
		done; \
	done; \
	echo "fuzz: $$found target(s) ran"

# nexmux side by side with nginx (Sonatype config and tuned) and the
# no-proxy TLS limit; writes docs/bench/. Installs nginx with apt if missing.
bench:
	bash scripts/bench.sh

# Refreshes cmd/nexmux/default.pgo, the CPU profile go build uses for
# profile-guided optimisation of nexmux: the small-request matrix of
# make bench with profiling on (root, like make bench), nexmux's profiles
# merged. Take it again when the request path changes much.
pgo:
	rm -rf .pgo && mkdir -p .pgo
	BENCH_PROFILE=$(CURDIR)/.pgo/prof BENCH_ONLY=small BENCH_SMALL_ROUNDS=1 BENCH_OUT=$(CURDIR)/.pgo/out bash scripts/bench.sh
	$(GO) tool pprof -proto .pgo/prof/nexmux-*.pprof > cmd/nexmux/default.pgo
	rm -rf .pgo

# The Go benchmarks of the hot paths, with allocation counts.
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

clean:
	rm -rf $(BIN) .demo
