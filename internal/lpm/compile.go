package lpm

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// DirBuckets is the number of directory entries per family (top 16 bits).
const DirBuckets = 1 << 16

// Search bounds: the largest bucket the program can binary-search. IPv4
// buckets cover 2^16 addresses, so they can never hold more ranges than that.
const (
	MaxSearchStepsV4 = 13 // blocks per /16: ceil(65536/10) < 2^13
	MaxSearchStepsV6 = 24
	maxBucketV6      = 1 << MaxSearchStepsV6
)

// Entry is a prefix with the opaque, non-zero verdict word the program
// returns for addresses it is the longest match of. Tag is what the rule set
// digest records of the rule besides its prefix (the verdict word also holds
// details of the program's encoding that are not part of a policy).
type Entry struct {
	Prefix  netip.Prefix
	Verdict uint32
	Tag     byte
}

// Dir is a directory entry. Count 0: every address of the bucket has verdict
// Val. Count >= 2: the bucket's ranges are Count entries starting at index Val
// of the family's key and value arrays.
type Dir struct {
	Val   uint32
	Count uint32
}

// Key128 is an IPv6 address as two big-endian halves.
type Key128 struct{ Hi, Lo uint64 }

func (a Key128) cmp(b Key128) int {
	if c := cmp.Compare(a.Hi, b.Hi); c != 0 {
		return c
	}
	return cmp.Compare(a.Lo, b.Lo)
}

func (a Key128) next() Key128 {
	if a.Lo == ^uint64(0) {
		return Key128{a.Hi + 1, 0}
	}
	return Key128{a.Hi, a.Lo + 1}
}

// V4BlockRanges is the number of IPv4 ranges in one 64-byte block.
const V4BlockRanges = 10

// V4Leaf marks an IPv4 directory entry that is a verdict, not a block index.
const V4Leaf = 1 << 31

// V4Block holds up to V4BlockRanges consecutive ranges of one /16: their
// start (low 16 bits) and verdict, in one cache line. Count, in a bucket's
// first block, is the number of ranges in the whole bucket.
type V4Block struct {
	Key   [V4BlockRanges]uint16
	Val   [V4BlockRanges]uint32
	Count uint32
}

// Tables is a compiled rule set, in the exact shape of Shield's maps.
type Tables struct {
	// V4Dir has one entry per /16: V4Leaf|verdict, or the index of the
	// bucket's first block in V4Blocks.
	V4Dir    []uint32
	V4Blocks []V4Block
	v4Ranges int
	V6Dir    []Dir
	V6Keys   []Key128
	V6Vals   []uint32
	// Prefixes per family.
	Prefixes4, Prefixes6 int
	// Digest identifies the rule set (prefixes and tags) independently of
	// the order rules were given in: SHA-256 over the sorted rules.
	Digest [32]byte
}

// Ranges returns the number of stored (searched) ranges per family.
func (t *Tables) Ranges() (v4, v6 int) { return t.v4Ranges, len(t.V6Keys) }

// rangeKey is an address as the compiler orders it: IPv4 as a 32-bit word
// (so that the large IPv4 sets of threat feeds sort and bucket in compact
// arrays), IPv6 as a Key128.
type rangeKey[K any] interface {
	comparable
	cmp(K) int
	next() K
	words() (hi, lo uint64)
}

type key32 uint32

func (a key32) cmp(b key32) int         { return cmp.Compare(a, b) }
func (a key32) next() key32             { return a + 1 }
func (a key32) words() (hi, lo uint64)  { return 0, uint64(a) }
func (a Key128) words() (hi, lo uint64) { return a.Hi, a.Lo }

type span[K rangeKey[K]] struct {
	start, end K
	verdict    uint32
	bits, tag  uint8
}

type boundary[K rangeKey[K]] struct {
	start   K
	verdict uint32
}

// Compile builds the tables for entries. Prefixes must be unique per family
// after masking, and verdicts non-zero.
func Compile(entries []Entry) (*Tables, error) {
	var v4 []span[key32]
	var v6 []span[Key128]
	for _, e := range entries {
		if e.Verdict == 0 || e.Verdict&V4Leaf != 0 {
			return nil, fmt.Errorf("compile %s: verdict %#x out of range (0 means no match; bit 31 is reserved)", e.Prefix, e.Verdict)
		}
		if !e.Prefix.IsValid() {
			return nil, fmt.Errorf("compile: invalid prefix")
		}
		p := e.Prefix.Masked()
		if p.Addr().Is4() {
			v4 = append(v4, span4(p, e.Verdict, e.Tag))
		} else {
			v6 = append(v6, span6(p, e.Verdict, e.Tag))
		}
	}
	return compile(v4, v6)
}

// CompileRules builds the tables for rules, the verdict of each given by
// verdict (non-zero, bit 31 clear) and its digest tag by Rule.Flags. It
// holds one 16-byte record per IPv4 rule and one 40-byte record per IPv6
// rule while it works: no per-rule allocations.
func CompileRules(rules []Rule, verdict func(Rule) uint32) (*Tables, error) {
	n4 := 0
	for i := range rules {
		if !rules[i].Prefix.IsValid() {
			return nil, fmt.Errorf("compile: rule %d: invalid prefix", i+1)
		}
		if rules[i].Prefix.Addr().Is4() {
			n4++
		}
	}
	v4 := make([]span[key32], 0, n4)
	v6 := make([]span[Key128], 0, len(rules)-n4)
	for _, r := range rules {
		v := verdict(r)
		if v == 0 || v&V4Leaf != 0 {
			return nil, fmt.Errorf("compile %s: verdict %#x out of range (0 means no match; bit 31 is reserved)", r.Prefix, v)
		}
		p := r.Prefix.Masked()
		if p.Addr().Is4() {
			v4 = append(v4, span4(p, v, r.Flags()))
		} else {
			v6 = append(v6, span6(p, v, r.Flags()))
		}
	}
	return compile(v4, v6)
}

func compile(v4 []span[key32], v6 []span[Key128]) (*Tables, error) {
	// The families are independent: build them in parallel.
	t := &Tables{}
	var err4 error
	var d4, d6 [32]byte
	done := make(chan struct{})
	go func() {
		defer close(done)
		var b4 []boundary[key32]
		if b4, d4, err4 = boundaries(v4, key32(0xffffffff)); err4 == nil {
			t.V4Dir, t.V4Blocks, t.v4Ranges = bucketV4(b4)
		}
	}()
	b6, d6, err := boundaries(v6, Key128{^uint64(0), ^uint64(0)})
	if err == nil {
		t.V6Dir, t.V6Keys, t.V6Vals, err = bucketV6(b6)
	}
	<-done
	if err := errors.Join(err4, err); err != nil {
		return nil, err
	}
	t.Digest = sha256.Sum256(append(d4[:], d6[:]...))
	t.Prefixes4, t.Prefixes6 = len(v4), len(v6)
	return t, nil
}

func span4(p netip.Prefix, verdict uint32, tag byte) span[key32] {
	a4 := p.Addr().As4()
	start := binary.BigEndian.Uint32(a4[:])
	host := uint32(uint64(1)<<(32-p.Bits()) - 1)
	return span[key32]{start: key32(start), end: key32(start | host), bits: uint8(p.Bits()), verdict: verdict, tag: tag}
}

func span6(p netip.Prefix, verdict uint32, tag byte) span[Key128] {
	a16 := p.Addr().As16()
	start := Key128{binary.BigEndian.Uint64(a16[:8]), binary.BigEndian.Uint64(a16[8:])}
	end := start
	if b := p.Bits(); b <= 64 {
		end.Hi |= hostMask(64 - b)
		end.Lo = ^uint64(0)
	} else {
		end.Lo |= hostMask(128 - b)
	}
	return span[Key128]{start: start, end: end, bits: uint8(p.Bits()), verdict: verdict, tag: tag}
}

func hostMask(n int) uint64 {
	if n >= 64 {
		return ^uint64(0)
	}
	return uint64(1)<<n - 1
}

// boundaries turns possibly nested prefixes into the sorted starts of
// disjoint ranges covering [0, max], each with its longest-match verdict,
// and digests the sorted prefixes with their tags.
func boundaries[K rangeKey[K]](spans []span[K], max K) ([]boundary[K], [32]byte, error) {
	slices.SortFunc(spans, func(a, b span[K]) int {
		if c := a.start.cmp(b.start); c != 0 {
			return c
		}
		return cmp.Compare(a.bits, b.bits)
	})
	h := sha256.New()
	rec := make([]byte, 0, 18*1024)
	for i := range spans {
		if i > 0 && spans[i].start == spans[i-1].start && spans[i].bits == spans[i-1].bits {
			hi, lo := spans[i].start.words()
			return nil, [32]byte{}, fmt.Errorf("compile: duplicate prefix (start %x:%x /%d)", hi, lo, spans[i].bits)
		}
		hi, lo := spans[i].start.words()
		rec = binary.BigEndian.AppendUint64(rec, hi)
		rec = binary.BigEndian.AppendUint64(rec, lo)
		rec = append(rec, spans[i].bits, spans[i].tag)
		if len(rec) >= 18*1023 {
			h.Write(rec)
			rec = rec[:0]
		}
	}
	h.Write(rec)
	var digest [32]byte
	h.Sum(digest[:0])
	out := make([]boundary[K], 0, 2*len(spans)+1)
	emit := func(start K, v uint32) {
		if n := len(out); n > 0 && out[n-1].verdict == v {
			return
		}
		out = append(out, boundary[K]{start, v})
	}
	var stack []span[K]
	top := func() uint32 {
		if len(stack) == 0 {
			return 0
		}
		return stack[len(stack)-1].verdict
	}
	var cur K
	done := false
	// pop closes the innermost open prefix: everything from cur to its end
	// belongs to it, since all prefixes nested in it have been closed.
	pop := func() {
		t := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if done || t.end.cmp(cur) < 0 {
			return
		}
		emit(cur, t.verdict)
		if t.end == max {
			done = true
			return
		}
		cur = t.end.next()
	}
	for _, s := range spans {
		for len(stack) > 0 && stack[len(stack)-1].end.cmp(s.start) < 0 {
			pop()
		}
		if cur.cmp(s.start) < 0 {
			emit(cur, top())
			cur = s.start
		}
		stack = append(stack, s)
	}
	for len(stack) > 0 {
		pop()
	}
	if !done {
		emit(cur, 0)
	}
	return out, digest, nil
}

func bucketV4(b []boundary[key32]) (dir []uint32, blocks []V4Block, ranges int) {
	// Two passes: count the blocks, then fill an exactly sized array (the
	// largest table of a feed-sized set; no slack to carry).
	n := 0
	eachBucketV4(b, func(bk uint64, i, count int) {
		if count > 1 {
			n += (count + V4BlockRanges - 1) / V4BlockRanges
		}
	})
	dir = make([]uint32, DirBuckets)
	blocks = make([]V4Block, 0, n)
	eachBucketV4(b, func(bk uint64, i, count int) {
		if count == 1 {
			dir[bk] = V4Leaf | b[i].verdict
			return
		}
		ranges += count
		dir[bk] = uint32(len(blocks))
		for k := 0; k < count; k++ {
			if k%V4BlockRanges == 0 {
				blocks = append(blocks, V4Block{Count: uint32(count)})
			}
			blk := &blocks[len(blocks)-1]
			if k > 0 {
				blk.Key[k%V4BlockRanges] = uint16(b[i+k].start)
			}
			blk.Val[k%V4BlockRanges] = b[i+k].verdict
		}
	})
	return dir, blocks, ranges
}

// eachBucketV4 calls f for every /16 with the index of the range it starts
// in and the number of ranges that overlap it (1: the whole /16 is one
// range).
func eachBucketV4(b []boundary[key32], f func(bk uint64, i, count int)) {
	i := 0
	for bk := uint64(0); bk < DirBuckets; bk++ {
		bs, be := key32(bk<<16), key32(bk<<16|0xffff)
		for i+1 < len(b) && b[i+1].start <= bs {
			i++
		}
		j := i + 1
		for j < len(b) && b[j].start <= be {
			j++
		}
		if j == i+1 {
			f(bk, i, 1)
			continue
		}
		f(bk, i, j-i)
		i = j - 1
	}
}

func bucketV6(b []boundary[Key128]) ([]Dir, []Key128, []uint32, error) {
	dir := make([]Dir, DirBuckets)
	keys := make([]Key128, 0, len(b)+len(b)/4)
	vals := make([]uint32, 0, cap(keys))
	i := 0
	for bk := uint64(0); bk < DirBuckets; bk++ {
		bs := Key128{bk << 48, 0}
		be := Key128{bk<<48 | hostMask(48), ^uint64(0)}
		for i+1 < len(b) && b[i+1].start.cmp(bs) <= 0 {
			i++
		}
		j := i + 1
		for j < len(b) && b[j].start.cmp(be) <= 0 {
			j++
		}
		if j == i+1 {
			dir[bk] = Dir{Val: b[i].verdict}
			continue
		}
		if j-i > maxBucketV6 {
			return nil, nil, nil, fmt.Errorf("compile: %d IPv6 ranges under %04x::/16 exceed the %d the program can search", j-i, bk, maxBucketV6)
		}
		dir[bk] = Dir{Val: uint32(len(keys)), Count: uint32(j - i)}
		keys = append(keys, bs)
		vals = append(vals, b[i].verdict)
		for k := i + 1; k < j; k++ {
			keys = append(keys, b[k].start)
			vals = append(vals, b[k].verdict)
		}
		i = j - 1
	}
	return dir, keys, vals, nil
}

// Lookup returns the verdict for addr exactly as the XDP program computes it
// (same directory, same binary search), or 0 for no match.
func (t *Tables) Lookup(addr netip.Addr) uint32 {
	if addr.Is4() {
		a4 := addr.As4()
		return t.LookupV4(binary.BigEndian.Uint32(a4[:]))
	}
	a16 := addr.As16()
	return t.LookupV6(Key128{binary.BigEndian.Uint64(a16[:8]), binary.BigEndian.Uint64(a16[8:])})
}

// LookupV4 looks up a host-order IPv4 address.
func (t *Tables) LookupV4(a uint32) uint32 {
	e := t.V4Dir[a>>16]
	if e&V4Leaf != 0 {
		return e &^ V4Leaf
	}
	x := uint16(a)
	bi := e
	c := t.V4Blocks[bi].Count
	if c > V4BlockRanges {
		// Binary search over the bucket's blocks by their first key.
		lo, n := uint32(0), (c+V4BlockRanges-1)/V4BlockRanges
		for n > 1 {
			half := n / 2
			if t.V4Blocks[bi+lo+half].Key[0] <= x {
				lo += half
			}
			n -= half
		}
		bi += lo
		c = min(c-lo*V4BlockRanges, V4BlockRanges)
	}
	blk := &t.V4Blocks[bi]
	pos := 0
	for k := 1; k < V4BlockRanges; k++ {
		if uint32(k) < c && blk.Key[k] <= x {
			pos = k
		}
	}
	return blk.Val[pos]
}

// LookupV6 looks up an IPv6 address.
func (t *Tables) LookupV6(a Key128) uint32 {
	d := t.V6Dir[a.Hi>>48]
	if d.Count == 0 {
		return d.Val
	}
	lo, n := uint32(0), d.Count
	for n > 1 {
		half := n / 2
		if t.V6Keys[d.Val+lo+half].cmp(a) <= 0 {
			lo += half
		}
		n -= half
	}
	return t.V6Vals[d.Val+lo]
}
