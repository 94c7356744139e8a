package sentinel

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A container as a runtime makes one: an overlayfs root from image layers
// and a container layer, a new mount namespace, pivot_root, then the exec
// of the agent. The runtime is a helper (another copy of the test binary,
// no role of its own); the agent it execs is the image's binary.

// containerSpec is what the runtime helper gets in CONTAINER_SPEC.
type containerSpec struct {
	Lowers      []string // image layers, highest first
	Upper, Work string
	Merged      string
	// Binds are host paths mounted at the same path inside (the host's
	// bpffs with the pins, and the container storage, read-only in
	// production, so the agent sees its own layers).
	Binds []string
	// Views are further bind mounts, inside path to host path.
	Views map[string]string
	Exec  string   // the agent binary, a path inside the container
	Args  []string // its arguments
	Env   []string
}

// runContainer is the runtime: it never returns on success (it execs).
func runContainer() error {
	var c containerSpec
	if err := json.Unmarshal([]byte(os.Getenv("CONTAINER_SPEC")), &c); err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(c.Lowers, ":"), c.Upper, c.Work)
	var err error
	// The previous container's overlay goes away with its mount
	// namespace, which the kernel releases shortly after its last task.
	for try := 0; try < 50; try++ {
		if err = unix.Mount("overlay", c.Merged, "overlay", 0, opts); !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("mount overlay: %w", err)
	}
	for _, b := range c.Binds {
		dst := filepath.Join(c.Merged, b)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(b, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s: %w", b, err)
		}
	}
	for dst, src := range c.Views {
		if err := os.MkdirAll(filepath.Join(c.Merged, dst), 0o755); err != nil {
			return err
		}
		if err := unix.Mount(src, filepath.Join(c.Merged, dst), "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s at %s: %w", src, dst, err)
		}
	}
	if err := unix.Mount("proc", filepath.Join(c.Merged, "proc"), "proc", 0, ""); err != nil {
		return fmt.Errorf("mount proc: %w", err)
	}
	for _, d := range []string{"/dev", "/sys"} {
		if err := unix.Mount(d, filepath.Join(c.Merged, d), "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s: %w", d, err)
		}
	}
	old := filepath.Join(c.Merged, ".oldroot")
	if err := os.MkdirAll(old, 0o700); err != nil {
		return err
	}
	err = unix.PivotRoot(c.Merged, old)
	if errors.Is(err, unix.EINVAL) {
		// The lab VM runs from its initramfs (rootfs), which pivot_root
		// cannot move away from: enter a bind mount of it first, as
		// switch_root-style inits do, and pivot from there.
		if err := enterRootBind(); err != nil {
			return err
		}
		err = unix.PivotRoot(c.Merged, old)
	}
	if err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Unmount("/.oldroot", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	os.Remove("/.oldroot")
	return syscall.Exec(c.Exec, append([]string{c.Exec}, c.Args...), c.Env)
}

// enterRootBind makes this process's root a recursive bind mount of /, so
// that the root is a mount point with a parent, as pivot_root requires.
func enterRootBind() error {
	dir := fmt.Sprintf("/tmp/.runtime-root-%d", os.Getpid())
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := unix.Mount("/", dir, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind /: %w", err)
	}
	if err := unix.Chroot(dir); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	return unix.Chdir("/")
}

// containerLab runs the agent inside such a container. The image (lower)
// holds the agent and updater binaries and /etc/serviceradar with
// sweep.json and trust.pem; the container layer (upper) already holds a
// copied-up copied.json.
type containerLab struct {
	*lab
	base, lower, upper, work, merged string
}

const (
	ctrAgent   = "/usr/local/bin/serviceradar-agent"
	ctrUpdater = "/usr/local/bin/fortress-update"
	ctrConfig  = "/etc/serviceradar"
	ctrState   = "/var/lib/serviceradar"
)

func newContainerLab(t *testing.T) *containerLab {
	c := &containerLab{}
	c.lab = newLabWith(t, func(l *lab) {
		c.base = filepath.Join(l.dir, "ctr")
		c.lower, c.upper = filepath.Join(c.base, "image"), filepath.Join(c.base, "upper")
		c.work, c.merged = filepath.Join(c.base, "work"), filepath.Join(c.base, "merged")
		for _, d := range []string{"usr/local/bin", "etc/serviceradar", "var/lib/serviceradar", "proc", "dev", "sys", "tmp"} {
			must(t, os.MkdirAll(filepath.Join(c.lower, d), 0o755))
		}
		for _, d := range []string{filepath.Join(c.upper, "etc/serviceradar"), c.work, c.merged} {
			must(t, os.MkdirAll(d, 0o755))
		}
		must(t, copyFile(l.agentBin, filepath.Join(c.lower, ctrAgent)))
		must(t, copyFile(l.agentBin, filepath.Join(c.lower, ctrUpdater)))
		must(t, os.WriteFile(filepath.Join(c.lower, ctrConfig, "sweep.json"), []byte(`{"networks":["10.0.0.0/8"],"a":"a"}`), 0o644))
		must(t, os.WriteFile(filepath.Join(c.lower, ctrConfig, "trust.pem"), []byte("trust"), 0o644))
		must(t, os.WriteFile(filepath.Join(c.upper, ctrConfig, "copied.json"), []byte(`{"copied":true}`), 0o644))
		must(t, os.WriteFile(filepath.Join(c.lower, ctrState, "policy.version"), []byte("7"), 0o600))
		l.layers = []string{c.lower, c.upper}
		l.remove = func() error { return c.removeFromContainer() }
	})
	c.start(c.spec(c.lower, c.upper, c.work), false)
	return c
}

func (c *containerLab) spec(lower, upper, work string) containerSpec {
	cfg, _ := json.Marshal(helperConfig{
		Config: Config{
			PinRoot:       c.pinRoot,
			AgentBinary:   ctrAgent,
			UpdaterBinary: ctrUpdater,
			StagingDir:    "/usr/local/bin/.fortress-staging",
			ConfigDir:     ctrConfig,
			StateDirs:     []string{ctrState},
		},
		TrustKey: c.trustPub,
		Host:     "vmlab",
	})
	return containerSpec{
		Lowers: []string{lower}, Upper: upper, Work: work, Merged: c.merged,
		Binds: []string{filepath.Join(c.dir, "bpf"), c.base},
		Exec:  ctrAgent,
		Env:   []string{"PATH=/usr/local/bin:/usr/bin:/bin", helperEnv + "=agent", "SENTINEL_CONFIG=" + string(cfg)},
	}
}

// runtime returns the runtime command for spec: a copy of the test binary
// with no role, in a new mount namespace.
func (c *containerLab) runtime(spec containerSpec) *exec.Cmd {
	rt := filepath.Join(c.free, "runtime")
	if _, err := os.Stat(rt); err != nil {
		must(c.t, copyFile(c.updaterBin, rt))
	}
	b, _ := json.Marshal(spec)
	cmd := exec.Command(rt)
	cmd.Env = append(os.Environ(), helperEnv+"=container", "CONTAINER_SPEC="+string(b))
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	return cmd
}

// start runs a container of spec and waits for its agent.
func (c *containerLab) start(spec containerSpec, wantAdopted bool) Status {
	c.t.Helper()
	return c.ready(c.launch(c.runtime(spec)), wantAdopted)
}

// removeFromContainer starts the container again to remove Sentinel (the
// image's agent is the only role holder).
func (c *containerLab) removeFromContainer() error {
	cmd := c.runtime(c.spec(c.lower, c.upper, c.work))
	cmd.Stdin = strings.NewReader("remove\n")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "\nok") {
		return fmt.Errorf("remove from the container: %v: %s", err, out)
	}
	return nil
}

func (c *containerLab) stop() {
	c.t.Helper()
	c.kill9()
}

// TestLabContainer: the agent in a container protects its config and
// binary there against root on the host (through the container's view and
// through each layer), keeps its role across a restart of the container
// (a new mount of the same layers), and a root made by root from other
// layers gets nothing.
func TestLabContainer(t *testing.T) {
	c := newContainerLab(t)
	l := c.lab
	pid := l.agent.cmd.Process.Pid
	view := fmt.Sprintf("/proc/%d/root", pid)
	lowerCfg, upperCfg := filepath.Join(c.lower, ctrConfig), filepath.Join(c.upper, ctrConfig)
	// The agent writes its config inside the container (a copy-up).
	l.mustDo("write " + ctrConfig + `/sweep.json {"networks":["192.0.2.0/24"],"a":"a"}`)
	if b, err := os.ReadFile(filepath.Join(upperCfg, "sweep.json")); err != nil || !strings.Contains(string(b), "192.0.2.0") {
		t.Fatalf("the agent's write did not land in the container layer: %q %v", b, err)
	}
	l.refuse(attacksOn("image", lowerCfg, "trust.pem", l.free)...)
	l.refuse(attacksOn("container", upperCfg, "copied.json", l.free)...)
	l.refuse(
		// nsenter-style: root reaches the container's own view.
		attack{name: "view: echo x > sweep.json", run: func() error { return sh("echo x > " + view + ctrConfig + "/sweep.json") }},
		attack{name: "view: touch injected.json", run: func() error { return sh("touch " + view + ctrConfig + "/injected.json") }},
		attack{name: "view: rm the agent binary", run: func() error { return unix.Unlink(view + ctrAgent) }, errno: unix.EPERM},
		attack{name: "image: cp over the agent binary", run: func() error {
			return sh("cp /tmp/evil.json " + filepath.Join(c.lower, ctrAgent))
		}, kernelFirst: "text file busy"},
		attack{name: "image: mv over the agent binary", run: func() error {
			return sh("mv /tmp/evil.json " + filepath.Join(c.lower, ctrAgent))
		}},
		attack{name: "container layer: an agent binary in front", run: func() error {
			if err := os.MkdirAll(filepath.Join(c.upper, "usr/local/bin"), 0o755); err != nil {
				return err
			}
			return openWrite(filepath.Join(c.upper, ctrAgent), unix.O_CREAT|unix.O_WRONLY)
		}, errno: unix.EPERM},
	)
	// Its state, too.
	l.mustDo("write " + ctrState + "/policy.version 8")
	// 30: a process switching its exe_file to the container's agent
	// binary is refused.
	plain := filepath.Join(l.free, "plain")
	must(t, copyFile(l.updaterBin, plain))
	sx := exec.Command(plain)
	sx.Env = append(os.Environ(), helperEnv+"=setexe-self", "SETEXE_TO="+view+ctrAgent)
	if out, _ := sx.CombinedOutput(); !strings.Contains(string(out), "errno 1\n") {
		t.Errorf("30: prctl exe_file to the container's agent binary: %s", out)
	}
	// A traced exec of the agent binary inside the container: no role
	// (29); its writes are refused through the view and the layers.
	for _, target := range []string{filepath.Join(lowerCfg, "sweep.json"), filepath.Join(upperCfg, "copied.json")} {
		out, err := tracedHelper(view+ctrAgent, "write", target, "{}")
		if err == nil || !strings.Contains(out, "not permitted") {
			t.Errorf("29: traced agent binary wrote %s: %v %s", target, err, out)
		}
	}

	// Restart with the container storage seen from elsewhere: a copy of
	// the layers at the mounted paths. The kernel gives the agent its
	// role (its real root is the recorded stack), but the agent must not
	// rebuild the policy from files that are not the layers.
	c.stop()
	fake := filepath.Join(l.dir, "fake-storage")
	must(t, sh("mkdir -p "+fake+"/work && cp -a "+c.lower+" "+c.upper+" "+fake+"/"))
	seen := c.spec(c.lower, c.upper, c.work)
	seen.Binds = []string{filepath.Join(c.dir, "bpf")}
	seen.Views = map[string]string{c.base: fake}
	if first := c.launch(c.runtime(seen)); !strings.Contains(first, "not the ones recorded") {
		t.Errorf("agent seeing copies of its layers: %s", first)
	} else {
		t.Logf("agent seeing copies of its layers: %s", first)
	}
	l.agent.cmd.Process.Kill()
	l.agent.cmd.Wait()
	<-l.agent.done
	l.agent = nil

	// Restart: the container goes, a new one mounts the same layers.
	st := c.start(c.spec(c.lower, c.upper, c.work), true)
	t.Logf("restarted container: adopted=%v programs=%d", st.Adopted, len(st.Programs))
	l.mustDo("write " + ctrConfig + `/sweep.json {"networks":["198.51.100.0/24"],"a":"a"}`)
	c.stop()

	// Fake roots made by root: the image with another container layer
	// (a config of its own in front), and the real layers with an evil
	// image layer on top. The agent binary in them has no role: it
	// neither starts as the agent nor writes a protected file.
	evil := filepath.Join(c.base, "evil")
	must(t, os.MkdirAll(filepath.Join(evil, ctrConfig), 0o755))
	must(t, os.WriteFile(filepath.Join(evil, ctrConfig, "trust.pem"), []byte("evil"), 0o644))
	fakeUpper, fakeWork := filepath.Join(c.base, "fake-upper"), filepath.Join(c.base, "fake-work")
	must(t, os.MkdirAll(fakeUpper, 0o755))
	must(t, os.MkdirAll(fakeWork, 0o755))
	shadow := c.spec(c.lower, c.upper, c.work)
	shadow.Lowers = []string{evil, c.lower}
	for name, spec := range map[string]containerSpec{
		"another container layer": c.spec(c.lower, fakeUpper, fakeWork),
		"an evil image layer":     shadow,
	} {
		first := c.launch(c.runtime(spec))
		if strings.HasPrefix(first, "ready ") {
			t.Errorf("fake root (%s): the agent binary started as the agent: %s", name, first)
			l.mustDo("exit")
		} else if !strings.Contains(first, "role") && !strings.Contains(first, "not permitted") {
			t.Errorf("fake root (%s): the agent failed for another reason: %s", name, first)
		} else {
			t.Logf("fake root (%s): %s", name, first)
		}
		l.agent.cmd.Process.Kill()
		l.agent.cmd.Wait()
		<-l.agent.done
		l.agent = nil
		// The same root, the agent binary as a plain writer.
		spec.Env = append([]string{}, spec.Env...)
		for i, e := range spec.Env {
			if strings.HasPrefix(e, helperEnv+"=") {
				spec.Env[i] = helperEnv + "=write"
			}
		}
		spec.Args = []string{filepath.Join(lowerCfg, "sweep.json"), `{"networks":["0.0.0.0/0"]}`}
		w := c.runtime(spec)
		out, err := w.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "not permitted") {
			t.Errorf("fake root (%s): the agent binary wrote the image's sweep.json: %v %s", name, err, out)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(lowerCfg, "sweep.json")); !strings.Contains(string(b), "10.0.0.0/8") {
		t.Errorf("image sweep.json changed: %q", b)
	}
	// The real container still works after all that.
	c.start(c.spec(c.lower, c.upper, c.work), true)
	l.mustDo("write " + ctrConfig + `/sweep.json {"networks":["203.0.113.0/24"],"a":"a"}`)
}

// TestLabContainerImageUpdate: an image update is a new layer stack. The
// new image's agent gets no role while Sentinel enforces for the old one
// (fail closed); after the old container's agent removes Sentinel with a
// signed token, the new one loads it afresh and protects the new layers.
func TestLabContainerImageUpdate(t *testing.T) {
	c := newContainerLab(t)
	l := c.lab
	img2 := filepath.Join(c.base, "image2")
	up2, work2 := filepath.Join(c.base, "upper2"), filepath.Join(c.base, "work2")
	must(t, sh("cp -a "+c.lower+" "+img2))
	must(t, os.WriteFile(filepath.Join(img2, ctrConfig, "sweep.json"), []byte(`{"networks":["10.1.0.0/16"],"a":"a"}`), 0o644))
	must(t, os.MkdirAll(filepath.Join(up2, ctrConfig), 0o755))
	must(t, os.MkdirAll(work2, 0o755))
	c.stop()
	first := c.launch(c.runtime(c.spec(img2, up2, work2)))
	if strings.HasPrefix(first, "ready ") {
		t.Fatalf("the new image's agent took over an enforcing Sentinel: %s", first)
	}
	t.Logf("new image before the removal: %s", first)
	l.agent.cmd.Process.Kill()
	l.agent.cmd.Wait()
	<-l.agent.done
	l.agent = nil

	c.start(c.spec(c.lower, c.upper, c.work), true)
	now := time.Now()
	tok, err := SignToken(l.trustPriv, Token{Action: ActionRemove, Host: "vmlab", NotBefore: now.Add(-time.Minute), NotAfter: now.Add(10 * time.Minute), Nonce: "image-update"})
	must(t, err)
	l.mustDo("maint " + tok)
	l.mustDo("remove")
	l.agent.cmd.Wait()
	<-l.agent.done
	l.agent = nil

	c.lower, c.upper, c.work = img2, up2, work2 // teardown removes from the new container
	c.start(c.spec(img2, up2, work2), false)
	l.mustDo("write " + ctrConfig + `/sweep.json {"networks":["10.2.0.0/16"],"a":"a"}`)
	l.layers = []string{img2, up2}
	l.refuse(
		attack{name: "new image: echo x > sweep.json", run: func() error { return sh("echo x > " + filepath.Join(img2, ctrConfig, "sweep.json")) }},
		attack{name: "new container layer: rm the agent's copy-up", run: func() error { return unix.Unlink(filepath.Join(up2, ctrConfig, "sweep.json")) }, errno: unix.EPERM},
	)
	// The old image is an ordinary directory again (an image prune works).
	if err := os.RemoveAll(filepath.Join(c.base, "image")); err != nil {
		t.Errorf("remove the old image: %v", err)
	}
}
