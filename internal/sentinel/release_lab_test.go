package sentinel

// ServiceRadar's release layout under Sentinel: the agent runs as
// /var/lib/serviceradar/agent/current/serviceradar-agent, the updater
// /usr/local/bin/serviceradar-agent-updater installs a version (a signed
// manifest verified, the version directory written, the current symlink
// swapped) and the agent restarts from it; a rollback swaps the symlink
// back. Root can do neither by hand.

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

const (
	srRoot    = "/var/lib/serviceradar/agent"
	srUpdater = "/usr/local/bin/serviceradar-agent-updater"
	srBinary  = "serviceradar-agent"
	// srScratch is on the release tree's filesystem, outside the tree.
	srScratch = "/var/lib/serviceradar/scratch"
)

// srManifest is the updater's release manifest: what it verifies before
// it installs anything.
type srManifest struct {
	Version string `json:"version"`
	SHA256  string `json:"sha256"`
}

// releaseHelper runs the updater's modes (SR_RELEASE_KEY: the release
// public key built into the updater, hex).
func releaseHelper(mode string, args []string) (code int, ok bool) {
	var err error
	switch mode {
	case "sr-install":
		// sr-install SRC MANIFEST SIGNATURE
		err = srInstall(args[0], args[1], args[2])
	case "sr-switch":
		// sr-switch VERSION: point current at an installed version.
		err = srSwitch(args[0])
	case "sr-prune":
		// sr-prune VERSION
		err = os.RemoveAll(filepath.Join(srRoot, ReleaseVersions, args[0]))
	case "sr-move-in":
		// sr-move-in SRC VERSION: a version made elsewhere, moved in.
		dir := filepath.Join(srRoot, ReleaseVersions, args[1])
		if err = os.Mkdir(dir, 0o755); err == nil {
			err = os.Rename(args[0], filepath.Join(dir, srBinary))
		}
	default:
		return 0, false
	}
	if err != nil {
		fmt.Println("err", err)
		return 1, true
	}
	fmt.Println("ok")
	return 0, true
}

func srInstall(src, manifestPath, sigPath string) error {
	key, err := hex.DecodeString(os.Getenv("SR_RELEASE_KEY"))
	if err != nil || len(key) != ed25519.PublicKeySize {
		return errors.New("no release key")
	}
	raw, err := os.ReadFile(manifestPath)
	if err != nil {
		return err
	}
	sig, err := os.ReadFile(sigPath)
	if err != nil {
		return err
	}
	if !ed25519.Verify(key, raw, sig) {
		return errors.New("manifest signature invalid")
	}
	var m srManifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return err
	}
	if !isVersion(m.Version) {
		return fmt.Errorf("bad version %q", m.Version)
	}
	bin, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	// Verified in memory; written only inside the tree from here on.
	if sum := sha256.Sum256(bin); hex.EncodeToString(sum[:]) != m.SHA256 {
		return errors.New("binary does not match the manifest")
	}
	versions := filepath.Join(srRoot, ReleaseVersions)
	stage := filepath.Join(versions, ".staging-"+m.Version)
	os.RemoveAll(stage)
	if err := os.Mkdir(stage, 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(stage, srBinary), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := f.Write(bin); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(stage, "manifest.json"), raw, 0o644); err != nil {
		return err
	}
	if err := os.Rename(stage, filepath.Join(versions, m.Version)); err != nil {
		return err
	}
	return srSwitch(m.Version)
}

func isVersion(v string) bool {
	for _, part := range strings.Split(v, ".") {
		if _, err := strconv.Atoi(part); err != nil {
			return false
		}
	}
	return true
}

// srSwitch swaps current atomically: a new symlink renamed over it.
func srSwitch(version string) error {
	if _, err := os.Stat(filepath.Join(srRoot, ReleaseVersions, version, srBinary)); err != nil {
		return err
	}
	tmp := filepath.Join(srRoot, ReleaseCurrent+".new")
	os.Remove(tmp)
	if err := os.Symlink(filepath.Join(ReleaseVersions, version), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(srRoot, ReleaseCurrent)); err != nil {
		return err
	}
	d, err := os.Open(srRoot)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

type srLab struct {
	*lab
	pub  ed25519.PublicKey
	priv ed25519.PrivateKey
}

// newSRLab lays out ServiceRadar's release tree with version 1.0.0
// current, and starts the agent through the current symlink.
func newSRLab(t *testing.T) *srLab {
	t.Helper()
	// Leftovers of an earlier test in this VM (Sentinel is gone by now).
	os.RemoveAll(srRoot)
	os.RemoveAll(srScratch)
	os.Remove(srUpdater)
	s := &srLab{}
	s.pub, s.priv, _ = ed25519.GenerateKey(nil)
	s.lab = newLabWith(t, func(l *lab) {
		self, err := os.Executable()
		must(t, err)
		v1 := filepath.Join(srRoot, ReleaseVersions, "1.0.0")
		must(t, os.MkdirAll(v1, 0o755))
		must(t, copyFile(self, filepath.Join(v1, srBinary)))
		must(t, os.Symlink(filepath.Join(ReleaseVersions, "1.0.0"), filepath.Join(srRoot, ReleaseCurrent)))
		must(t, os.MkdirAll(filepath.Dir(srUpdater), 0o755))
		must(t, copyFile(self, srUpdater))
		must(t, os.MkdirAll(srScratch, 0o755))
		l.agentBin = filepath.Join(srRoot, ReleaseCurrent, srBinary)
		l.updaterBin = srUpdater
		l.staging = ""
		l.releases = Releases{Dir: srRoot, Binary: srBinary}
		l.layers = append(l.layers, srRoot)
		// Fortress's own state next to the release tree, as
		// ServiceRadar lays it out.
		l.stateDir = "/var/lib/serviceradar/fortress"
		must(t, os.MkdirAll(l.stateDir, 0o700))
		must(t, os.WriteFile(filepath.Join(l.stateDir, "trust.pub"), []byte("trust-key"), 0o600))
	})
	return s
}

// updater runs the updater binary in mode; it returns its output.
func (s *srLab) updater(mode string, args ...string) (string, error) {
	cmd := exec.Command(srUpdater, args...)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "SR_RELEASE_KEY="+hex.EncodeToString(s.pub))
	out, err := cmd.CombinedOutput()
	if err == nil && !strings.HasPrefix(string(out), "ok") {
		err = errors.New("no ok")
	}
	return strings.TrimSpace(string(out)), err
}

// release signs a manifest for the test binary's content as version v and
// returns the paths of binary, manifest and signature (outside the tree).
func (s *srLab) release(v string, priv ed25519.PrivateKey) (bin, manifest, sig string) {
	t := s.t
	self, err := os.Executable()
	must(t, err)
	b, err := os.ReadFile(self)
	must(t, err)
	sum := sha256.Sum256(b)
	raw, _ := json.Marshal(srManifest{Version: v, SHA256: hex.EncodeToString(sum[:])})
	dir := filepath.Join(s.free, "release-"+v)
	must(t, os.MkdirAll(dir, 0o755))
	bin, manifest, sig = filepath.Join(dir, srBinary), filepath.Join(dir, "manifest.json"), filepath.Join(dir, "manifest.sig")
	must(t, os.WriteFile(bin, b, 0o755))
	must(t, os.WriteFile(manifest, raw, 0o644))
	must(t, os.WriteFile(sig, ed25519.Sign(priv, raw), 0o644))
	return bin, manifest, sig
}

// restart stops the agent and starts it again through current; it checks
// that the kernel let it adopt Sentinel and that it runs version.
func (s *srLab) restart(version string) {
	t := s.t
	t.Helper()
	s.mustDo("exit")
	s.agent.stdin.Close()
	s.agent.cmd.Wait()
	<-s.agent.done
	s.agent = nil
	s.startAgent(s.agentBin, true)
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", s.agent.cmd.Process.Pid))
	must(t, err)
	if want := filepath.Join(srRoot, ReleaseVersions, version, srBinary); exe != want {
		t.Fatalf("agent runs %s, want %s", exe, want)
	}
}

// layoutAttacks are root's ways to change the release tree by hand:
// switch current, add, change or remove a version.
func layoutAttacks(vdir string) []attack {
	bin := filepath.Join(vdir, srBinary)
	cur := filepath.Join(srRoot, ReleaseCurrent)
	evil := filepath.Join(srScratch, "evil")
	return []attack{
		{name: "ln -s beside current, mv over it", run: func() error {
			return sh("ln -s versions/6.6.6 " + cur + ".new && mv -f " + cur + ".new " + cur)
		}},
		{name: "rename a root symlink over current", run: func() error {
			link := filepath.Join(srScratch, "current")
			os.Remove(link)
			if err := os.Symlink("/tmp", link); err != nil {
				return err
			}
			return unix.Rename(link, cur)
		}, errno: unix.EPERM},
		{name: "rm current", run: func() error { return unix.Unlink(cur) }, errno: unix.EPERM},
		{name: "symlink beside current", run: func() error { return unix.Symlink("/tmp", cur+".new") }, errno: unix.EPERM},
		{name: "mkdir a version", run: func() error { return unix.Mkdir(filepath.Join(srRoot, ReleaseVersions, "6.6.6"), 0o755) }, errno: unix.EPERM},
		{name: "cp evil over the version's agent", run: func() error { return sh("cp /tmp/evil.json " + bin) }, kernelFirst: "text file busy"},
		{name: "rename evil over the version's agent", run: func() error {
			if err := os.WriteFile(evil, []byte("#!/bin/sh\n"), 0o755); err != nil {
				return err
			}
			return unix.Rename(evil, bin)
		}, errno: unix.EPERM},
		{name: "rm the version's agent", run: func() error { return unix.Unlink(bin) }, errno: unix.EPERM},
		{name: "chmod the version's agent", run: func() error { return unix.Chmod(bin, 0o777) }, errno: unix.EPERM},
		{name: "hard link the version's agent out", run: func() error { return unix.Link(bin, filepath.Join(srScratch, "h")) }, errno: unix.EPERM},
		{name: "create a file in the version", run: func() error { return openWrite(filepath.Join(vdir, "evil"), unix.O_CREAT|unix.O_WRONLY) }, errno: unix.EPERM},
		{name: "rename the version", run: func() error { return unix.Rename(vdir, vdir+"-old") }, errno: unix.EPERM},
		{name: "rm -rf versions", run: func() error { return sh("rm -rf " + filepath.Join(srRoot, ReleaseVersions)) }},
		{name: "mount over versions", run: func() error {
			return unix.Mount("tmpfs", filepath.Join(srRoot, ReleaseVersions), "tmpfs", 0, "")
		}, errno: unix.EPERM},
		{name: "mv the release root", run: func() error { return unix.Rename(srRoot, srRoot+"-old") }, errno: unix.EPERM},
		{name: "overwrite the updater", run: func() error { return openWrite(srUpdater, unix.O_WRONLY) }, errno: unix.EPERM},
	}
}

func TestLabReleaseLayout(t *testing.T) {
	s := newSRLab(t)
	l := s.lab
	sweep := filepath.Join(l.configDir, "sweep.json")
	versions := filepath.Join(srRoot, ReleaseVersions)
	v1, v2 := filepath.Join(versions, "1.0.0"), filepath.Join(versions, "2.0.0")
	l.refuse(layoutAttacks(v1)...)

	// A manifest signed by another key: the updater itself refuses it.
	bin, manifest, _ := s.release("2.0.0", s.priv)
	_, other, _ := ed25519.GenerateKey(nil)
	_, _, badSig := s.release("2.0.0-forged", other)
	if out, err := s.updater("sr-install", bin, manifest, badSig); err == nil || !strings.Contains(out, "signature") {
		t.Errorf("updater installed a release with a forged signature: %v %s", err, out)
	}

	// The upgrade: new version, manifest verified, current swapped.
	mark := l.eventCount()
	bin, manifest, sig := s.release("2.0.0", s.priv)
	if out, err := s.updater("sr-install", bin, manifest, sig); err != nil {
		t.Fatalf("upgrade under enforcement: %v %s", err, out)
	}
	if got, _ := os.Readlink(filepath.Join(srRoot, ReleaseCurrent)); got != "versions/2.0.0" {
		t.Fatalf("current -> %q after the upgrade", got)
	}
	// What the updater wrote is protected at once: no agent restart, no
	// policy rebuild in between.
	l.refuse(
		attack{name: "write the new version's agent before it runs", run: func() error { return openWrite(filepath.Join(v2, srBinary), unix.O_WRONLY) }, errno: unix.EPERM},
		attack{name: "write the new version's manifest", run: func() error { return openWrite(filepath.Join(v2, "manifest.json"), unix.O_WRONLY|unix.O_TRUNC) }, errno: unix.EPERM},
		attack{name: "create a file in the new version", run: func() error { return openWrite(filepath.Join(v2, "evil"), unix.O_CREAT|unix.O_WRONLY) }, errno: unix.EPERM},
		attack{name: "rename the new version", run: func() error { return unix.Rename(v2, v2+"-old") }, errno: unix.EPERM},
		attack{name: "swap current back by hand", run: func() error {
			return sh("cd " + srRoot + " && ln -s versions/1.0.0 c && mv -f c " + ReleaseCurrent)
		}},
	)
	// The running agent keeps its role until it restarts.
	l.mustDo("write " + sweep + ` {"v":2}`)
	s.restart("2.0.0")
	if _, ok := l.waitEvent(mark, func(e Event) bool {
		return e.Op == "identity_learned" && strings.HasSuffix(e.Path, srBinary)
	}); !ok {
		t.Errorf("no identity_learned event for version 2.0.0's agent")
	}
	l.mustDo("write " + sweep + ` {"v":3}`)
	l.refuse(layoutAttacks(v2)...)
	// ATTACKS.md rows 1-12 on the configuration, with the agent running
	// the upgraded version.
	l.refuse(attacksOn("upgraded", l.configDir, "sweep.json", srScratch)...)

	// Rollback: the updater points current at 1.0.0 again.
	if out, err := s.updater("sr-switch", "1.0.0"); err != nil {
		t.Fatalf("rollback under enforcement: %v %s", err, out)
	}
	s.restart("1.0.0")
	l.mustDo("write " + sweep + ` {"v":4}`)

	// The tree takes nothing made elsewhere, even from the updater: a file
	// root wrote (and might still hold open) is no version.
	foreign := filepath.Join(srScratch, srBinary)
	self, _ := os.Executable()
	must(t, copyFile(self, foreign))
	if out, err := s.updater("sr-move-in", foreign, "3.0.0"); err == nil || !strings.Contains(out, "not permitted") {
		t.Errorf("updater moved a file from outside into the tree: %v %s", err, out)
	}
	// Neither the foreign copy nor a copy of a version's binary outside
	// the tree is the agent.
	w := exec.Command(foreign, sweep, "{}")
	w.Env = append(os.Environ(), helperEnv+"=write")
	if out, err := w.CombinedOutput(); err == nil || !strings.Contains(string(out), "not permitted") {
		t.Errorf("a copy of the agent outside the tree got agent authority: %v %s", err, out)
	}
	// An installed version runs with the role from its own path too.
	w = exec.Command(filepath.Join(v2, srBinary), sweep, `{"v":5}`)
	w.Env = append(os.Environ(), helperEnv+"=write")
	if out, err := w.CombinedOutput(); err != nil {
		t.Errorf("version 2.0.0's agent has no role: %v %s", err, out)
	}

	// The updater prunes a version that is not current.
	if out, err := s.updater("sr-prune", "2.0.0"); err != nil {
		t.Errorf("prune: %v %s", err, out)
	}
	if _, err := os.Stat(v2); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("version 2.0.0 still there after the prune: %v", err)
	}
	// A restart rebuilds the policy from what is installed.
	s.restart("1.0.0")
	l.refuse(layoutAttacks(v1)...)
}
