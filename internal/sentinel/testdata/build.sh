#!/bin/sh
# Builds the freestanding attack programs of the Sentinel lab tests
# (testdata/*.c -> testdata/*_amd64), committed so the lab needs no
# compiler. Run by `go generate` from internal/sentinel (see gen.go). The
# output is reproducible: no build id, no debug information, no path.
set -eu

: "${BPF2GO_CC:?not set: run make generate, or export BPF2GO_CC=clang-19}"

for src in testdata/*.c; do
	"$BPF2GO_CC" -target x86_64-linux-gnu -O2 -Wall -Werror -static -nostdlib -ffreestanding -fno-builtin \
		-fno-stack-protector -fPIE -fno-jump-tables -fcf-protection=none -fno-asynchronous-unwind-tables \
		-Wl,--build-id=none -Wl,-s -o "${src%.c}_amd64" "$src"
done
