#!/bin/sh
# Builds the freestanding attack programs of the Sentinel lab tests
# (testdata/*.c -> testdata/*_amd64 and testdata/*_arm64), committed so the
# lab needs no compiler. Run by `go generate` from internal/sentinel (see
# gen.go). The output is reproducible: no build id, no debug information,
# no path. arm64 links with lld (lld-19; the host's ld is x86 only), with
# 4 KiB pages and no RELRO gap, so that the image setexe copies is one
# contiguous mapping as on x86.
set -eu

: "${BPF2GO_CC:?not set: run make generate, or export BPF2GO_CC=clang-19}"

build() {
	"$BPF2GO_CC" -O2 -Wall -Werror -static -nostdlib -ffreestanding -fno-builtin \
		-fno-stack-protector -fPIE -fno-jump-tables -fno-asynchronous-unwind-tables \
		-Wl,--build-id=none -Wl,-s "$@"
}

for src in testdata/*.c; do
	build -target x86_64-linux-gnu -fcf-protection=none -o "${src%.c}_amd64" "$src"
	build -target aarch64-linux-gnu -fuse-ld=lld -mbranch-protection=none -Wl,-z,max-page-size=4096 -Wl,-z,norelro -o "${src%.c}_arm64" "$src"
done
