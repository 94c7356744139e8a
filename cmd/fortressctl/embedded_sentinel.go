package main

import (
	"github.com/carverauto/fortress/internal/probe"
	"github.com/carverauto/fortress/internal/sentinel"
)

func init() {
	embedded = append(embedded, sentinel.Embedded(), probe.Embedded())
}
