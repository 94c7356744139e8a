// Package probe checks which eBPF features the running kernel really offers:
// BTF, XDP (native and generic attach on a throwaway veth pair inside a
// throwaway network namespace), ring buffers, LPM tries, map-in-map, bpf_link,
// and BPF LSM, which counts as usable only after a trial LSM program has been
// loaded, attached and seen to fire.
package probe
