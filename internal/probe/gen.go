package probe

//go:generate go tool bpf2go -target amd64,arm64 lsmprobe ../../bpf/probe/lsm_probe.c -- -I../../bpf/include -I../../bpf/lib
