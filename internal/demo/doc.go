// Package demo runs Fortress end to end on one machine: a gateway with its
// dashboard, a real fortress-agent process with Shield attached natively to
// a veth pair between two private network namespaces, a signed bundle with
// a sample blocklist, and continuous traffic from blocked and allowed
// sources. Everything lives in a temporary work directory (PKI, keys, the
// gateway's database, a private bpffs for the pins) and is removed by
// Close. cmd/fortress-demo and the end-to-end tests share it.
//
// RunLab is the second demo, for the VM lab: Sentinel protects
// /etc/serviceradar and a root "rm -rf" of a configuration file fails.
package demo
