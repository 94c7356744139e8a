package sentinel

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
)

// optionalHooks exist only on some kernels; a program for one is dropped
// where the hook is missing. Every other hook is required.
var optionalHooks = map[string]string{
	// ACLs go through inode_setxattr before 6.2.
	"inode_set_acl":    "ACL changes are xattr changes on this kernel",
	"inode_remove_acl": "ACL changes are xattr changes on this kernel",
	// The compat ioctl hook is 6.8+ (and stable backports).
	"file_ioctl_compat": "compat ioctls go through file_ioctl on this kernel",
}

var variantSuffix = regexp.MustCompile(`_a([0-9])$`)

// selectPrograms removes from spec the programs that do not fit the running
// kernel: variants whose dentry argument is not where the kernel's hook has
// it, and programs for optional hooks the kernel lacks. It fails if a
// required hook is missing. It returns notes on what was dropped.
func selectPrograms(spec *ebpf.CollectionSpec, kernel *btf.Spec) ([]string, error) {
	var notes []string
	for name, p := range spec.Programs {
		hook := p.AttachTo
		var fn *btf.Func
		if p.Type == ebpf.Tracing {
			// fentry programs feed LSM decisions: their function is required.
			if err := kernel.TypeByName(hook, &fn); err != nil {
				return nil, fmt.Errorf("kernel function %s missing on this kernel: %w", hook, err)
			}
			continue
		}
		if err := kernel.TypeByName("bpf_lsm_"+hook, &fn); err != nil {
			if why, ok := optionalHooks[hook]; ok {
				delete(spec.Programs, name)
				notes = append(notes, fmt.Sprintf("%s: no hook %s (%s)", name, hook, why))
				continue
			}
			return nil, fmt.Errorf("lsm hook %s missing on this kernel: %w", hook, err)
		}
		m := variantSuffix.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		want, _ := strconv.Atoi(m[1])
		proto, ok := fn.Type.(*btf.FuncProto)
		if !ok {
			return nil, fmt.Errorf("hook %s: no prototype", hook)
		}
		at := -1
		for i, param := range proto.Params {
			if param.Name == "dentry" {
				at = i
				break
			}
		}
		if at < 0 {
			return nil, fmt.Errorf("hook %s: no dentry argument", hook)
		}
		if at != want {
			delete(spec.Programs, name)
		}
	}
	// Every hook that has variants must keep exactly one.
	kept := map[string]int{}
	for _, p := range spec.Programs {
		kept[p.AttachTo]++
	}
	for hook, n := range kept {
		if n > 1 {
			return nil, fmt.Errorf("hook %s: %d programs fit this kernel", hook, n)
		}
	}
	for _, hook := range []string{"inode_setattr", "inode_setxattr", "inode_removexattr"} {
		if kept[hook] == 0 {
			return nil, errors.New("no program variant fits hook " + hook)
		}
	}
	return notes, nil
}

// attach links a Sentinel program to its hook: an LSM hook, or for the
// fentry programs that feed LSM decisions, a kernel function.
func attach(p *ebpf.Program) (link.Link, error) {
	if p.Type() == ebpf.Tracing {
		return link.AttachTracing(link.TracingOptions{Program: p})
	}
	return link.AttachLSM(link.LSMOptions{Program: p})
}
