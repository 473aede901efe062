# Clearance: build, test, generate, demo, bench.
SHELL := /bin/bash
GO    ?= go
# BIN: where the binaries and pinned Go tools go (make demo BIN=/tmp/x builds and installs there)
BIN   ?= $(CURDIR)/bin
override BIN := $(abspath $(BIN))
export PATH := $(BIN):$(PATH)

PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
GRPCURL_VERSION            := v1.9.4
SCEPCLIENT_VERSION         := v2.3.0

PROTOS := $(shell find proto/clearance -name '*.proto' | sort)

.PHONY: all build pkg cross tidy deps deps-demo test fuzz generate check-generated tools demo bench bench-full bench-postgres profile profile-ingest vet clean

all: build

## build: the binaries into ./bin, with the version (VERSION) and commit that
## `clearance-verifier --version` and `clearance-agent --version` print
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)$(shell git diff --quiet HEAD -- 2>/dev/null || echo -dirty)
LDFLAGS  = -X main.version=$(VERSION) -X github.com/clearance/clearance/agent/version.Version=$(VERSION) \
           -X github.com/clearance/clearance/pkg/cli.commit=$(COMMIT)
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./verifier/cmd/... ./agent/cmd/... ./internal/osquerysim/cmd/...

## tools: the pinned code generators, grpcurl and scepclient, installed into ./bin
tools: $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc $(BIN)/grpcurl $(BIN)/scepclient

$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(BIN)/protoc-gen-go-grpc:
	GOBIN=$(BIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
$(BIN)/grpcurl:
	GOBIN=$(BIN) $(GO) install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)
$(BIN)/scepclient:
	GOBIN=$(BIN) $(GO) install github.com/micromdm/scep/v2/cmd/scepclient@$(SCEPCLIENT_VERSION)

## generate: regenerate proto/gen from proto/ (needs protoc from protobuf-compiler)
generate: $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc
	rm -rf proto/gen
	mkdir -p proto/gen
	protoc -I proto -I /usr/include \
		--plugin=protoc-gen-go=$(BIN)/protoc-gen-go \
		--plugin=protoc-gen-go-grpc=$(BIN)/protoc-gen-go-grpc \
		--go_out=proto/gen --go_opt=paths=source_relative \
		--go-grpc_out=proto/gen --go-grpc_opt=paths=source_relative \
		$(PROTOS)

## check-generated: fail if proto/gen is not what `make generate` produces
check-generated: generate
	@git diff --exit-code --stat -- proto/gen || { echo "proto/gen is stale: run 'make generate' and commit" >&2; exit 1; }
	@test -z "$$(git status --porcelain -- proto/gen)" || { git status --porcelain -- proto/gen; echo "proto/gen has untracked files: run 'make generate' and commit" >&2; exit 1; }

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed" >&2; exit 1; }

## tidy: go mod tidy. -e because tidy also wants modules that only the tests of
## go.step.sm/crypto/kms's cloud backends import, which the module proxy here
## does not serve; nothing in this module needs them.
tidy:
	$(GO) mod tidy -e

## deps: system packages the tests need (protoc, chromium, …) and the pinned npm packages, installed if missing
deps:
	@scripts/deps.sh test
	@scripts/npm.sh

## deps-demo: the system packages make demo needs (curl, util-linux for flock), installed if missing
deps-demo:
	@scripts/deps.sh demo

## pkg: dist/clearance-agent-$(VERSION).pkg, universal, reproducible, with the uninstall script and the
## MDM scripts (Jamf Pro extension attribute, Kandji audit, Intune custom attribute) beside it (see docs/packaging.md)
VERSION ?= 0.0.0-dev
pkg:
	SOURCE_DATE_EPOCH=$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct)} \
		$(GO) run ./packaging/cmd/clearance-pkg -version "$(VERSION)" -commit "$(COMMIT)" -uninstall-script dist/clearance-agent-uninstall.sh -mdm-scripts dist

## cross: the agent for both Mac architectures (no cgo: the Secure Enclave
## needs a darwin cgo toolchain, and the agent falls back to a key file) and Linux
cross:
	GOOS=darwin GOARCH=arm64 CGO_ENABLED=0 $(GO) build -o /dev/null ./agent/cmd/clearance-agent
	GOOS=darwin GOARCH=amd64 CGO_ENABLED=0 $(GO) build -o /dev/null ./agent/cmd/clearance-agent
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build -o /dev/null ./agent/cmd/clearance-agent

# The fault tests (verifier and agent killed, disk full, acks lost, clock
# skew, re-enrollment across replicas) run three times in a row: a fault
# path that passes only sometimes is a fault path that does not work.
FAULT_TESTS = ^(TestAgentSurvivesLostAcksResetAndKill|TestClockSkewedAgent|TestVerifierSIGKILLUnderLoad|TestDiskFullRecovers|TestReenrollmentEndsStreamOnOtherReplica)$$

## test: everything CI runs: generated code is current, vet/gofmt, cross-builds, all tests, the fault tests three times, fuzzing
test: deps tools check-generated vet cross
	$(GO) test -count=1 -timeout 20m -skip '$(FAULT_TESTS)' ./...
	$(GO) test -count=3 -timeout 10m -run '$(FAULT_TESTS)' ./e2e/
	$(MAKE) --no-print-directory fuzz

## fuzz: each fuzz target briefly, beyond its seed corpus (FUZZTIME each, 2s, FUZZJOBS at a time,
## 2; one fuzzing test binary a package; longer: make fuzz FUZZTIME=2m)
FUZZTIME ?= 2s
FUZZJOBS ?= 2
fuzz:
	@FUZZJOBS=$(FUZZJOBS) scripts/fuzz.sh $(FUZZTIME)

## demo: the verifier on SQLite plus a simulated Mac, end to end (installs curl, flock and grpcurl if missing)
demo: deps-demo build $(BIN)/grpcurl
	@BIN=$(BIN) scripts/demo.sh

## bench: report verify+store against the raw ECDSA P-256 verify ceiling, SSO sign-ins (decisions/s, p50/p99) against the raw RSA-2048 sign, Cloudflare 1,000-device posture batches (batches/s, p99) against the Access token check; then clearance-loadgen end to end (500 agents) and one table
bench: $(BIN)/grpcurl
	@IDLE_SECONDS=$${IDLE_SECONDS:-20} scripts/bench.sh

## bench-postgres: bench with the verifier storing in a throwaway PostgreSQL on loopback
## (the end-to-end table; the in-process Go benchmarks stay on SQLite)
bench-postgres: $(BIN)/grpcurl
	@BENCH_DATABASE=postgres IDLE_SECONDS=$${IDLE_SECONDS:-20} scripts/bench.sh

## bench-full: bench with 20,000 agents (the connections target), longer phases and the agent's full 60s at rest
bench-full: $(BIN)/grpcurl
	@BENCHTIME=$${BENCHTIME:-5s} IDLE_SECONDS=$${IDLE_SECONDS:-60} INTERVAL=$${INTERVAL:-60s} \
		LOADGEN_AGENTS=$${LOADGEN_AGENTS:-20000} LOADGEN_DURATION=$${LOADGEN_DURATION:-90s} LOADGEN_INTERVAL=$${LOADGEN_INTERVAL:-60s} \
		CEILING_BENCHTIME=$${CEILING_BENCHTIME:-5s} MEMORY_AGENTS=$${MEMORY_AGENTS:-0} scripts/bench.sh

## profile: the sign-in path under BenchmarkSSOBesidePeer, one row at a time (agent proof,
## certificate, the crewjam peer), with -cpuprofile/-memprofile, and `go tool pprof -top`
## of each (PROFILE_ROWS, PROFILE_BENCHTIME, PROFILE_DIR to keep the profiles: scripts/profile.sh)
profile:
	@scripts/profile.sh

## profile-ingest: heap and goroutines with PROFILE_AGENTS agents connected, and CPU and
## allocations over PROFILE_SECONDS of back-to-back reports, from an in-process verifier (BenchmarkIngestStream)
## with loadgen's agents; profiles and summaries in PROFILE_DIR (see docs/performance.md)
PROFILE_DIR     ?= /tmp/clearance-profile
PROFILE_AGENTS  ?= 1000
PROFILE_SECONDS ?= 10
profile-ingest:
	@mkdir -p $(PROFILE_DIR)
	set -o pipefail; CLEARANCE_PROFILE_DIR=$(PROFILE_DIR) CLEARANCE_PROFILE_AGENTS=$(PROFILE_AGENTS) CLEARANCE_PROFILE_SECONDS=$(PROFILE_SECONDS) \
		$(GO) test -run '^$$' -bench '^BenchmarkIngestStream$$' -benchtime 1x -count 1 -timeout 30m ./verifier/server/ | tee $(PROFILE_DIR)/bench.txt
	$(GO) tool pprof -top -nodecount 40 -sample_index inuse_space $(PROFILE_DIR)/heap.pprof > $(PROFILE_DIR)/heap.txt
	$(GO) tool pprof -top -nodecount 40 $(PROFILE_DIR)/goroutine.pprof > $(PROFILE_DIR)/goroutine.txt
	$(GO) tool pprof -top -cum -nodecount 60 $(PROFILE_DIR)/cpu.pprof > $(PROFILE_DIR)/cpu.txt
	$(GO) tool pprof -top -nodecount 40 -sample_index alloc_space -base $(PROFILE_DIR)/allocs-connected.pprof $(PROFILE_DIR)/allocs.pprof > $(PROFILE_DIR)/allocs.txt
	@echo "profiles and summaries in $(PROFILE_DIR): go tool pprof -http=: $(PROFILE_DIR)/cpu.pprof" >&2

clean:
	rm -rf $(BIN) dist
