package sentinel

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Role is a set of identities allowed to mutate an object.
type Role uint32

const (
	RoleAgent   = Role(sentinelSentinelRoleSENTINEL_ROLE_AGENT)
	RoleUpdater = Role(sentinelSentinelRoleSENTINEL_ROLE_UPDATER)
)

// Object flags: enum sentinel_object_flag in bpf/lib/sentinel.h, as
// bpf2go generates it.
const (
	flagProtected   = uint32(sentinelSentinelObjectFlagSENTINEL_OBJ_PROTECTED)
	flagChildren    = uint32(sentinelSentinelObjectFlagSENTINEL_OBJ_CHILDREN)
	flagAncestor    = uint32(sentinelSentinelObjectFlagSENTINEL_OBJ_ANCESTOR)
	flagAgentBinary = uint32(sentinelSentinelObjectFlagSENTINEL_OBJ_AGENT_BINARY)
	flagSuperblock  = uint32(sentinelSentinelObjectFlagSENTINEL_OBJ_SUPERBLOCK)
	flagRoot        = uint32(sentinelSentinelObjectFlagSENTINEL_OBJ_ROOT)
	flagBlockDev    = uint32(sentinelSentinelObjectFlagSENTINEL_OBJ_BLOCKDEV)
	flagWatchSelf   = uint32(sentinelSentinelObjectFlagSENTINEL_WATCH_SELF)
	flagWatchKids   = uint32(sentinelSentinelObjectFlagSENTINEL_WATCH_CHILDREN)
	flagInherit     = uint32(sentinelSentinelObjectFlagSENTINEL_OBJ_INHERIT)
	flagReleases    = uint32(sentinelSentinelObjectFlagSENTINEL_OBJ_RELEASES)
)

// Inode is an inode as the kernel names it: the superblock's dev_t in the
// kernel's encoding (major<<20 | minor) and the inode number.
type Inode struct {
	Dev uint32
	Ino uint64
}

// listedBits is SENTINEL_LISTED_BITS: sentinel_listed has 1<<listedBits
// slots.
const listedBits = 14

// listedSlot is listed_slot in sentinel.c: the sentinel_listed slot that
// must be set before an inode number may appear in sentinel_objects.
func listedSlot(ino uint64) uint32 {
	return uint32((ino * 0x9E3779B97F4A7C15) >> (64 - listedBits))
}

func (i Inode) String() string { return fmt.Sprintf("%d:%d:%d", i.Dev>>20, i.Dev&0xfffff, i.Ino) }

// kernelDev converts a user-space st_dev to the kernel's internal dev_t.
func kernelDev(dev uint64) uint32 {
	return unix.Major(dev)<<20 | unix.Minor(dev)
}

func inodeOf(st *unix.Stat_t) Inode { return Inode{Dev: kernelDev(st.Dev), Ino: st.Ino} }

// Entry is one row of the policy: what the kernel should do about an inode.
type Entry struct {
	Inode Inode
	Flags uint32
	Allow Role
	Path  string
}

// policy accumulates entries, merging flags of inodes met more than once.
type policy struct {
	entries map[Inode]*Entry
	order   []Inode
	// stacks are the overlayfs layer stacks the kernel trusts, with what
	// for (see struct sentinel_stack).
	stacks map[sentinelSentinelStack]sentinelSentinelStackTrust
	// releaseBins are the seed and the installed versions' agent
	// binaries of the release layout (protectReleases), identities all.
	releaseBins []string
}

func newPolicy() *policy {
	return &policy{entries: map[Inode]*Entry{}, stacks: map[sentinelSentinelStack]sentinelSentinelStackTrust{}}
}

// protections are the flags that refuse something; an inode that has
// several needs a role all of them allow.
const protections = flagProtected | flagChildren | flagSuperblock | flagBlockDev

func (p *policy) add(in Inode, flags uint32, allow Role, path string) {
	e, ok := p.entries[in]
	if !ok {
		e = &Entry{Inode: in, Allow: allow, Path: path}
		p.entries[in] = e
		p.order = append(p.order, in)
	} else if e.Flags&protections != 0 && flags&protections != 0 {
		// Two protections: the caller needs a role both allow.
		e.Allow &= allow
	} else if e.Flags&protections == 0 {
		e.Allow = allow
	}
	e.Flags |= flags
	// A protected file on a block device (not an anonymous one: tmpfs,
	// btrfs, overlayfs have major 0) protects that device from write
	// opens: raw writes would change the file under every inode check.
	// Nobody needs them, so no role is allowed.
	if flags&(flagProtected|flagChildren) != 0 && in.Ino != 0 && in.Dev>>20 != 0 {
		p.add(Inode{Dev: in.Dev}, flagBlockDev, 0, "block device of "+path)
	}
}

// Entries returns the accumulated entries in insertion order.
func (p *policy) Entries() []Entry {
	out := make([]Entry, 0, len(p.order))
	for _, in := range p.order {
		out = append(out, *p.entries[in])
	}
	return out
}

func lstat(path string) (*unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	return &st, nil
}

// protectFile protects one file (and, if path is a symlink, its target too).
func (p *policy) protectFile(path string, extra uint32, allow Role) error {
	st, err := lstat(path)
	if err != nil {
		return err
	}
	p.add(inodeOf(st), flagProtected|extra, allow, path)
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		real, err := filepath.EvalSymlinks(path)
		if err != nil {
			return fmt.Errorf("resolve %s: %w", path, err)
		}
		if err := p.protectFile(real, extra, allow); err != nil {
			return err
		}
		path = real
	}
	if err := p.ancestors(path); err != nil {
		return err
	}
	return p.protectLayers(path, false, allow)
}

// protectTree protects a directory, every entry below it, and the entries
// that will be created in it later.
func (p *policy) protectTree(root string, allow Role) error {
	return p.protectTreeDirs(root, allow, 0)
}

// protectTreeDirs is protectTree with dirFlags added to every directory.
func (p *policy) protectTreeDirs(root string, allow Role, dirFlags uint32) error {
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		st, err := lstat(path)
		if err != nil {
			return err
		}
		flags := uint32(flagProtected)
		if d.IsDir() {
			flags |= flagChildren | dirFlags
		}
		p.add(inodeOf(st), flags, allow, path)
		return nil
	})
	if err != nil {
		return fmt.Errorf("protect %s: %w", root, err)
	}
	if err := p.ancestors(root); err != nil {
		return err
	}
	return p.protectLayers(root, true, allow)
}

// ancestors marks every directory above path: no rename, rmdir or mount
// over them, so the path keeps leading to the protected object.
func (p *policy) ancestors(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
		st, err := lstat(dir)
		if err != nil {
			return err
		}
		p.add(inodeOf(st), flagAncestor, 0, dir)
		if dir == "/" {
			return nil
		}
	}
}

// watch adds file integrity events for path (and, for a directory, for its
// entries).
func (p *policy) watch(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("watch %s: %w", path, err)
	}
	ust, err := lstat(path)
	if err != nil {
		return err
	}
	flags := uint32(flagWatchSelf)
	if st.IsDir() {
		flags |= flagWatchKids
	}
	p.add(inodeOf(ust), flags, 0, path)
	return nil
}

// superblock forbids unmounting the filesystem that holds path.
func (p *policy) superblock(path string, allow Role) error {
	st, err := lstat(path)
	if err != nil {
		return err
	}
	p.add(Inode{Dev: kernelDev(st.Dev)}, flagSuperblock, allow, "superblock of "+path)
	return nil
}

// generation returns the inode generation of path where the filesystem
// reports one (ext4, xfs), so the identity survives no inode-number reuse.
func generation(path string) (uint32, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	gen, err := unix.IoctlGetUint32(int(f.Fd()), fsIocGetVersion)
	if err != nil {
		return 0, false
	}
	return gen, true
}

var errNotRegular = errors.New("not a regular file")

// executableInode resolves an executable path to its inode.
func executableInode(path string) (Inode, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return Inode{}, fmt.Errorf("stat %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return Inode{}, fmt.Errorf("executable %s: %w", path, errNotRegular)
	}
	return inodeOf(&st), nil
}

// fsIocGetVersion is FS_IOC_GETVERSION (_IOR('v', 1, long)) on 64-bit.
const fsIocGetVersion = 0x80087601
