package sentinel

import (
	"reflect"
	"slices"
	"testing"

	"github.com/cilium/ebpf/btf"
)

// TestContractCoversKernelEnums: the Go side handles every value of every
// C enum it consumes, read from the embedded object's BTF. Names and
// values come from bpf2go (make check-generate fails when the generated Go
// lags the C); this test fails when the C gains a value the Go side does
// not know what to do with.
func TestContractCoversKernelEnums(t *testing.T) {
	spec, err := loadSentinel()
	if err != nil {
		t.Fatal(err)
	}
	values := func(name string) []uint64 {
		t.Helper()
		var e *btf.Enum
		if err := spec.Types.TypeByName(name, &e); err != nil {
			t.Fatalf("enum %s: %v", name, err)
		}
		var out []uint64
		for _, v := range e.Values {
			out = append(out, v.Value)
		}
		return out
	}
	known := map[string][]uint64{
		"sentinel_object_flag": {uint64(flagProtected), uint64(flagChildren), uint64(flagAncestor), uint64(flagAgentBinary),
			uint64(flagSuperblock), uint64(flagRoot), uint64(flagBlockDev), uint64(flagWatchSelf), uint64(flagWatchKids),
			uint64(flagInherit), uint64(flagReleases)},
		"sentinel_role":          {uint64(RoleAgent), uint64(RoleUpdater)},
		"sentinel_mode":          {uint64(Enforce), uint64(Audit)},
		"sentinel_guard_kind":    {uint64(guardMap), uint64(guardLink)},
		"sentinel_stack_flag":    {uint64(stackRoot), uint64(stackBinaries)},
		"sentinel_identity_flag": {uint64(sentinelSentinelIdentityFlagSENTINEL_IDENTITY_LAYER)},
		"sentinel_role_stat":     {uint64(sentinelSentinelRoleStatSENTINEL_ROLE_STAT_REFUSED), uint64(sentinelSentinelRoleStatSENTINEL_ROLE_STAT_GRANTED), uint64(sentinelSentinelRoleStatSENTINEL_ROLE_STAT_MAX)},
		"sentinel_prctl":         {uint64(sentinelSentinelPrctlSENTINEL_PRCTL_CLAIM)},
		"sentinel_verdict":       {uint64(sentinelSentinelVerdictSENTINEL_ALLOWED), uint64(sentinelSentinelVerdictSENTINEL_DENIED), uint64(sentinelSentinelVerdictSENTINEL_AUDITED)},
		"sentinel_stat":          {uint64(sentinelSentinelStatSENTINEL_STAT_LOST), uint64(sentinelSentinelStatSENTINEL_STAT_DENIED), uint64(sentinelSentinelStatSENTINEL_STAT_AUDITED), uint64(sentinelSentinelStatSENTINEL_STAT_EVENTS), uint64(sentinelSentinelStatSENTINEL_STAT_MAX)},
	}
	for name, want := range known {
		for _, v := range values(name) {
			if !slices.Contains(want, v) {
				t.Errorf("enum %s has value %#x the Go side does not handle", name, v)
			}
		}
	}
	// Every counter is a Stats field, in enum order.
	if n := reflect.TypeOf(Stats{}).NumField(); n != int(sentinelSentinelStatSENTINEL_STAT_MAX) {
		t.Errorf("Stats has %d fields, the kernel counts %d", n, sentinelSentinelStatSENTINEL_STAT_MAX)
	}
	if Enforce.String() == Audit.String() {
		t.Error("modes share a name")
	}
	// Every map of the object is one the control plane pins and adopts
	// by the generated name.
	for name := range spec.Maps {
		if name == ".rodata" || name == ".bss" || name == ".data" {
			continue
		}
		if !slices.Contains(sentinelMapNames(), name) {
			t.Errorf("map %s is not among the generated map names", name)
		}
	}
}

// sentinelMapNames lists the map names bpf2go generated, from the
// generated struct's tags.
func sentinelMapNames() []string {
	var out []string
	typ := reflect.TypeOf(sentinelMapSpecs{})
	for i := range typ.NumField() {
		if tag := typ.Field(i).Tag.Get("ebpf"); tag != "" {
			out = append(out, tag)
		}
	}
	return out
}
