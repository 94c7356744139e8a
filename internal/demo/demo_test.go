package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

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
			t.Log(d.withAgentLog(fmt.Errorf("test failed")))
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
	resp, err := http.Get(d.Dashboard + "api/counters?agent=" + AgentID)
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
	for _, r := range rows {
		if r.Rule == rule && !r.DryRun {
			return r.Packets
		}
	}
	return 0
}

// fleetPackets is the drop count the page shows for rule ("" if no row).
func fleetPackets(t *testing.T, ctx context.Context, rule string) (uint64, bool) {
	s := browser.Text(t, ctx, `(() => { const td = document.querySelector('#fleet tbody tr[data-rule="`+rule+`"] td.packets'); return td ? td.textContent : ""; })()`)
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
	total := browser.Text(t, ctx, `document.getElementById("total-packets").textContent`)
	t.Logf("header: %s dropped packets", total)

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
