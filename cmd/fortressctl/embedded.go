package main

import "github.com/carverauto/fortress/internal/bytecode"

// embedded lists every BPF object compiled into Fortress, each with its
// reviewed allowlist, for `fortressctl allowlist`. The package that embeds an
// object appends its entry from an init function in a file of its own here,
// for example:
//
//	func init() {
//		embedded = append(embedded, bytecode.Embedded{
//			Name:  "shield",
//			Load:  shield.LoadSpec,
//			Allow: shield.Allowlist,
//		})
//	}
//
// Order does not matter: allowlist sorts by name.
var embedded []bytecode.Embedded
