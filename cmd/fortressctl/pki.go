package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/carverauto/fortress/internal/pki"
)

func init() {
	register("pki", "make a demo CA and certificates for the ControlStream (init, issue)", runPKI)
}

func runPKI(_ context.Context, args []string) (int, error) {
	usage := "pki init [--hosts 127.0.0.1,localhost] DIR | pki issue [--role agent|admin] DIR ID"
	if len(args) == 0 {
		return 2, usageError{usage}
	}
	fs := newFlagSet("pki")
	hosts := fs.String("hosts", "127.0.0.1,localhost", "gateway names and addresses for its certificate")
	role := fs.String("role", pki.RoleAgent, "client certificate role")
	if err := fs.Parse(args[1:]); err != nil {
		return 2, usageError{fmt.Sprintf("%s: %v", usage, err)}
	}
	switch {
	case args[0] == "init" && fs.NArg() == 1:
		if _, err := pki.Init(fs.Arg(0), strings.Split(*hosts, ",")...); err != nil {
			return 1, err
		}
		fmt.Printf("wrote %s: %s %s %s %s %s %s\n", fs.Arg(0), pki.Files.CA, pki.Files.CAKey, pki.Files.Server, pki.Files.ServerKey, pki.Files.Admin, pki.Files.AdminKey)
		return 0, nil
	case args[0] == "issue" && fs.NArg() == 2:
		if *role != pki.RoleAgent && *role != pki.RoleAdmin {
			return 2, usageError{"--role must be agent or admin"}
		}
		ca, err := pki.LoadCA(fs.Arg(0))
		if err != nil {
			return 1, err
		}
		id := fs.Arg(1)
		c, err := ca.Client(id, *role)
		if err != nil {
			return 1, err
		}
		if err := pki.WriteCert(fs.Arg(0), id+".pem", id+"-key.pem", c); err != nil {
			return 1, err
		}
		fmt.Printf("wrote %s/%s.pem and %s-key.pem (role %s)\n", fs.Arg(0), id, id, *role)
		return 0, nil
	}
	return 2, usageError{usage}
}
