package bytecode

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// Embedded describes one BPF object embedded in a Fortress binary, for
// fortressctl allowlist. Load returns the object's spec (typically the
// bpf2go-generated loadX function); Allow is its reviewed allowlist.
type Embedded struct {
	Name  string
	Load  func() (*ebpf.CollectionSpec, error)
	Allow Allowlist
}

// Check loads the object's spec and checks it against its allowlist.
func (e Embedded) Check() (Report, error) {
	if e.Load == nil {
		return Report{Object: e.Name}, fmt.Errorf("check %s: no loader", e.Name)
	}
	spec, err := e.Load()
	if err != nil {
		return Report{Object: e.Name}, fmt.Errorf("check %s: load spec: %w", e.Name, err)
	}
	return Check(e.Name, spec, e.Allow)
}
