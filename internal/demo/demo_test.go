package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/carverauto/fortress/internal/netlab"
	"github.com/carverauto/fortress/internal/testutil"
	"github.com/carverauto/fortress/internal/testutil/browser"
	"github.com/carverauto/fortress/pkg/fortress"
)

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// startDemo runs the demo machinery for a test: the agent is built once
// per test into the demo's work directory.
func startDemo(t *testing.T, rate int) *Demo {
	t.Helper()
	testutil.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d, err := Start(ctx, Config{Listen: "127.0.0.1:0", Rate: rate, Name: fmt.Sprintf("d%d", time.Now().UnixNano()%100000),
		Out: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(withAgentLog(d.agentLog, fmt.Errorf("test failed")))
		}
		if err := d.Close(); err != nil {
			t.Errorf("close demo: %v", err)
		}
	})
	return d
}

func src(s string) netip.Addr { return netip.MustParseAddr(s) }

// Sources of the sample policy the tests rely on.
var (
	blockedV4 = src("10.77.66.6") // 10.77.66.0/24 drop, sends continuously
	blockedV6 = src("fd77::66:6") // fd77::66:0/112 drop, sends continuously
	quiet     = src("10.77.88.8") // 10.77.64.0/18 drop, sends only when a test says so
	allowedV4 = src("10.77.0.1")  // no rule
	excepted  = src("10.77.99.9") // 10.77.99.0/24 allow inside the /18
	logOnlyV6 = src("fd77::55:5") // fd77::55:0/112 drop log-only
	quietRule = "10.77.64.0/18"
)

func waitFor(t *testing.T, timeout time.Duration, what string, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// assertNoBlockedArrivals fails if any datagram from a blocked source
// reached namespace B.
func assertNoBlockedArrivals(t *testing.T, d *Demo, when string) {
	t.Helper()
	for _, s := range Sources {
		if s.Expect == Blocked {
			if n := d.Received(s.Addr); n != 0 {
				t.Fatalf("%s: %d datagrams from blocked source %s arrived", when, n, s.Addr)
			}
		}
	}
}

// gatewayCount is the gateway's stored drop total for rule.
func gatewayCount(t *testing.T, d *Demo, rule string) uint64 {
	t.Helper()
	resp, err := http.Get(d.Dashboard + "api/counters?kind=drop&agent=" + AgentID)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rows []struct {
		Rule    string `json:"rule"`
		DryRun  bool   `json:"dry_run"`
		Packets uint64 `json:"packets"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&rows); err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, r := range rows {
		if r.Rule == rule && !r.DryRun {
			n += r.Packets // every slot the rule had
		}
	}
	return n
}

// fleetPackets is the drop count the page shows for rule (false if no row).
func fleetPackets(t *testing.T, ctx context.Context, rule string) (uint64, bool) {
	return tablePackets(t, ctx, "fleet", rule)
}

func num(t *testing.T, s string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(strings.ReplaceAll(s, ",", ""), 10, 64)
	if err != nil {
		t.Fatalf("not a number: %q", s)
	}
	return n
}

// tablePackets is the packet count a table of the page shows for rule.
func tablePackets(t *testing.T, ctx context.Context, table, rule string) (uint64, bool) {
	s := browser.Text(t, ctx, `(() => { const td = document.querySelector('#`+table+` tbody tr[data-rule="`+rule+`"] td.packets'); return td ? td.textContent : ""; })()`)
	if s == "" {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.ReplaceAll(s, ",", ""), 10, 64)
	if err != nil {
		t.Fatalf("rule %s: page shows %q", rule, s)
	}
	return n, true
}

// TestDashboardShowsRealDrops runs the demo, opens its dashboard in
// headless chromium, and checks that real packets dropped by Shield make
// the page's numbers rise within 2 s, and that the page says why Sentinel
// is unavailable on this host.
func TestDashboardShowsRealDrops(t *testing.T) {
	testutil.RequireRoot(t)
	ctx := browser.New(t, 2*time.Minute)
	d := startDemo(t, 20)
	if err := chromedp.Do(ctx, chromedp.Navigate(d.Dashboard),
		chromedp.WaitVisible(chromedp.CSS(`#fleet tbody tr[data-rule="10.77.66.0/24"]`))); err != nil {
		t.Fatalf("dashboard: %v", err)
	}

	// A quiet blocked source: the page must rise by exactly what was sent.
	const n = 25
	for i := range 3 {
		before, _ := fleetPackets(t, ctx, quietRule)
		if err := d.Send(quiet, n); err != nil {
			t.Fatal(err)
		}
		took := waitFor(t, 2*time.Second, fmt.Sprintf("round %d: page shows %s at %d", i, quietRule, before+n), func() bool {
			got, _ := fleetPackets(t, ctx, quietRule)
			if got > before+n {
				t.Fatalf("page shows %d for %s, more than the %d sent", got, quietRule, before+n)
			}
			return got == before+n
		})
		t.Logf("round %d: %d packets dropped by Shield visible on the page after %v", i, n, took.Round(time.Millisecond))
	}

	// The continuous blocked sources keep rising.
	for _, rule := range []string{"10.77.66.0/24", "fd77::66:0/112"} {
		before, _ := fleetPackets(t, ctx, rule)
		took := waitFor(t, 2*time.Second, rule+" rises", func() bool { got, _ := fleetPackets(t, ctx, rule); return got > before })
		t.Logf("%s rose from %d after %v", rule, before, took.Round(time.Millisecond))
	}
	// Allow hits (the 10.77.99.0/24 exception inside the dropped /18) are
	// shown as allow hits and never as drops.
	allowRule := "10.77.99.0/24"
	before, _ := tablePackets(t, ctx, "fleet-allow", allowRule)
	waitFor(t, 3*time.Second, "allow hits rise", func() bool { got, _ := tablePackets(t, ctx, "fleet-allow", allowRule); return got > before })
	if n, ok := tablePackets(t, ctx, "fleet", allowRule); ok {
		t.Fatalf("allow exception %s shown among drops with %d packets", allowRule, n)
	}
	if _, ok := tablePackets(t, ctx, "fleet-dry", "fd77::55:0/112"); !ok {
		t.Fatal("log-only rule fd77::55:0/112 not among would-drops")
	}

	// Charts move with the real traffic: the timeline's drops, and the
	// quiet rule's sparkline by exactly a burst sent now.
	timelineDrops := func() uint64 {
		return num(t, browser.Text(t, ctx, `String(fortressCharts.timeline.data[1].reduce((a, b) => a + (b || 0), 0))`))
	}
	sparkSum := func(table, rule string) uint64 {
		return num(t, browser.Text(t, ctx, `(() => { const d = document.querySelector('#`+table+` tbody tr[data-rule="`+rule+`"] td.spark div'); return d ? d.dataset.sum : "0"; })()`))
	}
	tl := timelineDrops()
	waitFor(t, 4*time.Second, "timeline moves", func() bool { return timelineDrops() != tl && timelineDrops() > 0 })
	if sparkSum("fleet", "10.77.66.0/24") == 0 || sparkSum("fleet-allow", allowRule) == 0 {
		t.Fatalf("sparklines flat: drops %d, allow hits %d", sparkSum("fleet", "10.77.66.0/24"), sparkSum("fleet-allow", allowRule))
	}
	quietSpark := sparkSum("fleet", quietRule)
	if err := d.Send(quiet, 40); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "quiet rule's sparkline rises by the burst", func() bool { return sparkSum("fleet", quietRule) == quietSpark+40 })

	// Totals: with the traffic stopped, the page's drops, would-drops and
	// allow hits equal the agent's own counters.
	d.StopTraffic()
	var st0 AgentStatus
	waitFor(t, 10*time.Second, "page totals equal the agent's counters", func() bool {
		st, err := d.AgentStatus(ctx)
		if err != nil {
			return false
		}
		st0 = st
		tot := st.Shield.Totals
		return tot.Drop > 0 && tot.AllowHit > 0 && tot.WouldDrop > 0 &&
			num(t, browser.Text(t, ctx, `document.getElementById("total-packets").textContent`)) == tot.Drop &&
			num(t, browser.Text(t, ctx, `document.getElementById("total-dry").textContent`)) == tot.WouldDrop &&
			num(t, browser.Text(t, ctx, `document.getElementById("total-allow").textContent`)) == tot.AllowHit
	})
	t.Logf("page and agent agree: %d dropped, %d would-drop, %d allow hits", st0.Shield.Totals.Drop, st0.Shield.Totals.WouldDrop, st0.Shield.Totals.AllowHit)

	// Sentinel: unavailable, with the reason.
	var sentinel string
	waitFor(t, 5*time.Second, "sentinel cell", func() bool {
		sentinel = browser.Text(t, ctx, `(() => { const tr = document.querySelector('#agents tr[data-agent="`+AgentID+`"]'); return tr ? tr.cells[3].textContent : ""; })()`)
		return sentinel != ""
	})
	st, err := d.AgentStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Sentinel.State == fortress.SentinelUnavailable {
		if !strings.HasPrefix(sentinel, "unavailable (") || len(sentinel) < len("unavailable ()")+10 ||
			!strings.Contains(sentinel, st.Sentinel.Reason) {
			t.Fatalf("page shows sentinel %q; the agent says unavailable: %s", sentinel, st.Sentinel.Reason)
		}
	} else if !testutil.InLab() {
		t.Fatalf("sentinel is %s on a host that refuses BPF LSM", st.Sentinel.State)
	}
	t.Logf("page: sentinel %s", sentinel)
	// "BPF LSM unusable" is information, never a violation.
	events := browser.Text(t, ctx, `document.getElementById("events").textContent`)
	if strings.Contains(events, "VIOLATION") {
		t.Fatalf("events feed shows a violation: %q", events)
	}
	if st.Sentinel.State == fortress.SentinelUnavailable {
		waitFor(t, 3*time.Second, "sentinel unavailable as information", func() bool {
			return strings.Contains(browser.Text(t, ctx, `(() => { const li = document.querySelector('#events li.k-status'); return li ? li.textContent : ""; })()`), "BPF LSM unusable")
		})
	}
	assertNoBlockedArrivals(t, d, "end")
	if d.Received(allowedV4) == 0 || d.Received(excepted) == 0 || d.Received(logOnlyV6) == 0 {
		t.Fatalf("passing sources: allowed %d, exception %d, log-only %d arrived", d.Received(allowedV4), d.Received(excepted), d.Received(logOnlyV6))
	}
}

// TestAgentRestartUnderTraffic kills (kill -9) and stops (SIGTERM) the
// agent process while blocked and allowed sources send, and restarts it:
// no blocked datagram may pass at any point, the pinned counters survive,
// and the new agent adopts the pinned Shield instead of loading afresh.
func TestAgentRestartUnderTraffic(t *testing.T) {
	d := startDemo(t, 200)
	ctx := context.Background()
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			// The agent reads its counters once a second after it starts.
			waitFor(t, 10*time.Second, "drops counted", func() bool {
				c, err := d.RuleCounter(ctx, "10.77.66.0/24")
				return err == nil && c.Packets > 0
			})
			before := map[string]uint64{}
			for _, r := range []string{"10.77.66.0/24", "fd77::66:0/112", quietRule} {
				c, err := d.RuleCounter(ctx, r)
				if err != nil {
					t.Fatal(err)
				}
				before[r] = c.Packets
			}
			stBefore, err := d.AgentStatus(ctx)
			if err != nil {
				t.Fatal(err)
			}
			pid := d.AgentPID()
			allowedBefore := d.Received(allowedV4)
			sentBefore := d.Sent(blockedV4)

			stopped := time.Now()
			if err := d.StopAgent(sig); err != nil {
				t.Fatalf("stop agent %d with %v: %v", pid, sig, err)
			}
			if err := syscall.Kill(pid, 0); err == nil {
				t.Fatalf("agent %d still exists", pid)
			}
			// While no agent runs: traffic keeps flowing, blocked sources
			// stay blocked, and a burst from the quiet source is dropped.
			const burst = 50
			if err := d.Send(quiet, burst); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
			assertNoBlockedArrivals(t, d, "agent down")
			if d.Received(allowedV4) <= allowedBefore {
				t.Fatalf("allowed traffic stopped while the agent was down")
			}

			st, err := d.StartAgent(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%v: agent %d down for %v, blocked source sent %d meanwhile; new agent %d", sig, pid,
				time.Since(stopped).Round(time.Millisecond), d.Sent(blockedV4)-sentBefore, d.AgentPID())
			if !st.Shield.Adopted {
				t.Fatalf("restarted agent did not adopt the pinned shield: %+v", st.Shield)
			}
			if st.Shield.State != fortress.ShieldEnforcing || st.Policy.Version != 1 || !st.Policy.InForce || st.Shield.Rules != stBefore.Shield.Rules {
				t.Fatalf("after restart: shield %s (%s), %d rules, policy %d in force %v", st.Shield.State, st.Shield.Reason,
					st.Shield.Rules, st.Policy.Version, st.Policy.InForce)
			}
			// Counters are read once a second: wait for the first read.
			waitFor(t, 5*time.Second, "counters after restart", func() bool {
				c, err := d.RuleCounter(ctx, quietRule)
				return err == nil && c.Packets >= before[quietRule]+burst
			})
			if st, err = d.AgentStatus(ctx); err != nil {
				t.Fatal(err)
			}
			if st.Shield.Totals.Drop < stBefore.Shield.Totals.Drop+burst {
				t.Fatalf("shield drop total went from %d to %d (%d dropped while down)", stBefore.Shield.Totals.Drop, st.Shield.Totals.Drop, burst)
			}
			t.Logf("shield drop total: %d before, %d after", stBefore.Shield.Totals.Drop, st.Shield.Totals.Drop)
			for r, b := range before {
				c, err := d.RuleCounter(ctx, r)
				if err != nil {
					t.Fatal(err)
				}
				if c.Packets < b {
					t.Fatalf("rule %s: counter %d after restart, %d before", r, c.Packets, b)
				}
				t.Logf("rule %s: %d before, %d after", r, b, c.Packets)
			}
			if c, _ := d.RuleCounter(ctx, quietRule); c.Packets != before[quietRule]+burst {
				t.Fatalf("quiet rule: %d, want %d (%d before + %d sent while the agent was down)", c.Packets, before[quietRule]+burst, before[quietRule], burst)
			}
			waitFor(t, 10*time.Second, "agent reconnects to the gateway", func() bool {
				s, err := d.AgentStatus(ctx)
				return err == nil && s.ControlStream != nil && s.ControlStream.Connected
			})
			time.Sleep(2500 * time.Millisecond)
			assertNoBlockedArrivals(t, d, "after restart")
			// The gateway's total for the quiet rule equals the agent's own
			// counter: what was reported before the restart is not reported
			// again, and what was counted while the agent was down arrives.
			c, _ := d.RuleCounter(ctx, quietRule)
			waitFor(t, 5*time.Second, "gateway total equals the agent's counter", func() bool {
				return gatewayCount(t, d, quietRule) == c.Packets
			})
		})
	}
}

// TestTwoDemosAndLeftovers: a second demo under a name in use is refused
// at once, saying why and what to do; a demo under another name runs beside
// the first; and a run removes what an earlier run under its name left
// behind (its namespaces, and its work directory with the bpffs mounted).
func TestTwoDemosAndLeftovers(t *testing.T) {
	d := startDemo(t, 50)
	ctx := context.Background()

	// The run's end coming with a tick prints no stray error.
	ended, cancelEnded := context.WithTimeout(ctx, time.Millisecond)
	time.Sleep(5 * time.Millisecond)
	if line, ok := d.tick(ended); ok || strings.Contains(line, "deadline exceeded") {
		t.Fatalf("tick after the end printed %q", line)
	}
	cancelEnded()
	live, cancelLive := context.WithCancel(ctx)
	if line, ok := d.tick(live); !ok || !strings.HasPrefix(line, "shield enforcing") {
		t.Fatalf("tick: %q", line)
	}
	cancelLive()

	start := time.Now()
	_, err := Start(ctx, Config{Listen: "127.0.0.1:0", Name: d.cfg.Name, Out: testWriter{t}})
	if err == nil || !strings.Contains(err.Error(), "--name") || !strings.Contains(err.Error(), "another fortress-demo runs") {
		t.Fatalf("second demo under the same name: %v", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("refusal took %v", time.Since(start))
	}
	t.Logf("same name refused: %v", err)

	// Leftovers of a run under another name that was killed: a namespace
	// still bound, a work directory with its bpffs mounted, and the lock
	// record naming it.
	name := fmt.Sprintf("l%d", time.Now().UnixNano()%100000)
	work, err := os.MkdirTemp("", "fortress-demo-")
	if err != nil {
		t.Fatal(err)
	}
	if err := mountBPFFS(filepath.Join(work, "bpf")); err != nil {
		t.Fatal(err)
	}
	leftNS := filepath.Join(netlab.NetnsDir, "fortress-"+name+"-a")
	if err := os.WriteFile(leftNS, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("/proc/self/ns/net", leftNS, "", syscall.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(LockDir, "fortress-demo-"+name+".lock"), []byte("999999 "+work+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx2, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	d2, err := Start(ctx2, Config{Listen: "127.0.0.1:0", Rate: 50, Name: name, Out: testWriter{t}})
	if err != nil {
		t.Fatalf("demo beside the first, over leftovers: %v", err)
	}
	closed := false
	defer func() {
		if !closed {
			d2.Close()
		}
	}()
	if _, err := os.Stat(work); !os.IsNotExist(err) {
		t.Fatalf("leftover work directory %s still there: %v", work, err)
	}
	// Both run at once: each Shield drops its own traffic.
	for _, x := range []*Demo{d, d2} {
		waitFor(t, 15*time.Second, x.cfg.Name+" drops", func() bool {
			c, err := x.RuleCounter(ctx, "10.77.66.0/24")
			return err == nil && c.Packets > 0
		})
		assertNoBlockedArrivals(t, x, x.cfg.Name)
	}
	closed = true
	if err := d2.Close(); err != nil {
		t.Fatalf("close second demo: %v", err)
	}
	for _, side := range []string{"a", "b"} {
		if netlab.NamedExists("fortress-" + name + "-" + side) {
			t.Fatalf("namespace fortress-%s-%s left after close", name, side)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(LockDir, "fortress-demo-"+name+".lock")); len(b) != 0 {
		t.Fatalf("lock record %q left after a clean close", b)
	}
	os.Remove(filepath.Join(LockDir, "fortress-demo-"+name+".lock"))
}
