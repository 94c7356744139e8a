/* Shield's maps, shared by the XDP program and the benchmark object so that
 * the benchmark searches the very tables the firewall uses. Sizes marked 1
 * are set by the control plane before load. */
#ifndef FORTRESS_SHIELD_MAPS_H
#define FORTRESS_SHIELD_MAPS_H

#include "shield.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct shield_control);
} shield_state SEC(".maps");

/* Both generations of every table: generation g starts at g * (entries per
 * generation). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 2 * 65536 / SHIELD_V4_DIR_PER_ELEM);
	__type(key, __u32);
	__type(value, struct shield_dir16);
} v4_dir SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct shield_v4_block);
} v4_blocks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 2 * 65536);
	__type(key, __u32);
	__type(value, struct shield_dir);
} v6_dir SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct shield_key128);
} v6_keys SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct shield_vals);
} v6_vals SEC(".maps");

/* Counters of the rules that saw traffic, keyed by the rule itself, so a
 * rule keeps its counts across swaps for as long as it stays in the set.
 * Shared by all CPUs: its memory does not grow with the CPU count. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct shield_rule_key);
	__type(value, struct shield_counter);
} rule_hits SEC(".maps");

#endif
