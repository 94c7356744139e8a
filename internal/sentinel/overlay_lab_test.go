package sentinel

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// tracedHelper runs bin as helper mode under a tracer: the child asks to be
// traced (PTRACE_TRACEME) and execs; the tracer lets it go at the exec
// stop. The exec was traced, so bin earns no role.
func tracedHelper(bin, mode string, args ...string) (string, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var out strings.Builder
	c := exec.Command(bin, args...)
	c.Env = append(os.Environ(), helperEnv+"="+mode)
	c.Stdout, c.Stderr = &out, &out
	c.SysProcAttr = &syscall.SysProcAttr{Ptrace: true}
	if err := c.Start(); err != nil {
		return "", err
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(c.Process.Pid, &ws, 0, nil); err != nil {
		return "", err
	}
	if err := unix.PtraceDetach(c.Process.Pid); err != nil {
		return "", fmt.Errorf("detach: %w", err)
	}
	err := c.Wait()
	return out.String(), err
}

// overlayLab is a lab whose config directory and agent binary live on
// overlayfs, the way an image puts them there: /etc/serviceradar is a bind
// mount of merged/etc/serviceradar, and the agent runs from
// merged/usr/local/bin. The layers:
//
//	lower1 (top):    etc/ (no serviceradar in it), usr/local/bin/serviceradar-agent
//	lower2 (bottom): etc/serviceradar/{sweep.json,trust.pem}
//	upper:           etc/serviceradar/copied.json (a file already copied up)
type overlayLab struct {
	*lab
	lower1, lower2, upper, work, merged string
}

func newOverlayLab(t *testing.T) *overlayLab {
	o := &overlayLab{}
	o.lab = newLabWith(t, func(l *lab) {
		base := filepath.Join(l.dir, "ovl")
		o.lower1, o.lower2 = filepath.Join(base, "lower1"), filepath.Join(base, "lower2")
		o.upper, o.work, o.merged = filepath.Join(base, "upper"), filepath.Join(base, "work"), filepath.Join(base, "merged")
		for _, d := range []string{
			filepath.Join(o.lower1, "etc"), filepath.Join(o.lower1, "usr/local/bin"),
			filepath.Join(o.lower2, "etc/serviceradar"), filepath.Join(o.upper, "etc/serviceradar"), o.work, o.merged,
		} {
			must(t, os.MkdirAll(d, 0o755))
		}
		must(t, os.WriteFile(filepath.Join(o.lower2, "etc/serviceradar/sweep.json"), []byte(`{"networks":["10.0.0.0/8"],"a":"a"}`), 0o644))
		must(t, os.WriteFile(filepath.Join(o.lower2, "etc/serviceradar/trust.pem"), []byte("trust"), 0o644))
		must(t, os.WriteFile(filepath.Join(o.upper, "etc/serviceradar/copied.json"), []byte(`{"copied":true}`), 0o644))
		must(t, copyFile(l.agentBin, filepath.Join(o.lower1, "usr/local/bin/serviceradar-agent")))
		opts := fmt.Sprintf("lowerdir=%s:%s,upperdir=%s,workdir=%s", o.lower1, o.lower2, o.upper, o.work)
		if err := unix.Mount("overlay", o.merged, "overlay", 0, opts); err != nil {
			t.Fatalf("mount overlay: %v", err)
		}
		l.unmounts = append(l.unmounts, o.merged)
		must(t, unix.Mount(filepath.Join(o.merged, "etc/serviceradar"), l.configDir, "", unix.MS_BIND, ""))
		l.unmounts = append(l.unmounts, l.configDir)
		l.agentBin = filepath.Join(o.merged, "usr/local/bin/serviceradar-agent")
		l.staging = filepath.Join(o.merged, "usr/local/bin/.fortress-staging")
		l.layers = []string{o.lower1, o.lower2, o.upper}
	})
	return o
}

// attacksOn returns ATTACKS.md rows 1-12 aimed at file (an existing config
// file) in dir, run from paths of one layer.
func attacksOn(layer, dir, file, scratch string) []attack {
	p := filepath.Join(dir, file)
	evil := filepath.Join(scratch, "evil-"+layer+".json")
	return []attack{
		{name: layer + " 1 rm -f " + file, run: func() error { return sh("rm -f " + p) }},
		{name: layer + " 1 rm -rf dir", run: func() error { return sh("rm -rf " + dir) }},
		{name: layer + " 2 echo x >", run: func() error { return sh("echo x > " + p) }},
		{name: layer + " 2 echo x >>", run: func() error { return sh("echo x >> " + p) }},
		{name: layer + " 3 truncate -s0", run: func() error { return sh("truncate -s0 " + p) }},
		{name: layer + " 4 mv to scratch", run: func() error { return sh("mv " + p + " " + scratch + "/") }},
		{name: layer + " 5 mv evil over", run: func() error {
			if err := os.WriteFile(evil, []byte(`{"networks":["0.0.0.0/0"]}`), 0o644); err != nil {
				return err
			}
			return sh("mv " + evil + " " + p)
		}},
		{name: layer + " 6 sed -i", run: func() error { return sh("sed -i s/a/b/ " + p) }},
		{name: layer + " 7 cp evil over", run: func() error {
			if err := os.WriteFile(evil, []byte(`{"networks":["0.0.0.0/0"]}`), 0o644); err != nil {
				return err
			}
			return sh("cp " + evil + " " + p)
		}},
		{name: layer + " 8 touch injected.json", run: func() error { return sh("touch " + filepath.Join(dir, "injected.json")) }},
		{name: layer + " 8 whiteout (mknod c 0 0)", run: func() error { return unix.Mknod(filepath.Join(dir, "sweep2.json"), unix.S_IFCHR, 0) }, errno: unix.EPERM},
		{name: layer + " 9 chmod 666", run: func() error { return sh("chmod 666 " + p) }},
		{name: layer + " 9 chown nobody", run: func() error { return sh("chown 65534 " + p) }},
		{name: layer + " 10 ln to scratch", run: func() error { return unix.Link(p, filepath.Join(scratch, "h-"+layer)) }, errno: unix.EPERM},
		{name: layer + " 11 ln -s into dir", run: func() error { return sh("ln -s " + evil + " " + filepath.Join(dir, "a.json")) }},
		{name: layer + " 12 mv dir", run: func() error { return sh("mv " + dir + " " + dir + "-old") }},
		{name: layer + " xattr opaque on dir", run: func() error {
			return unix.Setxattr(dir, "trusted.overlay.opaque", []byte("y"), 0)
		}, errno: unix.EPERM},
	}
}

// TestLabOverlayLayers: root on the host goes through each layer under the
// merged config view, and every attack is refused (the four
// reproductions among them: a lower file not yet copied up, a copied-up
// file in the upper layer, a new file in the upper layer, the trust file
// in the lower layer).
func TestLabOverlayLayers(t *testing.T) {
	o := newOverlayLab(t)
	l := o.lab
	lowerCfg := filepath.Join(o.lower2, "etc/serviceradar")
	upperCfg := filepath.Join(o.upper, "etc/serviceradar")
	l.refuse(attacksOn("lower", lowerCfg, "sweep.json", l.free)...)
	l.refuse(attacksOn("upper", upperCfg, "copied.json", l.free)...)
	l.refuse(
		attack{name: "lower: replace trust.pem", run: func() error { return sh("echo evil > " + filepath.Join(lowerCfg, "trust.pem")) }},
		// A higher lower layer would shadow the one holding the config.
		attack{name: "lower1: mkdir etc/serviceradar (shadow)", run: func() error { return unix.Mkdir(filepath.Join(o.lower1, "etc/serviceradar"), 0o755) }, errno: unix.EPERM},
		attack{name: "lower1: opaque xattr on etc", run: func() error {
			return unix.Setxattr(filepath.Join(o.lower1, "etc"), "trusted.overlay.opaque", []byte("y"), 0)
		}, errno: unix.EPERM},
		attack{name: "upper: opaque xattr on etc", run: func() error {
			return unix.Setxattr(filepath.Join(o.upper, "etc"), "trusted.overlay.opaque", []byte("y"), 0)
		}, errno: unix.EPERM},
		attack{name: "upper: mv etc away", run: func() error { return unix.Rename(filepath.Join(o.upper, "etc"), filepath.Join(o.upper, "etc-old")) }, errno: unix.EPERM},
		attack{name: "work dir: rename", run: func() error { return unix.Rename(o.work, o.work+"-old") }, errno: unix.EPERM},
		attack{name: "upper dir: rename", run: func() error { return unix.Rename(o.upper, o.upper+"-old") }, errno: unix.EPERM},
		attack{name: "lower: mv the layer", run: func() error { return unix.Rename(o.lower2, o.lower2+"-old") }, errno: unix.EPERM},
		// The agent binary in its layer.
		attack{name: "lower1: cp evil over the agent binary", run: func() error {
			return sh("cp /tmp/evil.json " + filepath.Join(o.lower1, "usr/local/bin/serviceradar-agent"))
		}, kernelFirst: "text file busy"},
		attack{name: "lower1: rm the agent binary", run: func() error { return unix.Unlink(filepath.Join(o.lower1, "usr/local/bin/serviceradar-agent")) }, errno: unix.EPERM},
		attack{name: "upper: put an agent binary in front", run: func() error {
			return openWrite(filepath.Join(o.upper, "usr/local/bin/serviceradar-agent"), unix.O_CREAT|unix.O_WRONLY)
		}, errno: unix.EPERM},
		// Through the merged view, as before.
		attack{name: "merged: echo x > sweep.json", run: func() error { return sh("echo x > " + filepath.Join(l.configDir, "sweep.json")) }},
		attack{name: "merged: mount over the config dir", run: func() error { return unix.Mount("none", l.configDir, "tmpfs", 0, "") }, errno: unix.EPERM},
	)
	for _, f := range []string{filepath.Join(l.configDir, "sweep.json"), filepath.Join(l.configDir, "trust.pem")} {
		if b, err := os.ReadFile(f); err != nil || strings.Contains(string(b), "0.0.0.0/0") || strings.Contains(string(b), "evil") {
			t.Errorf("%s through the merged view: %q %v", f, b, err)
		}
	}
	if _, err := os.Stat(filepath.Join(l.configDir, "injected.json")); err == nil {
		t.Errorf("injected.json appeared in the config directory")
	}
}

// TestLabOverlayIdentity: the agent binary's copy in its layer, run by its
// layer path, is another object than the one the kernel runs through the
// merged view, and carries no role (29, 30 through a layer); a role binary
// run under a tracer gets none for the layers either.
func TestLabOverlayIdentity(t *testing.T) {
	o := newOverlayLab(t)
	l := o.lab
	layerBin := filepath.Join(o.lower1, "usr/local/bin/serviceradar-agent")
	for _, target := range []string{
		filepath.Join(o.lower2, "etc/serviceradar/sweep.json"),
		filepath.Join(o.upper, "etc/serviceradar/copied.json"),
		filepath.Join(l.configDir, "sweep.json"),
	} {
		before := l.snapshot()
		w := exec.Command(layerBin, target, `{"networks":["0.0.0.0/0"]}`)
		w.Env = append(os.Environ(), helperEnv+"=write")
		out, err := w.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "not permitted") {
			t.Errorf("the agent binary run from its lower layer wrote %s: %v %s", target, err, out)
		}
		if d := before.diff(l.snapshot()); len(d) > 0 {
			t.Errorf("objects changed: %v", d)
		}
	}
	// 29 through the layers: the agent binary exec'd under a tracer
	// (PTRACE_TRACEME, then the tracer lets go) writes each layer's file.
	for _, target := range []string{
		filepath.Join(o.lower2, "etc/serviceradar/sweep.json"),
		filepath.Join(o.upper, "etc/serviceradar/copied.json"),
	} {
		before := l.snapshot()
		out, err := tracedHelper(l.agentBin, "write", target, `{"networks":["0.0.0.0/0"]}`)
		if err == nil || !strings.Contains(out, "not permitted") {
			t.Errorf("29: traced agent binary wrote %s: %v %s", target, err, out)
		}
		if d := before.diff(l.snapshot()); len(d) > 0 {
			t.Errorf("29: objects changed: %v", d)
		}
	}
	// 30: a process switching its exe_file to the agent binary on
	// overlayfs is refused before anything else.
	plain := filepath.Join(l.free, "plain")
	must(t, copyFile(l.updaterBin, plain))
	for _, to := range []string{l.agentBin, layerBin} {
		c := exec.Command(plain)
		c.Env = append(os.Environ(), helperEnv+"=setexe-self", "SETEXE_TO="+to)
		out, _ := c.CombinedOutput()
		if to == l.agentBin && !strings.Contains(string(out), "errno 1\n") {
			t.Errorf("30: prctl exe_file to the agent binary on overlayfs: %s", out)
		}
		if to == layerBin && strings.Contains(string(out), "errno 1\n") {
			t.Errorf("30: the layer copy of the agent binary is treated as a role binary: %s", out)
		}
		t.Logf("30: prctl exe_file to %s: %s", to, strings.TrimSpace(string(out)))
	}
	// The real agent binary, through the merged view, has its role.
	w := exec.Command(l.agentBin, filepath.Join(l.configDir, "sweep.json"), `{"networks":["192.0.2.0/24"],"a":"a"}`)
	w.Env = append(os.Environ(), helperEnv+"=write")
	if out, err := w.CombinedOutput(); err != nil {
		t.Fatalf("the agent binary through the merged view could not write its config: %v %s", err, out)
	}
}

// TestLabOverlayLegitimate: the agent writes its config on overlayfs (a
// copy-up of a lower file and a new file), the copies land in the upper
// layer protected, and the agent adopts its pins after a restart. (A
// binary on overlayfs is upgraded with its image, not by fortress-update:
// the kernel learns no new identity there.)
func TestLabOverlayLegitimate(t *testing.T) {
	o := newOverlayLab(t)
	l := o.lab
	sweep := filepath.Join(l.configDir, "sweep.json")
	l.mustDo("write " + sweep + ` {"networks":["192.0.2.0/24"]}`)
	l.mustDo("write " + filepath.Join(l.configDir, "new.json") + " {}")
	up := filepath.Join(o.upper, "etc/serviceradar/sweep.json")
	if b, err := os.ReadFile(up); err != nil || string(b) != `{"networks":["192.0.2.0/24"]}` {
		t.Fatalf("copy-up by the agent: upper sweep.json %q %v", b, err)
	}
	if b, _ := os.ReadFile(filepath.Join(o.lower2, "etc/serviceradar/sweep.json")); strings.Contains(string(b), "192.0.2.0") {
		t.Fatalf("the agent's write reached the lower layer")
	}
	// The copied-up file and the new one are protected in the upper layer
	// too (the upper directory protects its entries).
	l.refuse(
		attack{name: "upper: overwrite the agent's copy-up", run: func() error { return openWrite(up, unix.O_WRONLY|unix.O_TRUNC) }, errno: unix.EPERM},
		attack{name: "upper: rm the agent's new file", run: func() error { return unix.Unlink(filepath.Join(o.upper, "etc/serviceradar/new.json")) }, errno: unix.EPERM},
	)
	// Restart: the agent adopts its pins and keeps its authority.
	l.kill9()
	l.startAgent(l.agentBin, true)
	l.mustDo("write " + sweep + ` {"networks":["198.51.100.0/24"]}`)
}
