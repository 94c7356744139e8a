/* Shield: structures shared between the XDP program and Go (generated with
 * bpf2go -type). Defined once, here. */
#ifndef FORTRESS_SHIELD_H
#define FORTRESS_SHIELD_H

/* A verdict word: 0 is "no rule matched"; otherwise SHIELD_V_MATCH is set,
 * the low 8 bits are the prefix length of the longest matching rule and the
 * flags say what the rule does. The rule itself is the packet's source
 * address masked to that length: the verdict names it without a rule index,
 * so adjacent ranges of rules of one length and kind share a verdict. */
enum shield_verdict_bits {
	SHIELD_V_BITS_MASK = 0xff,
	SHIELD_V_ALLOW = 1 << 24,    /* an exception: pass */
	SHIELD_V_LOG_ONLY = 1 << 25, /* drop rule in dry run: count, sample, pass */
	SHIELD_V_MATCH = 1 << 26,    /* a rule matched (keeps /0 verdicts non-zero) */
};

/* IPv6 directory entry, one per top-16-bit block of the address space.
 * count == 0: every address of the block has verdict val.
 * count >= 2: val is the index of the block's first range. */
struct shield_dir {
	__u32 val;
	__u32 count;
};

/* IPv4 directory: one 32-bit entry per /16, sixteen to a map element (array
 * elements are 8-byte aligned; packing keeps the table at 256 KiB). An entry
 * with SHIELD_V4_LEAF set is the verdict of the whole /16; otherwise it is
 * the index of the /16's first block. */
#define SHIELD_V4_DIR_PER_ELEM 16
#define SHIELD_V4_LEAF 0x80000000u

struct shield_dir16 {
	__u32 e[SHIELD_V4_DIR_PER_ELEM];
};

/* Up to ten IPv4 ranges of one /16 in one cache line: range starts (low 16
 * bits) next to their verdicts. count, in a /16's first block, is the number
 * of ranges of the whole /16. */
#define SHIELD_V4_BLOCK_RANGES 10

struct shield_v4_block {
	__u16 key[SHIELD_V4_BLOCK_RANGES];
	__u32 val[SHIELD_V4_BLOCK_RANGES];
	__u32 count;
};

/* IPv6 verdicts are packed sixteen to a 64-byte element. */
#define SHIELD_VALS_PER_ELEM 16

struct shield_vals {
	__u32 v[SHIELD_VALS_PER_ELEM];
};

/* IPv6 range start: the address as two host-order halves. */
struct shield_key128 {
	__u64 hi;
	__u64 lo;
};

/* A rule, as the key of its counters: the prefix (IPv4 in the low 32 bits
 * of lo; both halves host order, masked to bits), its family and its kind
 * (SHIELD_RULE_ALLOW, SHIELD_RULE_LOG_ONLY). */
enum shield_rule_flags {
	SHIELD_RULE_ALLOW = 1 << 0,
	SHIELD_RULE_LOG_ONLY = 1 << 1,
};

struct shield_rule_key {
	__u64 hi;
	__u64 lo;
	__u8 family; /* 4 or 6 */
	__u8 bits;
	__u8 flags;
	__u8 pad[5];
};

/* Per rule that saw traffic, shared by all CPUs (atomic adds): packets and
 * bytes the rule acted on (drops, or would-drops for log-only rules and in
 * dry run, or passes for allow rules). */
struct shield_counter {
	__u64 packets;
	__u64 bytes;
};

enum shield_mode_flags {
	SHIELD_MODE_DRY_RUN = 1 << 0,
};

/* Version of the pinned map layout, stored in shield_control; a pinned
 * Shield of another layout is not adopted. */
enum shield_layout {
	SHIELD_LAYOUT = 2,
};

/* The single element of the shield_state map: which generation of the
 * tables is live and the global mode. serial counts swaps; digest names the
 * set in force (the caller's digest of rules and mode), so that a restarted
 * agent holding the same set adopts the tables instead of rebuilding them. */
struct shield_control {
	__u32 gen;
	__u32 flags;
	__u64 serial;
	__u32 layout;
	__u32 rules; /* rules in the set in force */
	__u8 digest[32];
};

/* Global per-CPU counters, index by enum shield_stat. */
enum shield_stat {
	SHIELD_STAT_PASS = 0,
	SHIELD_STAT_DROP,
	SHIELD_STAT_WOULD_DROP,
	SHIELD_STAT_ALLOW_HIT,
	SHIELD_STAT_BYPASS,
	SHIELD_STAT_NON_IP,
	SHIELD_STAT_UNPARSED,
	SHIELD_STAT_SAMPLE_SENT,
	SHIELD_STAT_SAMPLE_LOST,
	SHIELD_STAT_RULE_UNTRACKED, /* matched a rule the full rule_hits table could not take */
	SHIELD_STAT_MAX,
};

/* A dry-run sample sent to user space through the ring buffer. */
struct shield_sample {
	__u64 ts_ns;
	__u32 verdict;
	__u32 ifindex;
	__u8 family; /* 4 or 6 */
	__u8 pad[3];
	__u32 pkt_len;
	__u8 addr[16]; /* source address, network order; IPv4 in the first 4 */
};

#endif
