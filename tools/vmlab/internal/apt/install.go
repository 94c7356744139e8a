package apt

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// Missing returns the packages among pkgs that dpkg does not list as
// installed.
func Missing(ctx context.Context, pkgs ...string) []string {
	var missing []string
	for _, p := range pkgs {
		out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${db:Status-Status}", p).Output()
		if err != nil || strings.TrimSpace(string(out)) != "installed" {
			missing = append(missing, p)
		}
	}
	return missing
}

// EnsureInstalled installs whichever of pkgs are missing from the machine's
// own Debian sources, running "apt-get update" first only when something is
// to be installed. Progress goes to log.
func EnsureInstalled(ctx context.Context, log io.Writer, pkgs ...string) error {
	missing := Missing(ctx, pkgs...)
	if len(missing) == 0 {
		return nil
	}
	fmt.Fprintf(log, "vmlab: installing %s\n", strings.Join(missing, " "))
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	for _, step := range []struct {
		name string
		args []string
	}{
		{"update", []string{"-q", "update"}},
		{"install", append([]string{"-q", "-y", "--no-install-recommends", "install"}, missing...)},
	} {
		cmd := exec.CommandContext(ctx, "apt-get", step.args...)
		cmd.Env = env
		cmd.Stdout = log
		cmd.Stderr = log
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("apt-get %s: %w", step.name, err)
		}
	}
	if still := Missing(ctx, missing...); len(still) > 0 {
		return fmt.Errorf("install %s: still missing after apt-get install", strings.Join(still, " "))
	}
	return nil
}
