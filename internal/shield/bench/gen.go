package bench

//go:generate go tool bpf2go -target amd64,arm64 bench ../../../bpf/shield/bench.c -- -I../../../bpf/include -I../../../bpf/lib
