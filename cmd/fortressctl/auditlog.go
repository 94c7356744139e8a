package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/carverauto/fortress/internal/auditlog"
	"github.com/carverauto/fortress/pkg/paths"
)

func init() {
	register("auditlog", "check the hash-chained audit log: auditlog verify [FILE]", runAuditlog)
}

func runAuditlog(_ context.Context, args []string) (int, error) {
	return auditlogCmd(args, os.Stdout)
}

// auditlogCmd runs `fortressctl auditlog verify [FILE]`. Exit status: 0
// intact, 1 the log fails verification (the error names the first bad
// line), 2 bad usage or a log that cannot be read.
func auditlogCmd(args []string, stdout io.Writer) (int, error) {
	usage := "auditlog verify [FILE] (default " + paths.AuditLog + ")"
	if len(args) == 0 || args[0] != "verify" || len(args) > 2 {
		return 2, usageError{usage}
	}
	path := paths.AuditLog
	if len(args) == 2 {
		if len(args[1]) > 0 && args[1][0] == '-' {
			return 2, usageError{usage}
		}
		path = args[1]
	}
	s, err := auditlog.VerifyFile(path)
	var ce *auditlog.ChainError
	switch {
	case errors.As(err, &ce):
		return 1, err
	case err != nil:
		return 2, err
	}
	fmt.Fprintf(stdout, "%s: intact, %d record(s)\n", path, s.Records)
	fmt.Fprintf(stdout, "head: seq %d hash %s\n", s.Head.Seq, s.Head.Hash)
	if s.HeadPending {
		fmt.Fprintf(stdout, "note: the head file is one record behind (an append was interrupted); the next writer repairs it. last hash %s\n", s.LastHash)
	}
	return 0, nil
}
