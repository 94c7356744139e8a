#!/bin/sh
# Compiles the C test objects of internal/bytecode into testdata/*.o.
# Run by `go generate` from internal/bytecode (see gen.go); `make generate`
# exports BPF2GO_CC and BPF2GO_STRIP. The output is reproducible: no absolute
# path reaches the object (relative -I, debug prefix map, compilation dir)
# and DWARF is stripped, keeping only BTF.
set -eu

: "${BPF2GO_CC:?not set: run make generate, or export BPF2GO_CC=clang-19}"
: "${BPF2GO_STRIP:?not set: run make generate, or export BPF2GO_STRIP=llvm-strip-19}"

for src in testdata/*.c; do
	obj="${src%.c}.o"
	"$BPF2GO_CC" -target bpf -O2 -g -mcpu=v3 -Wall -Werror \
		-fdebug-prefix-map="$PWD"=. -fdebug-compilation-dir . \
		-I../../bpf/include \
		-c "$src" -o "$obj"
	"$BPF2GO_STRIP" -g "$obj"
done
