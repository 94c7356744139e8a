package sentinel

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/carverauto/fortress/internal/pins"
)

// kernelSet owns Sentinel's kernel objects: its maps (by name, which pins
// and adoption go by, and bound to bpf2go's generated struct), programs and
// links, and their pins under the sentinel layer of the pin root.
type kernelSet struct {
	root pins.Root
	// mu keeps close from pulling maps and links from under a user that
	// may run beside it (live, programs, counters, the event ring).
	// Loading, adopting and replacing happen in Start, before anyone else
	// has the Sentinel.
	mu sync.Mutex
	// maps holds every map by name; m names the same maps by the
	// generated fields.
	maps  map[string]*ebpf.Map
	m     sentinelMaps
	links map[string]link.Link
	progs map[string]*ebpf.Program
	// adopted is set when the pinned programs were taken over, not loaded;
	// notes are what the program selection left out on this kernel.
	adopted bool
	notes   []string
}

func newKernelSet(root pins.Root) *kernelSet {
	return &kernelSet{
		root:  root,
		maps:  map[string]*ebpf.Map{},
		links: map[string]link.Link{},
		progs: map[string]*ebpf.Program{},
	}
}

func pinName(kind, name string) string {
	return kind + "_" + strings.TrimPrefix(name, ".")
}

// pin is the pin path of a map, prog or link of Sentinel.
func (k *kernelSet) pin(kind, name string) string {
	return k.root.Path(pins.Sentinel, pinName(kind, name))
}

// bindMaps points the generated struct's fields (tagged with the C names)
// at the loaded maps.
func (k *kernelSet) bindMaps() error {
	v := reflect.ValueOf(&k.m).Elem()
	for i := range v.NumField() {
		name := v.Type().Field(i).Tag.Get("ebpf")
		m, ok := k.maps[name]
		if !ok {
			return fmt.Errorf("bind map %s: not loaded", name)
		}
		v.Field(i).Set(reflect.ValueOf(m))
	}
	return nil
}

// errClosed is what a reader gets once Sentinel is closed or removed.
var errClosed = errors.New("sentinel closed")

// live returns the maps as they are, or errClosed once Sentinel is closed
// or removed: every use of the maps after Start goes through it, so that a
// reader beside Close (Status) or a change after it gets an error, not a
// nil map. The engine serialises changes with Close; a Status read that
// races a Close may still see its lookups fail with EBADF.
func (k *kernelSet) live() (sentinelMaps, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m.SentinelConfig == nil {
		return sentinelMaps{}, errClosed
	}
	return k.m, nil
}

// programs returns the names of the attached programs, sorted.
func (k *kernelSet) programs() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]string, 0, len(k.links))
	for name := range k.links {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// counters reads the first n slots of the counter array map name.
func (k *kernelSet) counters(name string, n int) ([]uint64, error) {
	k.mu.Lock()
	m := k.maps[name]
	k.mu.Unlock()
	if m == nil {
		return nil, errClosed
	}
	v := make([]uint64, n)
	for i := range v {
		if err := m.Lookup(uint32(i), &v[i]); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// eventRing is the event ring buffer, nil once closed.
func (k *kernelSet) eventRing() *ebpf.Map {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.m.SentinelEvents
}

// close releases the file descriptors; the pins keep what they pin.
func (k *kernelSet) close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, l := range k.links {
		l.Close()
	}
	for _, p := range k.progs {
		p.Close()
	}
	for _, m := range k.maps {
		m.Close()
	}
	k.links, k.progs, k.maps = map[string]link.Link{}, map[string]*ebpf.Program{}, map[string]*ebpf.Map{}
	k.m = sentinelMaps{}
}

// remove unpins every program, link and map of the sentinel layer (links
// first), closes them, and waits until the kernel has freed the programs.
func (k *kernelSet) remove(rec record) error {
	var errs []error
	dir := k.root.Dir(pins.Sentinel)
	entries, err := os.ReadDir(dir)
	if err != nil {
		errs = append(errs, err)
	}
	// Program IDs, taken from the pins (this Sentinel may already be
	// closed), to wait below until the kernel has freed them.
	var ids []ebpf.ProgramID
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "prog_") {
			continue
		}
		if p, err := ebpf.LoadPinnedProgram(filepath.Join(dir, e.Name()), nil); err == nil {
			if info, err := p.Info(); err == nil {
				if id, ok := info.ID(); ok {
					ids = append(ids, id)
				}
			}
			p.Close()
		}
	}
	// Links first: protection ends only once nothing else can go wrong.
	sort.Slice(entries, func(i, j int) bool {
		return strings.HasPrefix(entries[i].Name(), "link_") && !strings.HasPrefix(entries[j].Name(), "link_")
	})
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		err := os.Remove(path)
		rec("unpin", path, err, nil)
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range k.progs {
		if info, err := p.Info(); err == nil {
			if id, ok := info.ID(); ok && !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	k.close()
	if len(errs) == 0 {
		errs = append(errs, waitGone(ids, 30*time.Second))
	}
	return errors.Join(errs...)
}

// waitGone waits until the kernel has freed the programs. On 5.10 a
// released LSM link keeps its program in the hook for a grace period (a few
// seconds under emulation), so "removed" is reported only once it is true.
func waitGone(ids []ebpf.ProgramID, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		left := 0
		for _, id := range ids {
			p, err := ebpf.NewProgramFromID(id)
			if err == nil {
				p.Close()
				left++
			}
		}
		if left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d sentinel programs still loaded %s after removal", left, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
