//go:build linux

package fortress

import "github.com/carverauto/fortress/internal/probe"

// KernelReport is what the kernel really offers, check by check.
type KernelReport struct {
	Release string            `json:"release"`
	Checks  map[string]bool   `json:"checks"`
	Reasons map[string]string `json:"reasons"`
}

// ProbeKernel runs the kernel feature probe: BTF, XDP attach modes, ring
// buffers, map-in-map, BPF links and a BPF LSM program that must really fire
// before Sentinel is trusted ("lsm"). It needs root for the trials.
func ProbeKernel() KernelReport {
	r := probe.Run()
	k := KernelReport{Release: r.Kernel, Checks: map[string]bool{}, Reasons: map[string]string{}}
	for _, c := range r.Checks {
		k.Checks[c.Name] = c.OK
		k.Reasons[c.Name] = c.Reason
	}
	return k
}
