package vm

import (
	"reflect"
	"strings"
	"testing"

	"github.com/carverauto/fortress/tools/vmlab/internal/arch"
)

// feed runs lines through a fresh Console and returns its output, events
// and outcome.
func feed(lines ...string) (out []string, events []Event, o Outcome) {
	c := &Console{Output: func(s string) { out = append(out, s) }}
	for _, l := range lines {
		if ev := c.Feed(l); ev != EventNone {
			events = append(events, ev)
		}
	}
	return out, events, c.Outcome()
}

func TestConsoleCleanRun(t *testing.T) {
	out, events, o := feed(
		"\x1bc\x1b[?7l\x1b[2JSeaBIOS (version 1.16.2)\r\n",
		"Booting from ROM...\r\n",
		"[    0.000000] Linux version 6.1.0 (quiet boot noise)\r\n",
		StartMarker+"\r\n",
		"=== RUN   TestThing\r\n",
		"--- PASS: TestThing (0.01s)\r\n",
		"\r\n",
		ExitMarker+"0\r\n",
		"[    4.1] reboot: Power down\r\n",
	)
	want := []string{"=== RUN   TestThing", "--- PASS: TestThing (0.01s)", ""}
	if !reflect.DeepEqual(out, want) {
		t.Errorf("output = %q, want %q", out, want)
	}
	if !reflect.DeepEqual(events, []Event{EventStarted, EventExited}) {
		t.Errorf("events = %v", events)
	}
	if !o.Started || !o.Exited || o.ExitCode != 0 || o.Crash != "" || o.Panicked {
		t.Errorf("outcome = %+v", o)
	}
}

func TestConsoleExitCodeAndUnterminatedOutput(t *testing.T) {
	out, _, o := feed(StartMarker, "partial line"+ExitMarker+"3")
	if !reflect.DeepEqual(out, []string{"partial line"}) {
		t.Errorf("output = %q", out)
	}
	if !o.Exited || o.ExitCode != 3 {
		t.Errorf("outcome = %+v, want exit 3", o)
	}
}

func TestConsoleMarkerBeforeStartIgnored(t *testing.T) {
	// A marker can only come from the guest's init, after it started.
	_, _, o := feed("kernel says "+ExitMarker+"0", StartMarker)
	if o.Exited {
		t.Errorf("exit marker before the start marker was taken: %+v", o)
	}
}

func TestConsolePanic(t *testing.T) {
	lines := []string{
		"[    1.177245] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI",
		"[    1.177245] RIP: 0010:enqueue_timer+0xa5/0x100",
		"[    1.177245] Kernel panic - not syncing: Fatal exception in interrupt",
		"[    1.177245] ---[ end Kernel panic - not syncing: Fatal exception in interrupt ]---",
	}
	out, events, o := feed(lines...)
	if !reflect.DeepEqual(events, []Event{EventOops, EventPanic}) {
		t.Errorf("events = %v, want oops then panic", events)
	}
	if !o.Panicked || o.Crash != lines[0] || o.Started {
		t.Errorf("outcome = %+v", o)
	}
	if len(out) != 0 {
		t.Errorf("boot crash printed as command output: %q", out)
	}
	if len(o.Tail) != len(lines) {
		t.Errorf("tail has %d lines, want %d", len(o.Tail), len(lines))
	}
}

func TestConsoleOopsDuringCommand(t *testing.T) {
	tests := []string{
		"[   12.5] BUG: kernel NULL pointer dereference, address: 0000000000000008",
		"BUG: unable to handle page fault for address: ffffffffc0000000",
		"[   12.5] general protection fault, probably for non-canonical address 0xdead000000000100: 0000 [#1] SMP NOPTI",
		"[   12.5] Oops: 0002 [#1] SMP PTI",
		"[   3.0] double fault: 0000 [#1] PREEMPT SMP NOPTI",
		// arm64's die(): the reason is followed by the 64-bit ESR.
		"[   7.1] Internal error: Oops: 0000000096000004 [#1] SMP",
		"Internal error: BRK handler: 00000000f2000800 [#1] SMP",
	}
	for _, crash := range tests {
		out, events, o := feed(StartMarker, "=== RUN TestLSM", crash, "more trace", ExitMarker+"1")
		if !reflect.DeepEqual(events, []Event{EventStarted, EventOops, EventExited}) {
			t.Errorf("%q: events = %v", crash, events)
		}
		if o.Crash != crash || o.Panicked {
			t.Errorf("%q: outcome = %+v", crash, o)
		}
		if !reflect.DeepEqual(out, []string{"=== RUN TestLSM", crash, "more trace"}) {
			t.Errorf("%q: output = %q", crash, out)
		}
	}
}

func TestConsoleNoFalseCrash(t *testing.T) {
	for _, line := range []string{
		"--- PASS: TestBUGFix (0.00s)",
		"    sentinel_test.go:42: denied rm with EPERM, as expected",
		"this line mentions BUG: in the middle",
		"[    0.1] WARNING: CPU: 0 PID: 1 at kernel/foo.c:1 bar+0x1/0x2",
	} {
		_, events, o := feed(StartMarker, line)
		if len(events) != 1 || o.Crash != "" {
			t.Errorf("%q taken as a crash: %+v", line, o)
		}
	}
}

func TestConsoleAfterExitIgnored(t *testing.T) {
	out, events, o := feed(StartMarker, ExitMarker+"0", "Kernel panic - not syncing: Attempted to kill init!", "more")
	if o.Panicked || o.Crash != "" || len(out) != 0 || len(events) != 2 {
		t.Errorf("lines after the exit marker were used: %+v, %q, %v", o, out, events)
	}
}

func TestConsoleTailBounded(t *testing.T) {
	c := &Console{}
	for i := 0; i < 3*tailLines; i++ {
		c.Feed("line")
	}
	if n := len(c.Outcome().Tail); n != tailLines {
		t.Errorf("tail has %d lines, want %d", n, tailLines)
	}
}

func TestQuote(t *testing.T) {
	got := Quote([]string{"sh", "-c", "echo 'hi' $HOME", ""})
	want := `'sh' '-c' 'echo '\''hi'\'' $HOME' ''`
	if got != want {
		t.Errorf("Quote = %s, want %s", got, want)
	}
}

func TestInitScript(t *testing.T) {
	s := InitScript()
	for _, want := range []string{
		"mount -t devtmpfs devtmpfs /dev",
		"mount -t proc proc /proc",
		"mount -t sysfs sysfs /sys",
		"mount -t bpf bpffs /sys/fs/bpf",
		"mount -t securityfs securityfs /sys/kernel/security",
		"mount -t tmpfs tmpfs /tmp",
		"export PATH=" + GuestPath,
		"FORTRESS_VMLAB=1",
		`insmod "$m"`,
		"ip link set lo up",
		"echo " + StartMarker,
		"sh " + CommandPath,
		`echo "` + ExitMarker + `$rc"`,
		"poweroff -f",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("init script lacks %q", want)
		}
	}
	if !strings.HasPrefix(s, "#!/bin/sh\n") {
		t.Error("init script has no #!/bin/sh line")
	}
	if strings.Index(s, StartMarker) > strings.Index(s, "mount -t proc") {
		t.Error("start marker printed after the mounts: their errors would be hidden")
	}
}

func TestConfigArgs(t *testing.T) {
	args := strings.Join(Config{Kernel: "K", Initrd: "I", Cmdline: "lsm=lockdown,yama,bpf"}.Args(), " ")
	for _, want := range []string{
		"-accel tcg", "-cpu max,-cx16", "-m 2048", "-smp 2", "-nographic", "-no-reboot",
		"-nic none", "-kernel K", "-initrd I",
		"-append console=ttyS0 quiet panic=-1 random.trust_cpu=on lsm=lockdown,yama,bpf",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("qemu args %q lack %q", args, want)
		}
	}
	if strings.Contains(args, "kvm") {
		t.Errorf("qemu args use KVM: %q", args)
	}
	if strings.Contains(args, "icount") {
		t.Errorf("icount without asking: %q", args)
	}
	if args := strings.Join(Config{Icount: true}.Args(), " "); !strings.HasSuffix(args, "-icount shift=0") {
		t.Errorf("icount asked for: %q", args)
	}
}

func TestConfigArgsARM64(t *testing.T) {
	args := strings.Join(Config{Arch: arch.ARM64, Kernel: "K", Initrd: "I"}.Args(), " ")
	for _, want := range []string{
		"-accel tcg -M virt -cpu max,pauth-impdef=on", "-m 2048", "-smp 2", "-nographic", "-no-reboot",
		"-nic none", "-kernel K", "-initrd I",
		"-append console=ttyAMA0 quiet panic=-1 random.trust_cpu=on",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("qemu args %q lack %q", args, want)
		}
	}
	for _, bad := range []string{"ttyS0", "cx16", "kvm"} {
		if strings.Contains(args, bad) {
			t.Errorf("arm64 qemu args %q contain %q", args, bad)
		}
	}
	// The x86 arguments are unchanged by an explicit amd64.
	a, b := Config{Arch: arch.AMD64, Kernel: "K"}.Args(), Config{Kernel: "K"}.Args()
	if strings.Join(a, " ") != strings.Join(b, " ") {
		t.Errorf("explicit amd64 %q differs from the default %q", a, b)
	}
}

// TestConsoleHang: a CPU the kernel keeps reporting stuck is a hang (the
// run is stopped and booted again); one report alone is not even a crash.
func TestConsoleHang(t *testing.T) {
	stall := "[  730.309807] rcu: INFO: rcu_sched self-detected stall on CPU"
	lockup := "[  756.911862] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [internal_shield:1024]"
	_, events, o := feed(StartMarker, "=== RUN TestSetManagementUnderTraffic", stall, "[  730.3] rcu: \t0-....: (1 GPs behind)", lockup, lockup, lockup)
	if !reflect.DeepEqual(events, []Event{EventStarted, EventHang}) {
		t.Errorf("events = %v, want started then hang", events)
	}
	if !o.Hung || o.Panicked || o.Crash != stall {
		t.Errorf("outcome = %+v", o)
	}
	if err := (Result{Outcome: o}).LabError(); err == nil || !strings.Contains(err.Error(), "kernel hung: "+strings.TrimSpace(stall)) {
		t.Errorf("lab error %v", err)
	}
	_, events, o = feed(StartMarker, "[  12.0] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:", "--- PASS: TestX (1.00s)", ExitMarker+"0")
	if !reflect.DeepEqual(events, []Event{EventStarted, EventExited}) || o.Hung || o.Crash != "" {
		t.Errorf("one stall report: events %v, outcome %+v", events, o)
	}
}
