package gateway

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/carverauto/fortress/internal/controlstream"
	"github.com/carverauto/fortress/internal/testutil/browser"
)

func cellJS(table, rule string) string {
	return `(() => { const td = document.querySelector('#` + table + ` tbody tr[data-rule="` + rule + `"] td.packets'); return td ? td.textContent : ""; })()`
}

func num(s string) uint64 {
	n, _ := strconv.ParseUint(strings.ReplaceAll(s, ",", ""), 10, 64)
	return n
}

// TestDashboardLive drives the dashboard in headless chromium: counts sent
// through the real ControlStream appear, rise within 2 s of being sent, stay
// apart from dry-run would-drops, and events and agent health show up.
func TestDashboardLive(t *testing.T) {
	ctx := browser.New(t, 60*time.Second)
	tg := newTestGW(t, nil)
	tg.restart(t, func(c *Config) { c.SnapshotInterval = 0; c.CommitInterval = 0 }) // production defaults
	a := tg.agentWith(t, "edge-1", func(c *controlstream.ClientConfig) { c.FlushInterval = 0 })
	a.SetStatus(controlstream.Status{Shield: controlstream.Layer{State: controlstream.StateEnforcing, Mode: "enforce"},
		Sentinel: controlstream.Layer{State: controlstream.StateEnforcing, Mode: "enforce"}, PolicyVersion: 12})
	b := tg.agentWith(t, "edge-2", func(c *controlstream.ClientConfig) { c.FlushInterval = 0 })
	b.SetStatus(controlstream.Status{Shield: controlstream.Layer{State: controlstream.StateDegraded, Reason: "xdp attach failed"},
		Sentinel: controlstream.Layer{State: controlstream.StateUnavailable, Reason: "no bpf lsm"}})
	a.AddCounters(controlstream.CounterDelta{Rule: "203.0.113.0/24", Packets: 1000, Bytes: 64000},
		controlstream.CounterDelta{Rule: "198.51.100.0/24", DryRun: true, Packets: 77, Bytes: 7700})
	b.AddCounters(controlstream.CounterDelta{Rule: "203.0.113.0/24", Packets: 500, Bytes: 32000})

	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+tg.httpAddr+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#fleet tbody tr[data-rule="203.0.113.0/24"]`))); err != nil {
		t.Fatalf("load dashboard: %v", err)
	}
	waitFor(t, 5*time.Second, "first counts", func() bool { return num(browser.Text(t, ctx, cellJS("fleet", "203.0.113.0/24"))) == 1500 })
	if got := num(browser.Text(t, ctx, cellJS("fleet-dry", "198.51.100.0/24"))); got != 77 {
		t.Fatalf("dry-run table shows %d, want 77", got)
	}
	if got := browser.Text(t, ctx, cellJS("fleet", "198.51.100.0/24")); got != "" {
		t.Fatalf("dry-run rule appears among real drops: %q", got)
	}

	// Live: counts rise within 2 s of being sent, several times over.
	want := uint64(1500)
	for i := range 3 {
		a.AddCounters(controlstream.CounterDelta{Rule: "203.0.113.0/24", Packets: uint64(100 * (i + 1)), Bytes: 6400})
		want += uint64(100 * (i + 1))
		sent := time.Now()
		waitFor(t, 2*time.Second, "live rise", func() bool { return num(browser.Text(t, ctx, cellJS("fleet", "203.0.113.0/24"))) == want })
		t.Logf("rise %d visible after %v", i+1, time.Since(sent).Round(time.Millisecond))
	}
	if got := num(browser.Text(t, ctx, `document.getElementById("total-packets").textContent`)); got != want {
		t.Fatalf("header total %d, want %d", got, want)
	}

	// Events arrive as a live feed.
	a.AddEvent(controlstream.Event{Kind: controlstream.KindViolation, Path: "/etc/serviceradar/agent.json", Op: "unlink", Process: "rm", PID: 4242, Denied: true})
	waitFor(t, 2*time.Second, "event in feed", func() bool {
		return strings.Contains(browser.Text(t, ctx, `document.getElementById("events").textContent`), "VIOLATION DENIED  unlink /etc/serviceradar/agent.json  by rm[4242]")
	})

	// Agent health.
	health := func(id string) string {
		return browser.Text(t, ctx, `(() => { const td = document.querySelector('#agents tr[data-agent="`+id+`"] td.health'); return td ? td.textContent : ""; })()`)
	}
	waitFor(t, 3*time.Second, "health", func() bool { return health("edge-1") == "enforcing" && health("edge-2") == "degraded" })
	if p := browser.Text(t, ctx, `document.querySelector('#agents tr[data-agent="edge-1"] td.policy').textContent`); p != "12" {
		t.Fatalf("policy version shown %q", p)
	}

	// Filtering by CIDR narrows the tables.
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#filter"), "198.51")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "filter", func() bool {
		return browser.Text(t, ctx, cellJS("fleet", "203.0.113.0/24")) == "" && num(browser.Text(t, ctx, cellJS("fleet-dry", "198.51.100.0/24"))) == 77
	})

	if out := os.Getenv("FORTRESS_SCREENSHOT"); out != "" {
		browser.Text(t, ctx, `document.getElementById("filter").value=""; document.getElementById("filter").dispatchEvent(new Event("input")); ""`)
		time.Sleep(time.Second)
		if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
			os.WriteFile(out, png, 0o644)
		}
	}
}
