package shield

import (
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// mapRegion maps bytes [off, off+n) of a memory-mapped array map for
// writing, for as long as one copy takes. The tables of a large set are
// tens of megabytes: a mapping kept open would count them in the agent's
// resident memory (and keep them there) after every swap.
type mapRegion struct {
	mapping []byte
	b       []byte // the requested bytes inside mapping
}

func mapWrite(m *ebpf.Map, off, n int64) (*mapRegion, error) {
	page := int64(os.Getpagesize())
	start := off / page * page
	end := (off + n + page - 1) / page * page
	size := int64(m.ValueSize()) * int64(m.MaxEntries())
	if off < 0 || n < 0 || off+n > size {
		return nil, fmt.Errorf("map %s: bytes %d-%d outside its %d", m, off, off+n, size)
	}
	b, err := unix.Mmap(m.FD(), start, int(end-start), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap map %s: %w", m, err)
	}
	return &mapRegion{mapping: b, b: b[off-start : off-start+n]}, nil
}

func (r *mapRegion) close() error {
	if err := unix.Munmap(r.mapping); err != nil {
		return fmt.Errorf("munmap: %w", err)
	}
	return nil
}

// copyToMap writes b at off of map m.
func copyToMap(m *ebpf.Map, off int64, b []byte) error {
	r, err := mapWrite(m, off, int64(len(b)))
	if err != nil {
		return err
	}
	copy(r.b, b)
	return r.close()
}

// copyBetweenMaps copies n bytes from src at srcOff to dst at dstOff.
func copyBetweenMaps(src *ebpf.Map, srcOff int64, dst *ebpf.Map, dstOff, n int64) error {
	from, err := mapWrite(src, srcOff, n)
	if err != nil {
		return err
	}
	defer from.close()
	to, err := mapWrite(dst, dstOff, n)
	if err != nil {
		return err
	}
	copy(to.b, from.b)
	return to.close()
}
