# Fortress build and test entry points. `make test` is the whole suite.

# Modules of their own (excluded from ./...): built, vetted and tested
# beside the main module.
EXAMPLES := examples/serviceradar

CLANG ?= clang-19
STRIP ?= llvm-strip-19
GO ?= go
# ServiceRadar's module says go 1.25.0: the newest Go 1.25, fetched from the
# module proxy (GOTOOLCHAIN), builds and tests Fortress besides $(GO).
GO125 ?= go1.25.14
# Where ServiceRadar's agent ships.
PLATFORMS := linux/amd64 linux/arm64 darwin/arm64 windows/amd64

# bpf2go reads these; every gen.go uses them, so one pinned toolchain
# produces every committed object.
export BPF2GO_CC := $(CLANG)
export BPF2GO_STRIP := $(STRIP)
export BPF2GO_CFLAGS := -O2 -g -Wall -Werror -mcpu=v3
export CGO_ENABLED := 0

.PHONY: all deps generate check-generate build vet cross test test-host test-go125 test-race test-lab test-lab-arm64 test-lab-arm64-ci bench bench-sentinel

all: build

deps:
	./.ci/deps.sh

generate:
	$(GO) generate ./...

# Regenerates every embedded object and fails if anything differs from
# what is committed.
check-generate: generate
	@git add -N . >/dev/null 2>&1 || true
	@if ! git diff --quiet --exit-code; then \
		git diff --stat; echo "check-generate: generated files differ from the committed ones; run make generate"; exit 1; fi

build:
	$(GO) build ./...

vet:
	$(GO) vet ./...
	@set -e; for m in $(EXAMPLES); do (cd $$m && $(GO) vet ./...); done
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi

# pkg/... builds and vets on every platform (off Linux, Start returns
# ErrUnsupported); everything, the agent included, builds for linux/arm64.
cross:
	@set -e; for p in $(PLATFORMS); do \
		echo "cross: ./pkg/... for $$p"; \
		GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) build ./pkg/...; \
		GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) vet ./pkg/...; \
	done
	GOOS=linux GOARCH=arm64 $(GO) build ./...
	@set -e; for m in $(EXAMPLES); do for p in $(PLATFORMS); do \
		(cd $$m && GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) vet ./...); done; done

test-host:
	$(GO) test -count=1 ./...
	@set -e; for m in $(EXAMPLES); do echo "test: $$m"; (cd $$m && $(GO) test -count=1 ./...); done

# The race detector over every test that runs without root (RequireRoot
# skips them here; test-host and the lab run those). The race runtime needs
# cgo, for the test binaries only: shipped builds stay CGO_ENABLED=0.
test-race:
	FORTRESS_TEST_UNPRIVILEGED=1 CGO_ENABLED=1 $(GO) test -race -count=1 ./...
	@set -e; for m in $(EXAMPLES); do (cd $$m && FORTRESS_TEST_UNPRIVILEGED=1 CGO_ENABLED=1 $(GO) test -race -count=1 ./...); done

# Once with Go 1.25: build, vet and the tests that need no root (the
# privileged ones run in test-host and in the lab with $(GO)).
test-go125:
	GOTOOLCHAIN=$(GO125) $(GO) build ./...
	GOTOOLCHAIN=$(GO125) $(GO) vet ./...
	FORTRESS_TEST_UNPRIVILEGED=1 GOTOOLCHAIN=$(GO125) $(GO) test -count=1 ./...
	@set -e; for m in $(EXAMPLES); do (cd $$m && FORTRESS_TEST_UNPRIVILEGED=1 GOTOOLCHAIN=$(GO125) $(GO) test -count=1 ./...); done

test-lab:
	$(GO) tool vmlab test --kernel all --test-timeout 30m --timeout 45m

# arm64 in the lab: qemu-system-aarch64, emulated on the x86-64 hosts.
# test-lab-arm64 runs every lab package on Debian's arm64 6.1 and 6.12
# (on 6.1, where arm64 cannot attach LSM programs, the Sentinel tests check
# that it is reported unavailable and why). CI runs test-lab-arm64-ci: one
# kernel (6.12), the probe, Shield's traffic tests and a representative
# part of the Sentinel attack suite, to stay within its time.
ARM64_CI_KERNEL ?= 6.12
ARM64_CI_TESTS := TestReportConsistent|TestNonRootWithCapabilitySet|TestVerdicts|TestRealTrafficOnVeth|TestSwapUnderTraffic|TestNetlinkDetachRefused|TestAgentOnVeth|TestLabRmRfConfig|TestLabConfigAttacks|TestLabAgentBinaryAttacks|TestLabBPFStateAttacks|TestLabLegitimate|TestSentinelInLab|TestShieldGuardedInLab|TestBPFBackdoorsInLab|TestLabReleaseLayout|TestServiceRadarPeerSentinelInLab|TestNonRootAgentInLab|TestLabRoleTracedExec|TestLabRoleExeSwap|TestLabRoleSeccomp|TestLabRoleExecByFD|TestLabRoleFreshProcess

test-lab-arm64:
	$(GO) tool vmlab test --arch arm64 --kernel all --test-timeout 40m --timeout 90m

test-lab-arm64-ci:
	$(GO) tool vmlab test --arch arm64 --kernel $(ARM64_CI_KERNEL) --run '^($(ARM64_CI_TESTS))$$' --test-timeout 20m

test: deps vet build cross check-generate test-host test-go125 test-race test-lab test-lab-arm64-ci

# Benchmarks live in tools/bench, outside the shipped binaries. Shield's
# runs on this host as root; Sentinel's needs BPF LSM, so it runs in the VM
# lab, the bench binary handed to the guest with --add.
BENCH_SHIELD ?= --shape feed --cidrs-v4 1000000 --cidrs-v6 100000 --json
BENCH_SENTINEL ?= --json
LAB_KERNEL ?= 6.1
bench:
	$(GO) tool bench shield $(BENCH_SHIELD)

bench-sentinel:
	@dir=$$(mktemp -d) && trap 'rm -rf "$$dir"' EXIT && \
		$(GO) build -o "$$dir/bench" ./tools/bench && \
		$(GO) tool vmlab run $(VMLAB_FLAGS) --add "$$dir" --kernel $(LAB_KERNEL) -- ./bench sentinel $(BENCH_SENTINEL)
