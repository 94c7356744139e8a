package shield

import (
	"fmt"
	"math/bits"

	"github.com/carverauto/fortress/internal/lpm"
)

// DefaultBudget caps the memory of all Shield maps, both generations.
const DefaultBudget = 64 << 20

// DefaultTrackedRules is how many distinct rules keep exact counters
// (Config.TrackedRules): rules that see traffic, not rules in the set.
const DefaultTrackedRules = 65536

const (
	dirBytes       = 8  // struct shield_dir (IPv6)
	v4DirBytes     = 4  // one IPv4 directory entry
	v4BlockBytes   = 64 // struct shield_v4_block
	v6KeyBytes     = 16 // struct shield_key128
	valBytes       = 4  // one verdict word
	ruleKeyBytes   = 24 // struct shield_rule_key
	counterBytes   = 16 // struct shield_counter
	controlBytes   = 56 // struct shield_control
	elemBytes      = 64 // packed key/value elements
	valsPerElem    = elemBytes / valBytes
	ringBytes      = 256 << 10
	minRanges      = 1024
	generationsNum = 2
	// A preallocated hash element: the kernel's struct htab_elem (48
	// bytes on 64-bit kernels), then key and value, each rounded up to 8.
	hashElemBytes   = 48 + ruleKeyBytes + counterBytes
	hashBucketBytes = 16 // struct bucket: list head and lock
	// Per CPU: a hash map's lock counters, and one spare element that
	// updates use.
	hashPerCPUBytes = 8*4 + hashElemBytes
)

// Capacity is what one generation of the tables can hold.
type Capacity struct {
	V4Blocks uint32 // blocks of up to ten IPv4 ranges
	V6Ranges uint32 // multiple of valsPerElem
	Tracked  uint32 // rules with counters (rule_hits entries), both generations
}

func roundUp(n, m uint32) uint32 { return (n + m - 1) / m * m }

// capacityFor returns the capacity for a set needing v4 blocks and v6
// ranges, with headroom so that ordinary policy growth does not need new
// maps.
func capacityFor(v4, v6 int, tracked uint32, headroom bool) Capacity {
	grow := func(n int, min int) uint32 {
		if headroom {
			n += n / 8
		}
		if n < min {
			n = min
		}
		return uint32(n)
	}
	return Capacity{
		V4Blocks: grow(v4, minRanges/10),
		V6Ranges: roundUp(grow(v6, minRanges), valsPerElem),
		Tracked:  tracked,
	}
}

// Fits reports whether c can hold a set with these needs.
func (c Capacity) Fits(v4, v6 int) bool {
	return uint32(v4) <= c.V4Blocks && uint32(v6) <= c.V6Ranges
}

// MapBytes is the memory of all Shield maps' values for capacity c on a
// machine with ncpu possible CPUs: both generations of the directories,
// keys and verdicts, the rule counters, the control word, the global
// counters and the sample ring. Only the last term grows with ncpu, by 208
// bytes per CPU:
//
//	2 × 65536 × (4 + 8)                  directories
//	+ 2 × V4Blocks × 64                  IPv4 ranges
//	+ 2 × V6Ranges × (16 + 4)            IPv6 ranges
//	+ Tracked × 88 + 2^⌈log2 Tracked⌉ × 16 rule counters (hash)
//	+ 56 + 256 KiB                       control word, sample ring
//	+ ncpu × (8 × 11 + 32 + 88)          global counters and sampler, hash locks and spare
func (c Capacity) MapBytes(ncpu int) uint64 {
	g := uint64(generationsNum)
	b := uint64(controlBytes)
	b += g * lpm.DirBuckets * (v4DirBytes + dirBytes)   // v4 + v6 directories
	b += g * uint64(c.V4Blocks) * v4BlockBytes          // v4 ranges
	b += g * uint64(c.V6Ranges) * v6KeyBytes            // v6 keys
	b += g * uint64(c.V6Ranges/valsPerElem) * elemBytes // v6 verdicts
	b += uint64(c.Tracked) * hashElemBytes              // rule counters
	b += hashBuckets(c.Tracked) * hashBucketBytes
	b += ringBytes
	b += uint64(ncpu) * (8*(uint64(statMax)+1) + hashPerCPUBytes)
	return b
}

func hashBuckets(n uint32) uint64 {
	if n <= 1 {
		return 1
	}
	return 1 << bits.Len32(n-1)
}

// BudgetError says a rule set does not fit the memory budget.
type BudgetError struct {
	Rules, V4Blocks, V6Ranges int
	Need, Budget              uint64
}

func (e *BudgetError) Error() string {
	return fmt.Sprintf("rule set of %d rules (%d IPv4 range blocks, %d IPv6 ranges) needs %d bytes of map memory (%.1f MiB), over the budget of %d bytes (%.1f MiB)",
		e.Rules, e.V4Blocks, e.V6Ranges, e.Need, float64(e.Need)/(1<<20), e.Budget, float64(e.Budget)/(1<<20))
}

// plan picks a capacity (v4 in blocks, v6 in ranges) for a set of n4 IPv4
// and n6 IPv6 prefixes that needs v4 blocks and v6 ranges, within budget:
// room for any set of as many prefixes if that fits (so that replacing it
// with another set of that size never needs new maps), else with headroom,
// else exactly, or a *BudgetError.
func plan(v4, v6, n4, n6 int, tracked uint32, ncpu int, budget uint64) (Capacity, error) {
	rules := n4 + n6
	c := capacityFor(v4, v6, tracked, true)
	if w := WorstCase(n4, n6, tracked); w.V4Blocks >= c.V4Blocks && w.V6Ranges >= c.V6Ranges && w.MapBytes(ncpu) <= budget {
		return w, nil
	}
	if c.MapBytes(ncpu) <= budget {
		return c, nil
	}
	c = capacityFor(v4, v6, tracked, false)
	if need := c.MapBytes(ncpu); need > budget {
		return Capacity{}, &BudgetError{Rules: rules, V4Blocks: v4, V6Ranges: v6, Need: need, Budget: budget}
	}
	return c, nil
}

// WorstCase is the capacity that holds any set of n4 IPv4 and n6 IPv6
// prefixes, however they fall: every prefix adds at most two range starts
// (its first address and the one after its last); each /16 or IPv6 bucket
// that holds ranges repeats the range it starts in, and in IPv4 costs at
// most one partly filled block.
func WorstCase(n4, n6 int, tracked uint32) Capacity {
	r4 := 2*n4 + 1
	b4 := min(r4, lpm.DirBuckets)
	blocks := (r4+b4)/lpm.V4BlockRanges + b4
	r6 := 2*n6 + 1
	return capacityFor(blocks, r6+min(r6, lpm.DirBuckets), tracked, false)
}
