package main

import "github.com/carverauto/fortress/internal/shield"

func init() {
	embedded = append(embedded, shield.Object)
}
