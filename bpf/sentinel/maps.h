/* SPDX-License-Identifier: GPL-2.0 */
/* Sentinel's maps, and the types bpf2go generates for the control plane. Part of sentinel.c, included there in order. */
#ifndef FORTRESS_SENTINEL_MAPS_H
#define FORTRESS_SENTINEL_MAPS_H

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct sentinel_inode);
	__type(value, struct sentinel_object);
} sentinel_objects SEC(".maps");

// A superset filter of sentinel_objects, by inode number, so that the
// common case (an inode nobody listed) costs an array load instead of hash
// lookups. Slots are set before their entries are added (by the control
// plane, and by learn_agent_binary) and never cleared, so a zero slot is
// proof of absence. One byte per element and plain stores: 5.10 has no
// atomic OR, and no store may clobber another's.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << SENTINEL_LISTED_BITS);
	__type(key, __u32);
	__type(value, __u8);
} sentinel_listed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct sentinel_inode);
	__type(value, struct sentinel_identity);
} sentinel_identities SEC(".maps");

// Roles earned by thread groups, keyed by the group leader's task_struct
// address: set at a clean exec of a role binary (bprm_committing_creds) or
// by the loader's claim, dropped at any other exec and in task_free, so an
// address is never reused with a stale grant.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct sentinel_grant);
} sentinel_grants SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sentinel_claim);
} sentinel_claims SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SENTINEL_ROLE_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} sentinel_role_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct sentinel_guard);
	__type(value, __u32);
} sentinel_guarded SEC(".maps");

// Overlay layer stacks the agent's root may be (see struct sentinel_stack).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct sentinel_stack);
	__type(value, struct sentinel_stack_trust);
} sentinel_stacks SEC(".maps");

// One sentinel_stack per CPU to build a key in (it is larger than the
// stack of a BPF program allows).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sentinel_stack);
} sentinel_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sentinel_settings);
} sentinel_config SEC(".maps");

// The release layout, if the agent has one (struct sentinel_release).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sentinel_release);
} sentinel_layout SEC(".maps");

// The bpf(2) command each thread last started among those that create a
// program fd, so that the bpf_prog hook can tell a load from a lookup.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u32);
} sentinel_bpf_cmd SEC(".maps");

// Tasks (by task_struct address) that hold a Fortress fd (a write-capable
// fd of a guarded map, an fd of a guarded link or of a Fortress program) in
// a private fd table. Such a task may not clone: its table never becomes
// shared, so no other thread can swap an fd between a bpf(2) hook and the
// command. Entries leave with the task.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} sentinel_holders SEC(".maps");

// Tasks whose next file allocation is the fd for a guarded link they may
// not have (BPF_OBJ_GET into a shared fd table), and how many there are,
// so that file_alloc_security costs one array load when there are none.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u32);
} sentinel_link_deny SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sentinel_link_deny_n SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SENTINEL_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} sentinel_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} sentinel_events SEC(".maps");


// Put the event type and the refusal reasons into BTF for bpf2go -type;
// never read.
const struct sentinel_event *unused_sentinel_event __attribute__((unused));
const enum sentinel_refusal *unused_sentinel_refusal __attribute__((unused));
const enum sentinel_prctl *unused_sentinel_prctl __attribute__((unused));
const enum sentinel_op *unused_sentinel_op __attribute__((unused));
const enum sentinel_role_stat *unused_sentinel_role_stat __attribute__((unused));
const enum sentinel_identity_flag *unused_sentinel_identity_flag __attribute__((unused));
const enum sentinel_stack_flag *unused_sentinel_stack_flag __attribute__((unused));
const enum sentinel_object_flag *unused_sentinel_object_flag __attribute__((unused));
const enum sentinel_role *unused_sentinel_role __attribute__((unused));
const enum sentinel_mode *unused_sentinel_mode __attribute__((unused));
const enum sentinel_guard_kind *unused_sentinel_guard_kind __attribute__((unused));
const enum sentinel_verdict *unused_sentinel_verdict __attribute__((unused));
const enum sentinel_stat *unused_sentinel_stat __attribute__((unused));

#endif
