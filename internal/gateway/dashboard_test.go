package gateway

import (
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	pb "github.com/carverauto/fortress/api/controlpb"
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
	a.SetStatus(&pb.Status{Shield: &pb.Layer{State: pb.LayerState_LAYER_STATE_ENFORCING, Mode: "enforce"},
		Sentinel: &pb.Layer{State: pb.LayerState_LAYER_STATE_ENFORCING, Mode: "enforce"}, PolicyVersion: 12})
	b := tg.agentWith(t, "edge-2", func(c *controlstream.ClientConfig) { c.FlushInterval = 0 })
	b.SetStatus(&pb.Status{Shield: &pb.Layer{State: pb.LayerState_LAYER_STATE_DEGRADED, Reason: "xdp attach failed"},
		Sentinel: &pb.Layer{State: pb.LayerState_LAYER_STATE_UNAVAILABLE, Reason: "no bpf lsm"}})
	a.AddCounters(&pb.CounterDelta{Rule: "203.0.113.0/24", Packets: 1000, Bytes: 64000},
		&pb.CounterDelta{Rule: "198.51.100.0/24", DryRun: true, Packets: 77, Bytes: 7700},
		// An allow exception, and a drop rule for the same CIDR in another
		// slot (the policy changed): counted apart.
		&pb.CounterDelta{Rule: "10.77.99.0/24", Action: pb.RuleAction_RULE_ACTION_ALLOW, Slot: 7, Kind: pb.CounterKind_COUNTER_KIND_ALLOW, Packets: 300, Bytes: 30000},
		&pb.CounterDelta{Rule: "10.77.99.0/24", Action: pb.RuleAction_RULE_ACTION_DROP, Slot: 3, Kind: pb.CounterKind_COUNTER_KIND_DROP, Packets: 4, Bytes: 400})
	b.AddCounters(&pb.CounterDelta{Rule: "203.0.113.0/24", Packets: 500, Bytes: 32000})

	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+tg.httpAddr+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#fleet tbody tr[data-rule="203.0.113.0/24"]`))); err != nil {
		t.Fatalf("load dashboard: %v", err)
	}
	waitFor(t, 5*time.Second, "first counts", func() bool { return num(browser.Text(t, ctx, cellJS("fleet", "203.0.113.0/24"))) == 1500 })
	// Allow hits are shown as allow hits, never as drops.
	waitFor(t, 3*time.Second, "allow hits", func() bool { return num(browser.Text(t, ctx, cellJS("fleet-allow", "10.77.99.0/24"))) == 300 })
	if got := num(browser.Text(t, ctx, cellJS("fleet", "10.77.99.0/24"))); got != 4 {
		t.Fatalf("drops of 10.77.99.0/24 shown as %d, want 4 (the drop rule's own; the 300 allow hits belong elsewhere)", got)
	}
	if got := num(browser.Text(t, ctx, `document.getElementById("total-allow").textContent`)); got != 300 {
		t.Fatalf("header allow hits %d, want 300", got)
	}
	if got := num(browser.Text(t, ctx, cellJS("fleet-dry", "198.51.100.0/24"))); got != 77 {
		t.Fatalf("dry-run table shows %d, want 77", got)
	}
	if got := browser.Text(t, ctx, cellJS("fleet", "198.51.100.0/24")); got != "" {
		t.Fatalf("dry-run rule appears among real drops: %q", got)
	}

	// Live: counts rise within 2 s of being sent, several times over.
	want := uint64(1504) // header: every drop, 1500 + 4
	rowWant := uint64(1500)
	for i := range 3 {
		a.AddCounters(&pb.CounterDelta{Rule: "203.0.113.0/24", Packets: uint64(100 * (i + 1)), Bytes: 6400})
		want += uint64(100 * (i + 1))
		rowWant += uint64(100 * (i + 1))
		sent := time.Now()
		waitFor(t, 2*time.Second, "live rise", func() bool { return num(browser.Text(t, ctx, cellJS("fleet", "203.0.113.0/24"))) == rowWant })
		t.Logf("rise %d visible after %v", i+1, time.Since(sent).Round(time.Millisecond))
	}
	if got := num(browser.Text(t, ctx, `document.getElementById("total-packets").textContent`)); got != want {
		t.Fatalf("header total %d, want %d", got, want)
	}

	// Charts: the timeline's drops and the rule's sparkline hold what was
	// sent in the last seconds, and move when more arrives.
	timelineDrops := func() uint64 {
		return num(browser.Text(t, ctx, `String(fortressCharts.timeline.data[1].reduce((a, b) => a + (b || 0), 0))`))
	}
	timelineAllow := func() uint64 {
		return num(browser.Text(t, ctx, `String(fortressCharts.timeline.data[3].reduce((a, b) => a + (b || 0), 0))`))
	}
	sparkSum := func(table, rule string) uint64 {
		return num(browser.Text(t, ctx, `(() => { const d = document.querySelector('#`+table+` tbody tr[data-rule="`+rule+`"] td.spark div'); return d ? d.dataset.sum : ""; })()`))
	}
	waitFor(t, 3*time.Second, "timeline shows the drops", func() bool { return timelineDrops() == want })
	if got := timelineAllow(); got != 300 {
		t.Fatalf("timeline allow hits %d, want 300", got)
	}
	waitFor(t, 3*time.Second, "sparkline shows the rule's drops", func() bool { return sparkSum("fleet", "203.0.113.0/24") == rowWant })
	if got := sparkSum("fleet-allow", "10.77.99.0/24"); got != 300 {
		t.Fatalf("allow sparkline %d, want 300", got)
	}
	a.AddCounters(&pb.CounterDelta{Rule: "203.0.113.0/24", Packets: 2000, Bytes: 1})
	waitFor(t, 3*time.Second, "charts move", func() bool {
		return timelineDrops() == want+2000 && sparkSum("fleet", "203.0.113.0/24") == rowWant+2000
	})
	want += 2000
	if n := num(browser.Text(t, ctx, `String(document.querySelectorAll("#timeline canvas").length)`)); n == 0 {
		t.Fatal("timeline chart not drawn")
	}

	// Events arrive as a live feed.
	a.AddEvent(&pb.Event{Kind: pb.EventKind_EVENT_KIND_VIOLATION, Path: "/etc/serviceradar/agent.json", Op: "unlink", Process: "rm", Pid: 4242, Denied: true})
	// Sentinel unavailable is information, not a violation.
	b.AddEvent(&pb.Event{Kind: pb.EventKind_EVENT_KIND_STATUS, Severity: "info", Detail: "BPF LSM unusable, nothing is protected: no bpf lsm"})
	waitFor(t, 3*time.Second, "event count", func() bool {
		return num(browser.Text(t, ctx, `document.getElementById("event-count").textContent`)) == 2
	})
	waitFor(t, 3*time.Second, "status event in feed", func() bool {
		return browser.Text(t, ctx, `(() => { const li = document.querySelector('#events li.k-status'); return li ? li.textContent : ""; })()`) != ""
	})
	if txt := browser.Text(t, ctx, `document.querySelector('#events li.k-status').textContent`); strings.Contains(txt, "VIOLATION") || !strings.Contains(txt, "edge-2  info  ") {
		t.Fatalf("sentinel-unavailable event shown as %q", txt)
	}
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

// TestVendoredUPlot: the charting library is served from the binary, with
// its licence, and the page loads nothing from elsewhere.
func TestVendoredUPlot(t *testing.T) {
	tg := newTestGW(t, nil)
	get := func(path string) string {
		resp, err := http.Get("http://" + tg.httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
		return string(b)
	}
	if js := get("/vendor/uplot/uPlot.iife.min.js"); !strings.HasPrefix(js, "/*! https://github.com/leeoniya/uPlot (v1.6.32) */") {
		t.Fatalf("uPlot not served: %.80q", js)
	}
	if lic := get("/vendor/uplot/LICENSE"); !strings.Contains(lic, "MIT License") {
		t.Fatal("uPlot licence not shipped")
	}
	get("/vendor/uplot/uPlot.min.css")
	page := get("/")
	for _, bad := range []string{`src="http`, `href="http`, `src="//`, `href="//`} {
		if strings.Contains(page, bad) {
			t.Fatalf("page loads from outside: %q", bad)
		}
	}
}
