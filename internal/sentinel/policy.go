package sentinel

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
)

// policyWriter owns what Sentinel protects and watches: it resolves the
// configured paths to inodes and writes them, the role binaries'
// identities, the release layout and the trusted overlay stacks into the
// kernel, and adds paths at run time (Protect, Watch). It tells events the
// path of every inode it writes.
type policyWriter struct {
	cfg Config
	k   *kernelSet
	ev  *events
	rec record
}

// build resolves the configured paths to inodes.
func (w *policyWriter) build() (*policy, error) {
	c := w.cfg
	p := newPolicy()
	if err := p.protectFile(c.AgentBinary, flagAgentBinary, RoleUpdater); err != nil {
		return nil, fmt.Errorf("protect agent binary: %w", err)
	}
	if c.UpdaterBinary != "" {
		if err := p.protectFile(c.UpdaterBinary, 0, 0); err != nil {
			return nil, fmt.Errorf("protect updater binary: %w", err)
		}
	}
	if c.StagingDir != "" {
		if err := p.protectTree(c.StagingDir, RoleUpdater); err != nil {
			return nil, err
		}
	}
	if err := p.protectReleases(c.Releases); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.ConfigDir, 0o755); err != nil {
		return nil, fmt.Errorf("create config dir: %w", err)
	}
	for _, dir := range append([]string{c.ConfigDir}, c.StateDirs...) {
		if err := p.protectTree(dir, RoleAgent); err != nil {
			return nil, err
		}
	}
	root := string(c.PinRoot)
	if err := p.protectTree(root, RoleAgent); err != nil {
		return nil, err
	}
	if err := p.superblock(root, RoleAgent); err != nil {
		return nil, err
	}
	for _, w := range c.Watched {
		if err := p.watch(w); err != nil {
			return nil, err
		}
	}
	// Roles count only for tasks whose root directory is this one: the
	// agent binary run under chroot or pivot_root next to a fake config
	// gets no authority. A container's root (an overlayfs) is known by
	// its layers, so that the container restarted is the same root.
	stack, ok, err := stackOf("/")
	if err != nil {
		return nil, err
	}
	if ok {
		if !stack.root {
			return nil, errors.New("root directory is a directory inside an overlayfs, not its root: no role can be granted under it")
		}
		p.addStack(stack, stackRoot)
	} else {
		st, err := lstat("/")
		if err != nil {
			return nil, err
		}
		p.add(inodeOf(st), flagRoot, 0, "/")
	}
	// A role binary on overlayfs is known by its files in the layers of
	// a recorded stack.
	for _, bin := range []string{c.AgentBinary, c.UpdaterBinary} {
		if bin == "" {
			continue
		}
		stack, ok, err := stackOf(bin)
		if err != nil {
			return nil, fmt.Errorf("identity %s: %w", bin, err)
		}
		if ok {
			p.addStack(stack, stackBinaries)
		}
	}
	return p, nil
}

// apply writes the resolved policy and identities into the kernel,
// and prunes what no longer applies (stale agent binaries after an upgrade).
func (w *policyWriter) apply() error {
	p, err := w.build()
	if err != nil {
		return err
	}
	ids := map[Inode]sentinelSentinelIdentity{}
	for bin, role := range map[string]Role{w.cfg.AgentBinary: RoleAgent, w.cfg.UpdaterBinary: RoleUpdater} {
		if bin == "" {
			continue
		}
		if err := binaryIdentities(bin, role, ids); err != nil {
			return err
		}
	}
	// Every installed version's agent binary, so that a rollback to one
	// finds it an identity (the kernel also learns them at their exec).
	for _, bin := range p.releaseBins {
		if err := binaryIdentities(bin, RoleAgent, ids); err != nil {
			return err
		}
	}
	if err := w.writeLayout(); err != nil {
		return err
	}
	if err := w.writeStacks(p.stacks); err != nil {
		return err
	}

	maps, err := w.k.live()
	if err != nil {
		return fmt.Errorf("write policy: %w", err)
	}
	objs, idm := maps.SentinelObjects, maps.SentinelIdentities
	// New entries first, then removals: never a moment with less
	// protection than either the old or the new policy.
	for in, id := range ids {
		if err := idm.Put(key(in), id); err != nil {
			return fmt.Errorf("register identity %s: %w", in, err)
		}
	}
	if err := w.markListed(p.Entries()); err != nil {
		return err
	}
	want := map[Inode]bool{}
	for _, e := range p.Entries() {
		want[e.Inode] = true
		if err := objs.Put(key(e.Inode), sentinelSentinelObject{Flags: e.Flags, Allow: uint32(e.Allow)}); err != nil {
			return fmt.Errorf("protect %s: %w", e.Path, err)
		}
	}
	var k sentinelSentinelInode
	var v sentinelSentinelObject
	var stale []sentinelSentinelInode
	it := objs.Iterate()
	for it.Next(&k, &v) {
		if !want[Inode{Dev: k.Dev, Ino: k.Ino}] {
			stale = append(stale, k)
		}
	}
	var staleIDs []sentinelSentinelInode
	var idv sentinelSentinelIdentity
	it2 := idm.Iterate()
	for it2.Next(&k, &idv) {
		if _, ok := ids[Inode{Dev: k.Dev, Ino: k.Ino}]; !ok {
			staleIDs = append(staleIDs, k)
		}
	}
	for _, k := range staleIDs {
		if err := idm.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("prune identity: %w", err)
		}
	}
	for _, k := range stale {
		if err := objs.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("prune object: %w", err)
		}
	}
	w.ev.setNames(p.Entries())
	w.rec("map_update", mapObjects, nil, map[string]any{
		"entries": len(want), "pruned": len(stale), "identities": len(ids), "pruned_identities": len(staleIDs),
		"stacks": len(p.stacks),
	})
	return nil
}

// markListed sets the sentinel_listed slots of entries, which must happen
// before the entries go into sentinel_objects: the programs skip the hash
// lookup for an inode whose slot is clear. Slots are never cleared (the
// kernel sets some itself, for learned agent binaries); a fresh load starts
// from an empty filter.
func (w *policyWriter) markListed(entries []Entry) error {
	maps, err := w.k.live()
	if err != nil {
		return fmt.Errorf("mark listed: %w", err)
	}
	done := map[uint32]bool{}
	for _, e := range entries {
		slot := listedSlot(e.Inode.Ino)
		if done[slot] {
			continue
		}
		if err := maps.SentinelListed.Put(slot, uint8(1)); err != nil {
			return fmt.Errorf("mark %s listed: %w", e.Path, err)
		}
		done[slot] = true
	}
	return nil
}

func key(in Inode) sentinelSentinelInode { return sentinelSentinelInode{Ino: in.Ino, Dev: in.Dev} }

func identity(path string, r Role) sentinelSentinelIdentity {
	id := sentinelSentinelIdentity{Roles: uint32(r)}
	if gen, ok := generation(path); ok {
		id.Gen, id.GenValid = gen, 1
	}
	return id
}

// Protect adds a path (a file, or a directory with everything in it) to the
// protected set at run time, e.g. a config file the agent has just created.
func (w *policyWriter) Protect(path string, allow Role) error {
	p := newPolicy()
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("protect %s: %w", path, err)
	}
	if st.IsDir() {
		err = p.protectTree(path, allow)
	} else {
		err = p.protectFile(path, 0, allow)
	}
	if err != nil {
		return err
	}
	return w.merge(p, "protect", path)
}

// Watch adds file-integrity events for a path (and, for a directory, its
// entries) at run time.
func (w *policyWriter) Watch(path string) error {
	p := newPolicy()
	if err := p.watch(path); err != nil {
		return err
	}
	return w.merge(p, "watch", path)
}

// merge writes p's entries into the kernel on top of what is there: flags
// add up, and a protection never gains roles. An entry that adds no
// protection (an ancestor, a watch) keeps the roles already allowed.
func (w *policyWriter) merge(p *policy, what, path string) error {
	maps, err := w.k.live()
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, path, err)
	}
	if err := w.markListed(p.Entries()); err != nil {
		return err
	}
	for _, e := range p.Entries() {
		var old sentinelSentinelObject
		if maps.SentinelObjects.Lookup(key(e.Inode), &old) == nil && old.Flags&protections != 0 {
			if e.Flags&protections != 0 {
				e.Allow &= Role(old.Allow)
			} else {
				e.Allow = Role(old.Allow)
			}
		}
		e.Flags |= old.Flags
		if err := maps.SentinelObjects.Put(key(e.Inode), sentinelSentinelObject{Flags: e.Flags, Allow: uint32(e.Allow)}); err != nil {
			return fmt.Errorf("%s %s: %w", what, e.Path, err)
		}
		w.ev.addName(e.Inode, e.Path)
	}
	w.rec("map_update", mapObjects, nil, map[string]any{what: path})
	return nil
}
