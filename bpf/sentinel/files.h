/* SPDX-License-Identifier: GPL-2.0 */
/* File hooks: the protected inodes, the release tree, mounts. Part of sentinel.c, included there in order. */
#ifndef FORTRESS_SENTINEL_FILES_H
#define FORTRESS_SENTINEL_FILES_H

// raw_device refuses a write open of the block device a protected file
// lives on: dd or debugfs -w on it would change the file under every inode
// check. The device is matched by its dev_t (i_rdev), so any node for it,
// also one made with mknod, is the same device.
static __always_inline int raw_device(struct inode *inode)
{
	struct sentinel_inode key = {}, none = {};
	struct sentinel_object *o;
	__u32 allow;

	key.dev = inode->i_rdev;
	o = bpf_map_lookup_elem(&sentinel_objects, &key);
	if (!o || !(o->flags & SENTINEL_OBJ_BLOCKDEV))
		return 0;
	allow = o->allow;
	if (current_roles() & allow)
		return 0;
	return deny(SENTINEL_OP_OPEN_WRITE, SENTINEL_OBJ_BLOCKDEV, &key, &none, NULL, 0);
}

SEC("lsm/file_open")
int BPF_PROG(file_open, struct file *file, int ret)
{
	struct dentry *dentry;
	struct inode *inode;
	__u32 op = SENTINEL_OP_OPEN;
	__u32 tmask = 0;

	if (ret)
		return ret;
	if ((file->f_mode & FMODE_WRITE) || (file->f_flags & O_TRUNC)) {
		op = SENTINEL_OP_OPEN_WRITE;
		tmask = SENTINEL_OBJ_PROTECTED;
		inode = file->f_inode;
		if (inode && (inode->i_mode & S_IFMT) == S_IFBLK) {
			ret = raw_device(inode);
			if (ret)
				return ret;
		}
	}
	dentry = file->f_path.dentry;
	if (!tmask) // reads are never denied, only watched
		return check_op(op, file->f_inode, parent_inode(dentry), dentry, 0, 0, 0);
	return check(op, file->f_inode, parent_inode(dentry), dentry, tmask, 0);
}

static __always_inline int setattr(struct dentry *dentry, struct iattr *attr)
{
	__u32 valid = BPF_CORE_READ(attr, ia_valid);
	// ATTR_SIZE (8) alone is a truncate; anything else is an attribute change.
	__u32 op = valid == 8 || valid == (8 | 0x20 | 0x40) ? SENTINEL_OP_TRUNCATE : SENTINEL_OP_SETATTR;

	return check_dentry(op, dentry, SENTINEL_OBJ_PROTECTED, valid);
}

SEC("lsm/inode_setattr")
int BPF_PROG(inode_setattr_a0, struct dentry *dentry, struct iattr *attr, int ret)
{
	return ret ? ret : setattr(dentry, attr);
}

SEC("lsm/inode_setattr")
int BPF_PROG(inode_setattr_a1, void *idmap, struct dentry *dentry, struct iattr *attr, int ret)
{
	return ret ? ret : setattr(dentry, attr);
}

SEC("lsm/inode_unlink")
int BPF_PROG(inode_unlink, struct inode *dir, struct dentry *dentry, int ret)
{
	if (ret)
		return ret;
	return check(SENTINEL_OP_UNLINK, dentry->d_inode, dir, dentry, SENTINEL_OBJ_PROTECTED | SENTINEL_OBJ_ANCESTOR,
		     0);
}

SEC("lsm/inode_rmdir")
int BPF_PROG(inode_rmdir, struct inode *dir, struct dentry *dentry, int ret)
{
	if (ret)
		return ret;
	return check(SENTINEL_OP_RMDIR, dentry->d_inode, dir, dentry, SENTINEL_OBJ_PROTECTED | SENTINEL_OBJ_ANCESTOR,
		     0);
}

// learn_agent_binary makes a new agent executable, moved over the agent
// binary by the updater, an agent identity and a protected object. The old
// identity stays until the control plane prunes it, so the running agent
// keeps its authority through the upgrade.
static __always_inline void learn_agent_binary(struct dentry *src, struct sentinel_inode *parent)
{
	struct inode *inode = src->d_inode;
	struct sentinel_identity id = {.roles = SENTINEL_ROLE_AGENT, .gen_valid = 1};
	struct sentinel_object obj = {
		.flags = SENTINEL_OBJ_PROTECTED | SENTINEL_OBJ_AGENT_BINARY,
		.allow = SENTINEL_ROLE_UPDATER,
	};
	struct sentinel_inode key;
	__u32 slot;
	__u8 *set;

	// On overlayfs an inode's (dev, ino) is no lasting name (exe_roles): a
	// binary there is upgraded by a new image, not learned here.
	if (!inode || on_overlay(inode))
		return;
	inode_key(inode, &key);
	id.gen = BPF_CORE_READ(inode, i_generation);
	// The filter slot first: sentinel_objects never holds an entry whose
	// slot is clear.
	slot = listed_slot(key.ino);
	set = bpf_map_lookup_elem(&sentinel_listed, &slot);
	if (!set)
		return;
	*set = 1;
	bpf_map_update_elem(&sentinel_identities, &key, &id, BPF_ANY);
	bpf_map_update_elem(&sentinel_objects, &key, &obj, BPF_ANY);
	emit(SENTINEL_OP_IDENTITY_LEARNED, SENTINEL_ALLOWED, obj.flags, &key, parent, BPF_CORE_READ(src, d_name.name),
	     0);
}

// A role's tree (SENTINEL_OBJ_INHERIT on its directories) holds only what
// was created in it: d_instantiate protects each new entry from the moment
// it has a name, so nothing in the tree was ever writable by another
// process, and into_tree refuses to move or link in an inode from outside,
// which another process may have written or still hold open for writing.

// into_tree refuses to put inode into dir, a directory of a role's tree,
// unless the inode is protected already.
static __always_inline int into_tree(__u32 op, struct inode *inode, struct inode *dir, struct dentry *dentry)
{
	struct sentinel_inode dkey, key;
	struct sentinel_object *d = lookup_inode(dir, &dkey);
	struct sentinel_object *o;
	__u32 dflags = 0, oflags = 0;

	if (d)
		dflags = d->flags;
	if (!(dflags & SENTINEL_OBJ_INHERIT))
		return 0;
	o = lookup_inode(inode, &key);
	if (o)
		oflags = o->flags;
	if (oflags & SENTINEL_OBJ_PROTECTED)
		return 0;
	complete_key(inode, &key);
	complete_key(dir, &dkey);
	return deny(op, SENTINEL_OBJ_INHERIT, &key, &dkey, BPF_CORE_READ(dentry, d_name.name), 0);
}

// d_instantiate: an inode gets a name (a create, mkdir, symlink, mknod,
// tmpfile or link; also a lookup that brings an existing entry into the
// dcache). An entry that a role creates in a directory of its tree is
// protected as the directory is: a directory with its entries and
// inheriting, anything else by itself. Existing entries are in the policy
// already and keep their entry (BPF_NOEXIST).
SEC("lsm/d_instantiate")
int BPF_PROG(d_instantiate, struct dentry *dentry, struct inode *inode)
{
	struct sentinel_object obj = {.flags = SENTINEL_OBJ_PROTECTED};
	struct sentinel_inode dkey, key;
	struct sentinel_object *d;
	__u32 dflags = 0, slot;
	__u8 *set;

	if (!inode || !dentry)
		return 0;
	d = lookup_inode(dentry->d_parent->d_inode, &dkey);
	if (d) {
		dflags = d->flags;
		obj.allow = d->allow;
	}
	if (!(dflags & SENTINEL_OBJ_INHERIT) || !(current_roles() & obj.allow))
		return 0;
	if ((inode->i_mode & S_IFMT) == S_IFDIR)
		obj.flags |= SENTINEL_OBJ_CHILDREN | SENTINEL_OBJ_INHERIT;
	inode_key(inode, &key);
	// The filter slot first: sentinel_objects never holds an entry whose
	// slot is clear.
	slot = listed_slot(key.ino);
	set = bpf_map_lookup_elem(&sentinel_listed, &slot);
	if (!set)
		return 0;
	*set = 1;
	bpf_map_update_elem(&sentinel_objects, &key, &obj, BPF_NOEXIST);
	return 0;
}

SEC("lsm/inode_rename")
int BPF_PROG(inode_rename, struct inode *old_dir, struct dentry *old_dentry, struct inode *new_dir,
	     struct dentry *new_dentry, int ret)
{
	struct sentinel_inode key;
	struct sentinel_object *target;
	int err;

	if (ret)
		return ret;
	err = check(SENTINEL_OP_RENAME_FROM, old_dentry->d_inode, old_dir, old_dentry,
		    SENTINEL_OBJ_PROTECTED | SENTINEL_OBJ_ANCESTOR, 0);
	if (err)
		return err;
	err = check(SENTINEL_OP_RENAME_TO, new_dentry->d_inode, new_dir, new_dentry,
		    SENTINEL_OBJ_PROTECTED | SENTINEL_OBJ_ANCESTOR, 0);
	if (err)
		return err;
	err = into_tree(SENTINEL_OP_RENAME_TO, old_dentry->d_inode, new_dir, new_dentry);
	if (err)
		return err;
	target = lookup_inode(new_dentry->d_inode, &key);
	if (target && (target->flags & SENTINEL_OBJ_AGENT_BINARY) && (current_roles() & SENTINEL_ROLE_UPDATER)) {
		struct sentinel_inode pkey = {.ino = old_dir->i_ino, .dev = old_dir->i_sb->s_dev};

		learn_agent_binary(old_dentry, &pkey);
	}
	return 0;
}

SEC("lsm/inode_link")
int BPF_PROG(inode_link, struct dentry *old_dentry, struct inode *dir, struct dentry *new_dentry, int ret)
{
	int err;

	if (ret)
		return ret;
	// A new name for a protected inode is a way to reach it later.
	err = check_dentry(SENTINEL_OP_LINK, old_dentry, SENTINEL_OBJ_PROTECTED, 0);
	if (err)
		return err;
	err = into_tree(SENTINEL_OP_LINK, old_dentry->d_inode, dir, new_dentry);
	if (err)
		return err;
	return check(SENTINEL_OP_CREATE, NULL, dir, new_dentry, 0, 0);
}

SEC("lsm/inode_create")
int BPF_PROG(inode_create, struct inode *dir, struct dentry *dentry, umode_t mode, int ret)
{
	return ret ? ret : check(SENTINEL_OP_CREATE, NULL, dir, dentry, 0, mode);
}

SEC("lsm/inode_symlink")
int BPF_PROG(inode_symlink, struct inode *dir, struct dentry *dentry, const char *old_name, int ret)
{
	return ret ? ret : check(SENTINEL_OP_SYMLINK, NULL, dir, dentry, 0, 0);
}

SEC("lsm/inode_mkdir")
int BPF_PROG(inode_mkdir, struct inode *dir, struct dentry *dentry, umode_t mode, int ret)
{
	return ret ? ret : check(SENTINEL_OP_MKDIR, NULL, dir, dentry, 0, mode);
}

SEC("lsm/inode_mknod")
int BPF_PROG(inode_mknod, struct inode *dir, struct dentry *dentry, umode_t mode, dev_t dev, int ret)
{
	return ret ? ret : check(SENTINEL_OP_MKNOD, NULL, dir, dentry, 0, mode);
}

SEC("lsm/inode_setxattr")
int BPF_PROG(inode_setxattr_a0, struct dentry *dentry, const char *name, const void *value, size_t size, int flags,
	     int ret)
{
	return ret ? ret : check_dentry(SENTINEL_OP_SETXATTR, dentry, SENTINEL_OBJ_PROTECTED, 0);
}

SEC("lsm/inode_setxattr")
int BPF_PROG(inode_setxattr_a1, void *idmap, struct dentry *dentry, const char *name, const void *value, size_t size,
	     int flags, int ret)
{
	return ret ? ret : check_dentry(SENTINEL_OP_SETXATTR, dentry, SENTINEL_OBJ_PROTECTED, 0);
}

SEC("lsm/inode_removexattr")
int BPF_PROG(inode_removexattr_a0, struct dentry *dentry, const char *name, int ret)
{
	return ret ? ret : check_dentry(SENTINEL_OP_REMOVEXATTR, dentry, SENTINEL_OBJ_PROTECTED, 0);
}

SEC("lsm/inode_removexattr")
int BPF_PROG(inode_removexattr_a1, void *idmap, struct dentry *dentry, const char *name, int ret)
{
	return ret ? ret : check_dentry(SENTINEL_OP_REMOVEXATTR, dentry, SENTINEL_OBJ_PROTECTED, 0);
}

// ACLs have their own hooks from 6.2 on; older kernels set them as xattrs.
SEC("lsm/inode_set_acl")
int BPF_PROG(inode_set_acl_a1, void *idmap, struct dentry *dentry, const char *acl_name, void *kacl, int ret)
{
	return ret ? ret : check_dentry(SENTINEL_OP_SET_ACL, dentry, SENTINEL_OBJ_PROTECTED, 0);
}

SEC("lsm/inode_remove_acl")
int BPF_PROG(inode_remove_acl_a1, void *idmap, struct dentry *dentry, const char *acl_name, int ret)
{
	return ret ? ret : check_dentry(SENTINEL_OP_SET_ACL, dentry, SENTINEL_OBJ_PROTECTED, 0);
}

static __always_inline int ioctl(struct file *file, unsigned int cmd)
{
	if (cmd != FS_IOC_SETFLAGS && cmd != FS_IOC32_SETFLAGS && cmd != FS_IOC_FSSETXATTR && cmd != FS_IOC_SETVERSION)
		return 0;
	return check_dentry(SENTINEL_OP_IOCTL_SETFLAGS, file->f_path.dentry, SENTINEL_OBJ_PROTECTED, cmd);
}

SEC("lsm/file_ioctl")
int BPF_PROG(file_ioctl, struct file *file, unsigned int cmd, unsigned long arg, int ret)
{
	return ret ? ret : ioctl(file, cmd);
}

SEC("lsm/file_ioctl_compat")
int BPF_PROG(file_ioctl_compat, struct file *file, unsigned int cmd, unsigned long arg, int ret)
{
	return ret ? ret : ioctl(file, cmd);
}

static __always_inline int mount_on(const struct path *path, __u64 flags)
{
	return check_dentry(SENTINEL_OP_MOUNT, path->dentry,
			    SENTINEL_OBJ_PROTECTED | SENTINEL_OBJ_ANCESTOR, flags);
}

SEC("lsm/sb_mount")
int BPF_PROG(sb_mount, const char *dev_name, const struct path *path, const char *type, unsigned long flags,
	     void *data, int ret)
{
	if (ret)
		return ret;
	// Remounts and propagation changes do not put anything over a path.
	if (flags & (MS_REMOUNT | MS_UNBINDABLE | MS_PRIVATE | MS_SLAVE | MS_SHARED))
		return 0;
	return mount_on(path, flags);
}

SEC("lsm/move_mount")
int BPF_PROG(move_mount, const struct path *from_path, const struct path *to_path, int ret)
{
	return ret ? ret : mount_on(to_path, 0);
}

SEC("lsm/sb_umount")
int BPF_PROG(sb_umount, struct vfsmount *mnt, int flags, int ret)
{
	struct sentinel_inode key = {};
	struct sentinel_inode none = {};
	struct sentinel_object *sb;

	if (ret)
		return ret;
	key.dev = BPF_CORE_READ(mnt, mnt_sb, s_dev);
	sb = bpf_map_lookup_elem(&sentinel_objects, &key);
	if (!sb || !(sb->flags & SENTINEL_OBJ_SUPERBLOCK))
		return 0;
	if (current_roles() & sb->allow)
		return 0;
	return deny(SENTINEL_OP_UMOUNT, SENTINEL_OBJ_SUPERBLOCK, &key, &none, NULL, flags);
}

#endif
