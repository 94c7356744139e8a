/* SPDX-License-Identifier: GPL-2.0 */
/* Inodes as the policy names them: keys, the listed filter, lookups, counters. Part of sentinel.c, included there in order. */
#ifndef FORTRESS_SENTINEL_INODE_H
#define FORTRESS_SENTINEL_INODE_H

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&sentinel_stats, &idx);

	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline void inode_key(struct inode *inode, struct sentinel_inode *key)
{
	key->ino = BPF_CORE_READ(inode, i_ino);
	key->dev = BPF_CORE_READ(inode, i_sb, s_dev);
	key->pad = 0;
}

// listed_slot is the sentinel_listed slot of an inode number (Fibonacci
// hashing; the control plane computes the same).
static __always_inline __u32 listed_slot(__u64 ino)
{
	return (ino * 0x9E3779B97F4A7C15ULL) >> (64 - SENTINEL_LISTED_BITS);
}

static __always_inline bool maybe_listed(__u64 ino)
{
	__u32 slot = listed_slot(ino);
	__u8 *set = bpf_map_lookup_elem(&sentinel_listed, &slot);

	return set && *set;
}

// lookup_inode takes an inode reached from a hook's arguments (a BTF
// pointer): plain loads and an inlined array lookup on the hot path. It
// fills key->ino; key->dev only if the inode may be listed (complete_key
// does the rest where an event needs it).
static __always_inline struct sentinel_object *lookup_inode(struct inode *inode, struct sentinel_inode *key)
{
	key->ino = 0;
	key->dev = 0;
	key->pad = 0;
	if (!inode)
		return NULL;
	key->ino = inode->i_ino;
	if (!maybe_listed(key->ino))
		return NULL;
	key->dev = inode->i_sb->s_dev;
	return bpf_map_lookup_elem(&sentinel_objects, key);
}

static __always_inline void complete_key(struct inode *inode, struct sentinel_inode *key)
{
	if (inode)
		key->dev = inode->i_sb->s_dev;
}

#endif
