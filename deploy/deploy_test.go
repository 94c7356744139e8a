package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/carverauto/fortress/internal/caps"
)

const (
	composeFile   = "compose/compose.yaml"
	daemonSetFile = "kubernetes/fortress-agent-daemonset.yaml"
	readmeFile    = "README.md"
	bpffs         = "/sys/fs/bpf"
)

// deployment is what the checks need from either file.
type deployment struct {
	capAdd, capDrop   []string
	privileged        bool
	seccompUnconfined bool
	hostNetwork       bool
	hostPID           bool
	mounts            []mount
}

// mount is one volume: host is the host path ("" for a ConfigMap, a
// Secret or a named volume), source names what else it is.
type mount struct {
	host, container string
	readOnly        bool
	source          string
}

// wantCaps is the set of internal/caps in the spelling of Compose and
// Kubernetes (no CAP_ prefix), sorted.
func wantCaps() []string {
	var out []string
	for _, c := range caps.Required(caps.Shield, caps.Sentinel) {
		out = append(out, strings.TrimPrefix(c.Name, "CAP_"))
	}
	slices.Sort(out)
	return out
}

func normCaps(in []string) []string {
	out := make([]string, len(in))
	for i, c := range in {
		out[i] = strings.TrimPrefix(strings.ToUpper(c), "CAP_")
	}
	slices.Sort(out)
	return out
}

// check lists what is wrong with d; storage is the host's container
// storage, which must be mounted read-only at the same path.
func check(d deployment, storage string) []string {
	var bad []string
	if got, want := normCaps(d.capAdd), wantCaps(); !slices.Equal(got, want) {
		bad = append(bad, fmt.Sprintf("adds capabilities %v; want exactly %v (internal/caps)", got, want))
	}
	if got := normCaps(d.capDrop); !slices.Equal(got, []string{"ALL"}) {
		bad = append(bad, fmt.Sprintf("drops %v; want [ALL]", got))
	}
	if d.privileged {
		bad = append(bad, "privileged")
	}
	if !d.seccompUnconfined {
		bad = append(bad, "seccomp not unconfined: Sentinel refuses the role to an agent with a filter at exec")
	}
	if !d.hostNetwork {
		bad = append(bad, "not in the host's network namespace: Shield attaches to the host's interfaces")
	}
	if !d.hostPID {
		bad = append(bad, "not in the host's PID namespace: Sentinel's role claim is refused")
	}
	if m, ok := mountAt(d, bpffs); !ok || m.host != bpffs || m.readOnly {
		bad = append(bad, fmt.Sprintf("the host's bpffs is not mounted read-write at %s (%+v)", bpffs, m))
	}
	if m, ok := mountAt(d, storage); !ok || m.host != storage || !m.readOnly {
		bad = append(bad, fmt.Sprintf("the container storage %s is not mounted read-only at the same path (%+v)", storage, m))
	}
	return bad
}

func mountAt(d deployment, container string) (mount, bool) {
	for _, m := range d.mounts {
		if path.Clean(m.container) == container {
			return m, true
		}
	}
	return mount{}, false
}

type composeFileT struct {
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Image       string         `yaml:"image"`
	Command     []string       `yaml:"command"`
	User        string         `yaml:"user"`
	Restart     string         `yaml:"restart"`
	NetworkMode string         `yaml:"network_mode"`
	PID         string         `yaml:"pid"`
	Privileged  bool           `yaml:"privileged"`
	CapAdd      []string       `yaml:"cap_add"`
	CapDrop     []string       `yaml:"cap_drop"`
	SecurityOpt []string       `yaml:"security_opt"`
	Ulimits     map[string]any `yaml:"ulimits"`
	Volumes     []any          `yaml:"volumes"`
}

func parseCompose(raw []byte) (composeService, deployment, error) {
	var f composeFileT
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return composeService{}, deployment{}, fmt.Errorf("parse %s: %w", composeFile, err)
	}
	s, ok := f.Services["fortress-agent"]
	if !ok {
		return s, deployment{}, fmt.Errorf("%s: no service fortress-agent", composeFile)
	}
	d := deployment{
		capAdd: s.CapAdd, capDrop: s.CapDrop, privileged: s.Privileged,
		hostNetwork: s.NetworkMode == "host", hostPID: s.PID == "host",
	}
	for _, o := range s.SecurityOpt {
		if o == "seccomp=unconfined" || o == "seccomp:unconfined" {
			d.seccompUnconfined = true
		}
	}
	for _, v := range s.Volumes {
		m, err := composeVolume(v)
		if err != nil {
			return s, d, err
		}
		d.mounts = append(d.mounts, m)
	}
	return s, d, nil
}

// composeVolume reads the short syntax (SRC:DST[:MODE]) and the long one.
func composeVolume(v any) (mount, error) {
	switch v := v.(type) {
	case string:
		parts := strings.Split(v, ":")
		if len(parts) < 2 || len(parts) > 3 {
			return mount{}, fmt.Errorf("volume %q: want SRC:DST[:MODE]", v)
		}
		m := mount{container: parts[1], source: "bind"}
		if strings.HasPrefix(parts[0], "/") {
			m.host = parts[0]
		} else {
			m.source = "volume " + parts[0]
		}
		if len(parts) == 3 {
			m.readOnly = slices.Contains(strings.Split(parts[2], ","), "ro")
		}
		return m, nil
	case map[string]any:
		src, _ := v["source"].(string)
		dst, _ := v["target"].(string)
		typ, _ := v["type"].(string)
		ro, _ := v["read_only"].(bool)
		m := mount{container: dst, readOnly: ro, source: typ}
		if typ == "bind" {
			m.host = src
		}
		return m, nil
	}
	return mount{}, fmt.Errorf("volume %v: neither short nor long syntax", v)
}

// The parts of a DaemonSet and a ConfigMap the checks read.
type k8sObject struct {
	Kind     string                `yaml:"kind"`
	Metadata struct{ Name string } `yaml:"metadata"`
	Data     map[string]string     `yaml:"data"`
	Spec     struct {
		Template struct {
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	HostNetwork bool   `yaml:"hostNetwork"`
	HostPID     bool   `yaml:"hostPID"`
	DNSPolicy   string `yaml:"dnsPolicy"`
	Tolerations []struct {
		Key      string `yaml:"key"`
		Operator string `yaml:"operator"`
		Effect   string `yaml:"effect"`
	} `yaml:"tolerations"`
	Containers []container `yaml:"containers"`
	Volumes    []struct {
		Name     string `yaml:"name"`
		HostPath *struct {
			Path string `yaml:"path"`
			Type string `yaml:"type"`
		} `yaml:"hostPath"`
		ConfigMap *struct{ Name string } `yaml:"configMap"`
		Projected *struct {
			Sources []struct {
				ConfigMap *struct{ Name string } `yaml:"configMap"`
				Secret    *struct{ Name string } `yaml:"secret"`
			} `yaml:"sources"`
		} `yaml:"projected"`
	} `yaml:"volumes"`
}

type container struct {
	Name            string `yaml:"name"`
	Image           string `yaml:"image"`
	SecurityContext struct {
		Privileged               *bool  `yaml:"privileged"`
		AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
		RunAsUser                *int64 `yaml:"runAsUser"`
		Capabilities             struct {
			Add  []string `yaml:"add"`
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
		SeccompProfile struct{ Type string } `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

// parseDaemonSet returns the DaemonSet's pod spec, the agent's container,
// the ConfigMap's data (if the file has one) and what the checks need.
func parseDaemonSet(raw []byte) (podSpec, container, map[string]string, deployment, error) {
	var (
		pod    *podSpec
		config map[string]string
	)
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var o k8sObject
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return podSpec{}, container{}, nil, deployment{}, fmt.Errorf("parse %s: %w", daemonSetFile, err)
		}
		switch o.Kind {
		case "DaemonSet":
			if pod != nil {
				return podSpec{}, container{}, nil, deployment{}, fmt.Errorf("%s: two DaemonSets", daemonSetFile)
			}
			pod = &o.Spec.Template.Spec
		case "ConfigMap":
			config = o.Data
		}
	}
	if pod == nil {
		return podSpec{}, container{}, nil, deployment{}, fmt.Errorf("%s: no DaemonSet", daemonSetFile)
	}
	i := slices.IndexFunc(pod.Containers, func(c container) bool { return c.Name == "fortress-agent" })
	if i < 0 {
		return *pod, container{}, config, deployment{}, fmt.Errorf("%s: no container fortress-agent", daemonSetFile)
	}
	c := pod.Containers[i]
	sc := c.SecurityContext
	d := deployment{
		capAdd: sc.Capabilities.Add, capDrop: sc.Capabilities.Drop,
		privileged:        sc.Privileged != nil && *sc.Privileged,
		seccompUnconfined: sc.SeccompProfile.Type == "Unconfined",
		hostNetwork:       pod.HostNetwork, hostPID: pod.HostPID,
	}
	for _, vm := range c.VolumeMounts {
		m := mount{container: vm.MountPath, readOnly: vm.ReadOnly}
		for _, v := range pod.Volumes {
			if v.Name != vm.Name {
				continue
			}
			switch {
			case v.HostPath != nil:
				m.host, m.source = v.HostPath.Path, "hostPath "+v.HostPath.Type
			case v.ConfigMap != nil:
				m.source = "configMap"
			case v.Projected != nil:
				for _, s := range v.Projected.Sources {
					if s.ConfigMap != nil {
						m.source = "configMap"
					}
				}
			}
		}
		if m.source == "" {
			return *pod, c, config, d, fmt.Errorf("%s: volume mount %s names no volume the checks know", daemonSetFile, vm.Name)
		}
		d.mounts = append(d.mounts, m)
	}
	return *pod, c, config, d, nil
}

func read(t *testing.T, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestCompose keeps the Compose service in step with internal/caps and
// with what the agent needs in a container.
func TestCompose(t *testing.T) {
	s, d, err := parseCompose(read(t, composeFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range check(d, "/var/lib/docker") {
		t.Error(p)
	}
	if s.User != "0:0" {
		t.Errorf("user %q; want 0:0, as ServiceRadar's compose runs its agent", s.User)
	}
	if s.Restart != "unless-stopped" {
		t.Errorf("restart %q; want unless-stopped", s.Restart)
	}
	if !strings.Contains(s.Image, "fortress-agent") {
		t.Errorf("image %q", s.Image)
	}
	if !memlockUnlimited(s.Ulimits["memlock"]) {
		t.Errorf("ulimits memlock %v; want -1: 5.10 charges BPF maps to RLIMIT_MEMLOCK and the set has no SYS_RESOURCE", s.Ulimits["memlock"])
	}
	for _, dir := range []string{"/etc/serviceradar", "/var/lib/serviceradar"} {
		if m, ok := mountAt(d, dir); !ok || m.readOnly && dir != "/etc/serviceradar" {
			t.Errorf("%s is not mounted (%+v)", dir, m)
		}
	}
}

func memlockUnlimited(v any) bool {
	switch v := v.(type) {
	case int:
		return v == -1
	case map[string]any:
		return v["soft"] == -1 && v["hard"] == -1
	}
	return false
}

// TestDaemonSet keeps the Kubernetes manifest in step with internal/caps
// and with what the agent needs in a pod.
func TestDaemonSet(t *testing.T) {
	pod, c, config, d, err := parseDaemonSet(read(t, daemonSetFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range check(d, "/var/lib/containerd") {
		t.Error(p)
	}
	sc := c.SecurityContext
	if sc.Privileged == nil || *sc.Privileged {
		t.Error("privileged must be set, and false")
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Error("runAsUser must be 0: the capabilities are those of root in the container")
	}
	// The API refuses allowPrivilegeEscalation: false with SYS_ADMIN added.
	if sc.AllowPrivilegeEscalation == nil || !*sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation must be true: the set holds SYS_ADMIN")
	}
	if pod.DNSPolicy != "ClusterFirstWithHostNet" {
		t.Errorf("dnsPolicy %q; want ClusterFirstWithHostNet with hostNetwork", pod.DNSPolicy)
	}
	if !slices.ContainsFunc(pod.Tolerations, func(tl struct {
		Key      string `yaml:"key"`
		Operator string `yaml:"operator"`
		Effect   string `yaml:"effect"`
	}) bool {
		return tl.Key == "" && tl.Operator == "Exists" && tl.Effect == ""
	}) {
		t.Error("no toleration of every taint: the agent belongs on every node")
	}
	if c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
		t.Error("no memory request and limit")
	}
	for _, v := range pod.Volumes {
		if v.HostPath != nil && v.HostPath.Path == bpffs && v.HostPath.Type != "Directory" {
			t.Errorf("bpffs hostPath type %q; want Directory (never create it: an empty directory is not bpffs)", v.HostPath.Type)
		}
	}
	if m, _ := mountAt(d, "/etc/serviceradar"); m.source != "configMap" {
		t.Errorf("/etc/serviceradar is not from a ConfigMap (%+v)", m)
	}
	if m, _ := mountAt(d, "/var/lib/serviceradar"); m.host != "/var/lib/serviceradar" || m.readOnly {
		t.Errorf("state is not the host's /var/lib/serviceradar, writable (%+v)", m)
	}

	// Every path the shipped configuration names lies on a volume.
	var cfg struct {
		PinRoot  string `json:"pin_root"`
		StateDir string `json:"state_dir"`
		AuditLog string `json:"audit_log"`
		TrustKey string `json:"trust_key"`
		Gateway  struct {
			CA, Cert, Key string
		} `json:"gateway"`
	}
	if err := json.Unmarshal([]byte(config["fortress-agent.json"]), &cfg); err != nil {
		t.Fatalf("the ConfigMap's fortress-agent.json: %v", err)
	}
	for _, p := range []string{cfg.PinRoot, cfg.StateDir, cfg.AuditLog, cfg.TrustKey, cfg.Gateway.CA, cfg.Gateway.Cert, cfg.Gateway.Key} {
		if !slices.ContainsFunc(d.mounts, func(m mount) bool { return strings.HasPrefix(p, m.container+"/") }) {
			t.Errorf("the configuration names %q, which is on no volume", p)
		}
	}
}

// TestREADME keeps deploy/README.md and the files from drifting apart: it
// names every capability and every volume (both sides) the files use.
func TestREADME(t *testing.T) {
	readme := string(read(t, readmeFile))
	for _, c := range caps.Required(caps.Shield, caps.Sentinel) {
		if !strings.Contains(readme, "`"+c.Name+"`") {
			t.Errorf("%s does not name `%s`", readmeFile, c.Name)
		}
	}
	_, dc, err := parseCompose(read(t, composeFile))
	if err != nil {
		t.Fatal(err)
	}
	_, _, _, dk, err := parseDaemonSet(read(t, daemonSetFile))
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, m := range append(dc.mounts, dk.mounts...) {
		paths = append(paths, m.host, m.container)
	}
	slices.Sort(paths)
	for _, p := range slices.Compact(paths) {
		if p != "" && !strings.Contains(readme, "`"+p+"`") {
			t.Errorf("%s does not name the volume path `%s`", readmeFile, p)
		}
	}
	for _, s := range []string{"seccomp=unconfined", "seccompProfile", "apparmor=unconfined", "appArmorProfile", "pid: host", "hostPID"} {
		if !strings.Contains(readme, s) {
			t.Errorf("%s does not mention %s", readmeFile, s)
		}
	}
}

// TestChecksFail shows that the checks fail: each edit of a shipped file
// that breaks the agent (or departs from internal/caps) must be caught.
func TestChecksFail(t *testing.T) {
	compose, ds := read(t, composeFile), read(t, daemonSetFile)
	for _, tc := range []struct {
		name, file, old, new string
	}{
		{"compose: a capability removed", composeFile, "      - PERFMON\n", ""},
		{"compose: a capability added", composeFile, "      - PERFMON\n", "      - PERFMON\n      - SYS_MODULE\n"},
		{"compose: drop ALL removed", composeFile, "    cap_drop: [ALL]\n", ""},
		{"compose: privileged", composeFile, "    user: \"0:0\"\n", "    user: \"0:0\"\n    privileged: true\n"},
		{"compose: seccomp default", composeFile, "      - seccomp=unconfined\n", ""},
		{"compose: private PID namespace", composeFile, "    pid: host\n", ""},
		{"compose: private network", composeFile, "    network_mode: host\n", ""},
		{"compose: storage writable", composeFile, "/var/lib/docker:/var/lib/docker:ro", "/var/lib/docker:/var/lib/docker"},
		{"compose: no bpffs", composeFile, "      - /sys/fs/bpf:/sys/fs/bpf\n", ""},
		{"daemonset: a capability removed", daemonSetFile, "                - SYS_ADMIN\n", ""},
		{"daemonset: privileged", daemonSetFile, "            privileged: false\n", "            privileged: true\n"},
		{"daemonset: drop nothing", daemonSetFile, "              drop: [ALL]\n", ""},
		{"daemonset: seccomp default", daemonSetFile, "              type: Unconfined\n            # containerd", "              type: RuntimeDefault\n            # containerd"},
		{"daemonset: private PID namespace", daemonSetFile, "      hostPID: true\n", ""},
		{"daemonset: private network", daemonSetFile, "      hostNetwork: true\n", ""},
		{"daemonset: storage writable", daemonSetFile, "              mountPath: /var/lib/containerd\n              readOnly: true\n", "              mountPath: /var/lib/containerd\n"},
	} {
		raw := compose
		if tc.file == daemonSetFile {
			raw = ds
		}
		if !bytes.Contains(raw, []byte(tc.old)) {
			t.Errorf("%s: %q is not in %s any more; update the case", tc.name, tc.old, tc.file)
			continue
		}
		broken := bytes.Replace(raw, []byte(tc.old), []byte(tc.new), 1)
		var (
			d       deployment
			err     error
			storage string
		)
		if tc.file == composeFile {
			_, d, err = parseCompose(broken)
			storage = "/var/lib/docker"
		} else {
			_, _, _, d, err = parseDaemonSet(broken)
			storage = "/var/lib/containerd"
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if len(check(d, storage)) == 0 {
			t.Errorf("%s: the checks pass", tc.name)
		}
	}
}
