package probe

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/carverauto/fortress/internal/bytecode"
)

// Allowlist is the reviewed allowlist of the probe's trial programs.
var Allowlist = bytecode.Allowlist{
	lsmprobeProgProbeFileOpen: {Helpers: []asm.BuiltinFunc{asm.FnGetCurrentPidTgid, asm.FnMapLookupElem}},
	lsmprobeProgProbeXdp:      {},
}

// Embedded describes the probe object for fortressctl allowlist.
func Embedded() bytecode.Embedded {
	return bytecode.Embedded{Name: "probe", Load: loadLsmprobe, Allow: Allowlist}
}

// loadSpec returns the probe spec, checked against its allowlist.
func loadSpec() (*ebpf.CollectionSpec, error) {
	spec, err := loadLsmprobe()
	if err != nil {
		return nil, err
	}
	if _, err := bytecode.Check("probe", spec, Allowlist); err != nil {
		return nil, fmt.Errorf("probe allowlist check: %w", err)
	}
	return spec, nil
}
