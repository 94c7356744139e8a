# Fortress build and test entry points. `make test` is the whole suite.

CLANG ?= clang-19
STRIP ?= llvm-strip-19
GO ?= go

# bpf2go reads these; every gen.go uses them, so one pinned toolchain
# produces every committed object.
export BPF2GO_CC := $(CLANG)
export BPF2GO_STRIP := $(STRIP)
export BPF2GO_CFLAGS := -O2 -g -Wall -Werror -mcpu=v3
export CGO_ENABLED := 0

.PHONY: all deps generate check-generate build vet test test-host test-race test-lab

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
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi

test-host:
	$(GO) test -count=1 ./...

# The race detector over every test that runs without root (RequireRoot
# skips them here; test-host and the lab run those). The race runtime needs
# cgo, for the test binaries only: shipped builds stay CGO_ENABLED=0.
test-race:
	FORTRESS_TEST_UNPRIVILEGED=1 CGO_ENABLED=1 $(GO) test -race -count=1 ./...

test-lab:
	$(GO) tool vmlab test --kernel all --test-timeout 20m

test: deps vet build check-generate test-host test-race test-lab
