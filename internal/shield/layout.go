package shield

import (
	"fmt"

	"github.com/carverauto/fortress/internal/lpm"
)

// DefaultBudget caps the memory of all Shield maps, both generations.
const DefaultBudget = 64 << 20

const (
	dirBytes       = 8  // struct shield_dir (IPv6)
	v4DirBytes     = 4  // one IPv4 directory entry
	v4BlockBytes   = 64 // struct shield_v4_block
	v6KeyBytes     = 16 // struct shield_key128
	valBytes       = 4  // one verdict word
	counterBytes   = 16 // struct shield_counter
	elemBytes      = 64 // packed key/value elements
	valsPerElem    = elemBytes / valBytes
	ringBytes      = 256 << 10
	minRanges      = 1024
	minSlots       = 1024
	maxSlots       = 1 << 24
	generationsNum = 2
)

// Capacity is what one generation of the tables can hold.
type Capacity struct {
	V4Blocks uint32 // blocks of up to ten IPv4 ranges
	V6Ranges uint32 // multiple of valsPerElem
	Slots    uint32 // rule counter slots, shared by both generations
}

func roundUp(n, m uint32) uint32 { return (n + m - 1) / m * m }

// capacityFor returns the capacity for a set needing v4 blocks, v6 ranges
// and the given number of rules, with headroom so that ordinary policy
// growth does not need new maps.
func capacityFor(v4, v6, rules int, headroom bool) Capacity {
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
		// Slot 0 means "no rule"; an update may briefly hold the slots of
		// the old and the new set, so leave room for turnover.
		Slots: grow(rules+1, minSlots),
	}
}

// Fits reports whether c can hold a set with these needs.
func (c Capacity) Fits(v4, v6, rules int) bool {
	return uint32(v4) <= c.V4Blocks && uint32(v6) <= c.V6Ranges && uint32(rules+1) <= c.Slots
}

// MapBytes is the memory of all Shield maps' values for capacity c on a
// machine with ncpu possible CPUs: both generations of the directory, keys and
// values, the per-CPU rule counters, the global counters and the sample ring.
func (c Capacity) MapBytes(ncpu int) uint64 {
	g := uint64(generationsNum)
	b := uint64(8)                                      // control word
	b += g * lpm.DirBuckets * (v4DirBytes + dirBytes)   // v4 + v6 directories
	b += g * uint64(c.V4Blocks) * v4BlockBytes          // v4 ranges
	b += g * uint64(c.V6Ranges) * v6KeyBytes            // v6 keys
	b += g * uint64(c.V6Ranges/valsPerElem) * elemBytes // v6 verdicts
	b += uint64(c.Slots) * counterBytes * uint64(ncpu)  // rule counters
	b += uint64(ncpu) * 8 * (uint64(statMax) + 1)       // global counters, sampler
	b += ringBytes
	return b
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

// plan picks a capacity (v4 in blocks, v6 in ranges) for the set within budget: with headroom if that
// fits, exactly otherwise, or a *BudgetError.
func plan(v4, v6, rules, ncpu int, budget uint64) (Capacity, error) {
	c := capacityFor(v4, v6, rules, true)
	if c.MapBytes(ncpu) <= budget {
		return c, nil
	}
	c = capacityFor(v4, v6, rules, false)
	if need := c.MapBytes(ncpu); need > budget {
		return Capacity{}, &BudgetError{Rules: rules, V4Blocks: v4, V6Ranges: v6, Need: need, Budget: budget}
	}
	return c, nil
}
