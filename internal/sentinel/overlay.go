package sentinel

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// A path on overlayfs is a view: the objects the kernel reads and writes
// are files and directories of the layers under it, and root can change
// those through their own paths without touching the merged inode. So for
// a protected path on overlayfs Sentinel also protects, in every layer:
//   - the same file (or tree) where it exists;
//   - every directory on the way to it, against rename, rmdir, mount over,
//     setattr and xattr changes (an opaque or redirect xattr would hide the
//     lower layers);
//   - the deepest existing directory on the way, against new entries (a new
//     file or a whiteout in a higher layer would shadow a lower one);
//   - the upper and work directories themselves.
//
// Before that the agent copies the protected directories (or a protected
// file's directory) up, so that in the upper layer the directory a later
// copy-up lands in exists and protects its entries like the merged one.

// errLayerHidden says a layer named in the mount options cannot be reached
// from here (the overlay was mounted in another mount namespace and its
// layers are not visible at the same paths).
var errLayerHidden = errors.New("overlay layer not visible")

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	root       string // path inside the filesystem that is the mount's root
	mountPoint string
	fsType     string
	superOpts  string
}

// overlayLayers are an overlay mount's layers, as mounted.
type overlayLayers struct {
	upper, work string
	lowers      []string // highest first, data-only layers last
	// links are layer paths as mounted that name a layer through a
	// symbolic link (Docker's overlay2 mounts its lower layers through
	// the short links in overlay2/l/); the fields above are resolved.
	links []string
}

func (o overlayLayers) all() []string {
	var out []string
	if o.upper != "" {
		out = append(out, o.upper)
	}
	return append(out, o.lowers...)
}

// parseMountInfo reads /proc/PID/mountinfo lines.
func parseMountInfo(r io.Reader) ([]mountEntry, error) {
	var out []mountEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 5 || sep < 0 || len(f) < sep+3 {
			return nil, fmt.Errorf("parse mountinfo: malformed line %q", sc.Text())
		}
		e := mountEntry{root: unescapeOctal(f[3]), mountPoint: unescapeOctal(f[4]), fsType: f[sep+1]}
		if len(f) > sep+3 {
			e.superOpts = f[sep+3]
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse mountinfo: %w", err)
	}
	return out, nil
}

// unescapeOctal undoes the kernel's \ooo escapes (mangle/seq_escape).
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) && isOctal(s[i+1:i+4]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if s[i] < '0' || s[i] > '7' {
			return false
		}
	}
	return true
}

// mountOf returns the mount a resolved absolute path is on and the path's
// place inside that mount's filesystem.
func mountOf(mounts []mountEntry, path string) (mountEntry, string, bool) {
	best := -1
	for i, m := range mounts {
		if !under(path, m.mountPoint) {
			continue
		}
		// The longest mount point wins; at the same point the later line
		// is the one on top.
		if best < 0 || len(m.mountPoint) >= len(mounts[best].mountPoint) {
			best = i
		}
	}
	if best < 0 {
		return mountEntry{}, "", false
	}
	m := mounts[best]
	rest := strings.TrimPrefix(path, m.mountPoint)
	return m, filepath.Join("/", m.root, rest), true
}

func under(path, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(path, "/")
	}
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// parseOverlayOpts reads the layers from an overlay mount's superblock
// options: lowerdir=a:b (":" inside a name escaped), or the lowerdir+= and
// datadir+= options of the new mount API, upperdir=, workdir=.
func parseOverlayOpts(opts string) (overlayLayers, error) {
	var o overlayLayers
	for _, opt := range splitEscaped(opts, ',') {
		k, v, ok := strings.Cut(opt, "=")
		if !ok {
			continue
		}
		switch k {
		case "lowerdir":
			for _, l := range splitEscaped(v, ':') {
				if l != "" { // "::" separates data-only layers
					o.lowers = append(o.lowers, unescapeOverlay(l))
				}
			}
		case "lowerdir+", "datadir+":
			o.lowers = append(o.lowers, unescapeOverlay(v))
		case "upperdir":
			o.upper = unescapeOverlay(v)
		case "workdir":
			o.work = unescapeOverlay(v)
		}
	}
	if len(o.lowers) == 0 {
		return o, errors.New("overlay mount options name no lower layer")
	}
	if (o.upper == "") != (o.work == "") {
		return o, errors.New("overlay mount options name an upper layer without a work dir or the reverse")
	}
	for _, l := range o.all() {
		if !filepath.IsAbs(l) {
			return o, fmt.Errorf("overlay layer %q is not an absolute path", l)
		}
	}
	return o, nil
}

// splitEscaped splits s at sep where sep is not preceded by a backslash.
func splitEscaped(s string, sep byte) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
			continue
		}
		if s[i] == sep {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// unescapeOverlay undoes octal escapes and the backslash before ':' or ','.
func unescapeOverlay(s string) string {
	s = unescapeOctal(s)
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// overlayOf says whether path is on overlayfs and, if so, returns its
// layers and its place inside the overlay.
func overlayOf(path string) (overlayLayers, string, bool, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return overlayLayers{}, "", false, fmt.Errorf("resolve %s: %w", path, err)
	}
	real, err = filepath.Abs(real)
	if err != nil {
		return overlayLayers{}, "", false, err
	}
	b, err := os.ReadFile("/proc/thread-self/mountinfo")
	if err != nil {
		return overlayLayers{}, "", false, fmt.Errorf("read mountinfo: %w", err)
	}
	mounts, err := parseMountInfo(bytes.NewReader(b))
	if err != nil {
		return overlayLayers{}, "", false, err
	}
	m, rel, ok := mountOf(mounts, real)
	if !ok || m.fsType != "overlay" {
		return overlayLayers{}, "", false, nil
	}
	layers, err := parseOverlayOpts(m.superOpts)
	if err != nil {
		return overlayLayers{}, "", false, fmt.Errorf("overlay under %s: %w", path, err)
	}
	// The kernel resolved each layer path once, at the mount; resolve
	// them the same way and keep the links, which protectLayers protects
	// so that they keep leading where they led then.
	resolve := func(l string) (string, error) {
		if l == "" {
			return "", nil
		}
		r, err := filepath.EvalSymlinks(l)
		if err != nil {
			return "", fmt.Errorf("%w: %s (of the overlay under %s): %v; the layers must be visible to the agent at the paths they were mounted with", errLayerHidden, l, path, err)
		}
		if r != l {
			layers.links = append(layers.links, l)
		}
		return r, nil
	}
	if layers.upper, err = resolve(layers.upper); err != nil {
		return overlayLayers{}, "", false, err
	}
	if layers.work, err = resolve(layers.work); err != nil {
		return overlayLayers{}, "", false, err
	}
	for i, l := range layers.lowers {
		if layers.lowers[i], err = resolve(l); err != nil {
			return overlayLayers{}, "", false, err
		}
	}
	return layers, rel, true, nil
}

// protectLayers protects the backing objects of path (see the top of this
// file). tree says path is a protected directory with everything in it;
// otherwise it is one protected file.
func (p *policy) protectLayers(path string, tree bool, allow Role) error {
	layers, rel, ok, err := overlayOf(path)
	if err != nil || !ok {
		return err
	}
	// The stack is recorded (with no flag: it grants nothing) so that an
	// agent adopting Sentinel later checks that it sees the same layers
	// (writeStacks).
	stack, err := stackOfLayers(path, layers, rel)
	if err != nil {
		return err
	}
	p.addStack(stack, 0)
	if layers.upper != "" {
		// Copy up the directory where new entries would land: the
		// protected directory itself, or a protected file's directory.
		// Changing the mode to what it is copies a directory up.
		dir, relDir := path, rel
		if !tree {
			dir, relDir = filepath.Dir(path), filepath.Dir(rel)
		}
		// Once up, the upper directory is in the policy and may allow
		// another role than the agent's: never touch it again.
		_, upErr := os.Lstat(filepath.Join(layers.upper, relDir))
		if st, err := os.Stat(dir); err == nil && upErr != nil {
			if err := os.Chmod(dir, st.Mode().Perm()|st.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil && !errors.Is(err, unix.EROFS) {
				return fmt.Errorf("copy up %s: %w", dir, err)
			}
		}
	}
	for _, layer := range layers.all() {
		if err := p.protectInLayer(layer, rel, tree, allow); err != nil {
			return fmt.Errorf("protect %s in layer %s: %w", path, layer, err)
		}
	}
	for _, l := range layers.links {
		st, err := lstat(l)
		if err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			p.add(inodeOf(st), flagProtected, 0, l)
		}
		if err := p.ancestors(l); err != nil {
			return err
		}
	}
	for _, d := range []string{layers.upper, layers.work} {
		if d == "" {
			continue
		}
		st, err := lstat(d)
		if err != nil {
			return err
		}
		p.add(inodeOf(st), flagProtected|flagAncestor, 0, d)
		if err := p.ancestors(d); err != nil {
			return err
		}
	}
	return nil
}

// protectInLayer protects rel inside one layer directory.
func (p *policy) protectInLayer(layer, rel string, tree bool, allow Role) error {
	target := filepath.Join(layer, rel)
	// The directories on the way: the layer root, then each component.
	last := layer
	dirs := []string{layer}
	parts := strings.Split(strings.Trim(filepath.Dir(rel), "/"), "/")
	if tree {
		parts = strings.Split(strings.Trim(rel, "/"), "/")
	}
	cur := layer
	for _, c := range parts {
		if c == "" || c == "." {
			continue
		}
		cur = filepath.Join(cur, c)
		st, err := os.Lstat(cur)
		if err != nil || !st.IsDir() {
			break
		}
		dirs = append(dirs, cur)
		last = cur
	}
	for _, d := range dirs {
		st, err := lstat(d)
		if err != nil {
			return err
		}
		flags := uint32(flagProtected | flagAncestor)
		if d == last {
			flags |= flagChildren
		}
		p.add(inodeOf(st), flags, allow, d)
	}
	if err := p.ancestors(layer); err != nil {
		return err
	}
	if _, err := os.Lstat(target); err != nil {
		return nil // not in this layer; its deepest directory takes no new entries
	}
	if tree && last == target {
		return p.protectTree(target, allow)
	}
	// A file, or in place of a directory a whiteout or file that hides the
	// lower layers' one: removing it would change the view.
	st, err := lstat(target)
	if err != nil {
		return err
	}
	p.add(inodeOf(st), flagProtected, allow, target)
	return nil
}

// collectionOptions are the load options of Sentinel's collection: the
// programs read overlayfs's own structures (a container's layer stack), so
// the overlay module's BTF is a relocation target where it is loaded.
// Without it the programs load all the same and recognise no container
// root (see in_agent_root).
func (l *loader) collectionOptions(replace map[string]*ebpf.Map) ebpf.CollectionOptions {
	opts := ebpf.CollectionOptions{MapReplacements: replace}
	if _, err := os.Stat("/sys/kernel/btf/overlay"); err != nil {
		return opts
	}
	spec, err := btf.LoadKernelModuleSpec("overlay")
	if err != nil {
		l.log.Warn("overlayfs btf unreadable: container roots are not recognised", "err", err)
		return opts
	}
	opts.Programs.ExtraRelocationTargets = []*btf.Spec{spec}
	return opts
}

// Stack flags (enum sentinel_stack_flag).
const (
	stackRoot     = uint32(sentinelSentinelStackFlagSENTINEL_STACK_ROOT)
	stackBinaries = uint32(sentinelSentinelStackFlagSENTINEL_STACK_BINARIES)
)

// overlayStack is the layer stack of the overlayfs under a path, as the
// kernel names it (overlay_stack in sentinel.c).
type overlayStack struct {
	key     sentinelSentinelStack
	backing uint32 // the filesystem every layer is on; 0 if several
	root    bool   // the path is the overlay's root directory
}

// stackOf returns the stack of the overlayfs path is on; ok is false if
// it is on another filesystem.
func stackOf(path string) (overlayStack, bool, error) {
	layers, rel, ok, err := overlayOf(path)
	if err != nil || !ok {
		return overlayStack{}, false, err
	}
	st, err := stackOfLayers(path, layers, rel)
	return st, err == nil, err
}

// stackOfLayers is stackOf for layers already read (overlayOf).
func stackOfLayers(path string, layers overlayLayers, rel string) (overlayStack, error) {
	var st overlayStack
	st.root = rel == "/"
	all := append([]string{layers.upper}, layers.lowers...) // "" for no upper: a zero entry
	if len(all) > len(st.key.Layer) {
		return overlayStack{}, fmt.Errorf("overlay under %s has %d layers, more than the %d Sentinel can name", path, len(all), len(st.key.Layer))
	}
	st.key.Layers = uint32(len(all))
	several := false
	for i, l := range all {
		if l == "" {
			continue
		}
		lst, err := lstat(l)
		if err != nil {
			return overlayStack{}, err
		}
		in := inodeOf(lst)
		st.key.Layer[i] = key(in)
		if st.backing != 0 && st.backing != in.Dev {
			several = true
		}
		st.backing = in.Dev
	}
	if several {
		st.backing = 0
	}
	return st, nil
}

func (p *policy) addStack(st overlayStack, flags uint32) {
	t := p.stacks[st.key]
	t.BackingDev = st.backing
	t.Flags |= flags
	p.stacks[st.key] = t
}

// errStackUnknown says the layers the agent sees under its root or its
// binaries are not the ones recorded when Sentinel was loaded.
var errStackUnknown = errors.New("overlay layers are not the ones recorded at load")

// writeStacks makes the kernel's trusted stacks want: new ones first, then
// the removal of the others. Stacks are recorded by the agent that loads
// Sentinel; an agent that adopts it only checks that what it sees is
// recorded. It has its role because the kernel found its real root's
// layers recorded; layer paths that lead elsewhere (a container's view of
// the storage mounted from somewhere else) would make it record, and
// protect, other files.
func (w *policyWriter) writeStacks(want map[sentinelSentinelStack]sentinelSentinelStackTrust) error {
	maps, err := w.k.live()
	if err != nil {
		return fmt.Errorf("record overlay stacks: %w", err)
	}
	m := maps.SentinelStacks
	if w.k.adopted {
		for k, v := range want {
			var have sentinelSentinelStackTrust
			if err := m.Lookup(k, &have); err != nil || have.Flags&v.Flags != v.Flags || have.BackingDev != v.BackingDev {
				w.ev.raise("the overlay layers seen at the mounted paths are not the ones recorded at load: the policy is not rebuilt from them")
				return fmt.Errorf("%w: a stack of %d layers (first %s)", errStackUnknown, k.Layers, Inode{Dev: k.Layer[0].Dev, Ino: k.Layer[0].Ino})
			}
		}
	}
	for k, v := range want {
		if err := m.Put(k, v); err != nil {
			return fmt.Errorf("record overlay stack: %w", err)
		}
	}
	var k sentinelSentinelStack
	var v sentinelSentinelStackTrust
	var stale []sentinelSentinelStack
	it := m.Iterate()
	for it.Next(&k, &v) {
		if _, ok := want[k]; !ok {
			stale = append(stale, k)
		}
	}
	for _, k := range stale {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("prune overlay stack: %w", err)
		}
	}
	return nil
}

// binaryIdentities adds the identities of a role binary to ids: its inode,
// or on overlayfs its files in the layers (an overlay inode's number is a
// layer file's, and its device is reused by later mounts).
func binaryIdentities(bin string, role Role, ids map[Inode]sentinelSentinelIdentity) error {
	copies, onOverlay, err := layerCopies(bin)
	if err != nil {
		return fmt.Errorf("identity %s: %w", bin, err)
	}
	if !onOverlay {
		in, err := executableInode(bin)
		if err != nil {
			return err
		}
		ids[in] = identity(bin, role)
		return nil
	}
	if len(copies) == 0 {
		return fmt.Errorf("identity %s: no file in the overlay layers under it", bin)
	}
	for _, c := range copies {
		in, err := executableInode(c)
		if err != nil {
			return err
		}
		id := identity(c, role)
		id.Flags = uint32(sentinelSentinelIdentityFlagSENTINEL_IDENTITY_LAYER)
		ids[in] = id
	}
	return nil
}

// layerCopies returns the files that path, on overlayfs, is in the layers
// under it; onOverlay is false (and there are none) if it is on another
// filesystem. The kernel knows an executable on a recorded container
// stack by its layer file (exe_roles).
func layerCopies(path string) (copies []string, onOverlay bool, err error) {
	layers, rel, ok, err := overlayOf(path)
	if err != nil || !ok {
		return nil, false, err
	}
	var out []string
	for _, l := range layers.all() {
		p := filepath.Join(l, rel)
		if st, err := os.Lstat(p); err == nil && st.Mode().IsRegular() {
			out = append(out, p)
		}
	}
	return out, true, nil
}
