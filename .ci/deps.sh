#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need, if missing.
set -euo pipefail
# gcc and libc6-dev: cgo for the race detector (test binaries only). ipset:
# the peer `fortressctl bench shield` measures Shield's apply against.
# lld-19: links the arm64 build of the Sentinel lab test programs.
pkgs=(gcc libc6-dev clang-19 llvm-19 lld-19 libbpf-dev bpftool qemu-system-x86 busybox-static iproute2 xdp-tools ipset protobuf-compiler chromium)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
go mod download
