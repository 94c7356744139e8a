// Package fortress is the embeddable face of Fortress, the eBPF security
// suite of ServiceRadar's agent. An agent starts it once with Start, feeds it
// signed policy bundles with ApplyBundle, and watches it through Status,
// Counters and Events; Stop releases it while the pinned kernel state keeps
// enforcing.
//
// Two layers live in the kernel. Shield, an XDP firewall, fails open: when it
// cannot load or attach, Start still succeeds, traffic flows and Status says
// "shield: degraded" with the reason. Sentinel, the BPF LSM layer, fails
// closed: an integrity failure keeps or tightens enforcement and raises a
// critical event; where BPF LSM is not usable, Status says "sentinel:
// unavailable" with the reason and never claims protection.
//
// A bundle is verified (signature, target, version above the last applied)
// and converted in full before anything changes. Shield then swaps its rule
// set in one step; if a later step fails, the previous rule set is put back,
// so a refused bundle leaves the policy in force as it was and the error
// names the problem. The last applied bundle is kept in the state directory
// and re-applied at Start, so an agent enforces while its gateway is
// unreachable. Pinned kernel state is adopted at Start, so restarts and
// kill -9 interrupt nothing.
//
// Every change of kernel state is appended to the hash-chained audit log.
//
// Inside, a Fortress coordinates one controller per layer, each the only
// owner of its state: Shield's (attachment, management addresses, rule
// sets, counters, samples), Sentinel's (paths, events, the guard over
// Shield's pins) and the policy's (verification, the policy in force and
// its undo, the record of the last applied bundle). Changes are serialised;
// Status reads snapshots and never waits for one.
//
// The package builds on every platform ServiceRadar's agent ships for. Off
// Linux there is no eBPF: Start returns an error wrapping ErrUnsupported,
// and the host agent reports Fortress as unsupported and keeps running.
//
// Nothing in this package's API exposes Fortress's internal packages; the
// dependency runs one way, from the agent and tools to this package.
package fortress
