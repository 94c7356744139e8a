/* SPDX-License-Identifier: GPL-2.0 */
/* Overlayfs: the layer stack of a superblock and whether it is a trusted one. Part of sentinel.c, included there in order. */
#ifndef FORTRESS_SENTINEL_OVERLAY_H
#define FORTRESS_SENTINEL_OVERLAY_H

/* Overlayfs internals (fs/overlayfs/ovl_entry.h), relocated against the
 * overlay module's BTF where it has one (5.11 on); overlay_stack reads the
 * 5.10 layout otherwise. */
struct ovl_layer___sentinel {
	struct vfsmount *mnt;
} __attribute__((preserve_access_index));

struct ovl_fs___sentinel {
	unsigned int numlayer;
	struct ovl_layer___sentinel *layers;
} __attribute__((preserve_access_index));

// overlay_stack fills this CPU's scratch with the layers of sb and returns
// it, or NULL: sb is not overlayfs, has more layers than SENTINEL_STACK_MAX,
// or this kernel's overlayfs was unknown at load.
static __always_inline struct sentinel_stack *overlay_stack(struct super_block *sb)
{
	struct ovl_fs___sentinel *ofs;
	struct sentinel_stack *st;
	__u32 zero = 0, n, i;
	__u64 size, moff;
	void *layers;

	if (!sb || BPF_CORE_READ(sb, s_magic) != OVERLAYFS_SUPER_MAGIC)
		return NULL;
	st = bpf_map_lookup_elem(&sentinel_scratch, &zero);
	if (!st)
		return NULL;
	ofs = BPF_CORE_READ(sb, s_fs_info);
	if (bpf_core_type_exists(struct ovl_fs___sentinel)) {
		n = BPF_CORE_READ(ofs, numlayer);
		layers = BPF_CORE_READ(ofs, layers);
		size = bpf_core_type_size(struct ovl_layer___sentinel);
		moff = bpf_core_field_offset(struct ovl_layer___sentinel, mnt);
	} else {
		// No BTF for overlayfs: modules have BTF only from 5.11. The
		// layout of 5.7 to 6.4: numlayer, numfs, then the layers
		// pointer; a layer is 32 bytes with mnt first. A kernel laid
		// out otherwise yields a stack that matches nothing recorded
		// (no role: closed).
		n = 0;
		layers = NULL;
		bpf_probe_read_kernel(&n, sizeof(n), ofs);
		bpf_probe_read_kernel(&layers, sizeof(layers), (void *)ofs + 8);
		size = 32;
		moff = 0;
	}
	if (n == 0 || n > SENTINEL_STACK_MAX || !layers)
		return NULL;
	st->layers = n;
	st->pad = 0;
	for (i = 0; i < SENTINEL_STACK_MAX; i++) {
		struct ovl_layer___sentinel *l = layers + i * size;
		struct inode *root = NULL;
		struct vfsmount *mnt;

		st->layer[i].ino = 0;
		st->layer[i].dev = 0;
		st->layer[i].pad = 0;
		if (i >= n)
			continue;
		mnt = NULL;
		bpf_probe_read_kernel(&mnt, sizeof(mnt), (void *)l + moff);
		if (mnt)
			root = BPF_CORE_READ(mnt, mnt_root, d_inode);
		if (root)
			inode_key(root, &st->layer[i]);
	}
	return st;
}

// stack_trust looks the layer stack of sb (a super_block) up in
// sentinel_stacks: -1 if sb is no overlayfs of a recorded stack with every
// flag of want, else the filesystem the layers are on (0: several). A
// global function, verified once per program rather than inlined into
// every check: the layer loop is long.
__noinline long stack_trust(__u64 sb, __u32 want)
{
	struct sentinel_stack *st = overlay_stack((struct super_block *)sb);
	struct sentinel_stack_trust *t;

	if (!st)
		return -1;
	t = bpf_map_lookup_elem(&sentinel_stacks, st);
	if (!t || (t->flags & want) != want)
		return -1;
	return t->backing_dev;
}

// trusted_stack: sb is an overlayfs whose layers are a stack recorded
// with every flag of want; backing (if not NULL) gets the filesystem the
// layers are on.
static __always_inline bool trusted_stack(struct super_block *sb, __u32 want, __u32 *backing)
{
	long r = stack_trust((__u64)sb, want);

	if (r < 0)
		return false;
	if (backing)
		*backing = (__u32)r;
	return true;
}

static __always_inline bool on_overlay(struct inode *inode)
{
	return BPF_CORE_READ(inode, i_sb, s_magic) == OVERLAYFS_SUPER_MAGIC;
}

#endif
