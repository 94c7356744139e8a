// Package netlab builds private test networks: two network namespaces
// joined by a veth pair, created directly inside the namespaces (never on a
// host interface) and deleted on Close. Tests and the demo run Shield on
// the veth and send traffic between the namespaces only.
package netlab
