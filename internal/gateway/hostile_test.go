package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	pb "github.com/carverauto/fortress/api/controlpb"
	"github.com/carverauto/fortress/internal/controlstream"
	"github.com/carverauto/fortress/internal/pki"
	"github.com/carverauto/fortress/internal/store"
	"github.com/carverauto/fortress/internal/testutil/browser"
)

// hostile is a client with a valid agent certificate that speaks the
// ControlStream protocol directly, without the agent's client limits.
type hostile struct {
	t      *testing.T
	stream pb.Control_StreamClient
	conn   *grpc.ClientConn
	acked  chan uint64
	ended  chan error
}

func dialHostile(t *testing.T, tg *testGW, id string, hello *pb.Hello) *hostile {
	t.Helper()
	cert, err := tg.ca.Client(id, pki.RoleAgent)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(tg.grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(cert, tg.ca.Pool(), "127.0.0.1"))),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(controlstream.MaxMessage), grpc.MaxCallRecvMsgSize(controlstream.MaxMessage)))
	if err != nil {
		t.Fatal(err)
	}
	stream, err := pb.NewControlClient(conn).Stream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	h := &hostile{t: t, stream: stream, conn: conn, acked: make(chan uint64, 1024), ended: make(chan error, 1)}
	t.Cleanup(func() { conn.Close() })
	if err := stream.Send(&pb.AgentMessage{Msg: &pb.AgentMessage_Hello{Hello: hello}}); err != nil {
		t.Fatal(err)
	}
	m, err := stream.Recv()
	if err != nil || m.GetWelcome() == nil {
		t.Fatalf("welcome: %v %v", m, err)
	}
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				h.ended <- err
				return
			}
			if a := m.GetSeqAck(); a != nil {
				h.acked <- a.Seq
			}
		}
	}()
	return h
}

func (h *hostile) send(m *pb.AgentMessage) error { return h.stream.Send(m) }

// waitAck waits until seq is acknowledged.
func (h *hostile) waitAck(seq uint64, timeout time.Duration) {
	h.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case a := <-h.acked:
			if a >= seq {
				return
			}
		case err := <-h.ended:
			h.t.Fatalf("stream ended before ack %d: %v", seq, err)
		case <-deadline:
			h.t.Fatalf("no ack for %d within %v", seq, timeout)
		}
	}
}

func dbBytes(t *testing.T, path string) int64 {
	var n int64
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if fi, err := os.Stat(p); err == nil {
			n += fi.Size()
		}
	}
	return n
}

func heapInuse() uint64 {
	// Twice: pooled buffers survive one collection in sync.Pool's victim
	// cache.
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// The bounds TestHostileAgent holds the gateway to (see the README,
// "Gateway limits"): one agent certificate, sending as much as it can,
// grows the database by at most hostileDBBound and leaves at most
// hostileHeapBound more live heap once the attack is over.
const (
	hostileDBBound   = 16 << 20
	hostileHeapBound = 24 << 20
)

// TestHostileAgent: a client with a valid agent certificate, over real
// gRPC and mutual TLS, sends a message just under the transport cap, then
// counter batches full of junk rule names and more distinct valid rules
// than its quota, and event batches full of maximal events, and a hello
// with a 3 MiB hostname. The gateway refuses the big message, stores none
// of the junk, at most its quota of rules and its rate of events; the
// database and heap stay within the stated bounds; another agent's totals
// stay exact and the dashboard's snapshot stays small and fast.
func TestHostileAgent(t *testing.T) {
	tg := newTestGW(t, nil)
	tg.restart(t, func(c *Config) { c.PruneInterval = 200 * time.Millisecond })
	good := tg.agent(t, "edge-good", nil)
	var goodSent uint64
	for i := range 50 {
		good.AddCounters(&pb.CounterDelta{Rule: "203.0.113.0/24", Action: pb.RuleAction_RULE_ACTION_DROP, Slot: 1, Kind: pb.CounterKind_COUNTER_KIND_DROP, Packets: uint64(i + 1), Bytes: 100})
		goodSent += uint64(i + 1)
	}
	good.AddCounters(&pb.CounterDelta{Rule: "10.77.99.0/24", Action: pb.RuleAction_RULE_ACTION_ALLOW, Slot: 2, Kind: pb.CounterKind_COUNTER_KIND_ALLOW, Packets: 5, Bytes: 500})
	waitFor(t, 5*time.Second, "good agent drained", good.Drained)
	dbBefore, heapBefore := dbBytes(t, tg.dbPath), heapInuse()
	start := time.Now()

	// 1. One message just under the transport cap: refused, stream closed.
	big := dialHostile(t, tg, "edge-evil", &pb.Hello{AgentId: "edge-evil", Epoch: 1})
	huge := &pb.AgentMessage{Msg: &pb.AgentMessage_Counters{Counters: &pb.CounterBatch{Seq: 1,
		Deltas: []*pb.CounterDelta{{Rule: strings.Repeat("A", controlstream.MaxMessage-4096), Packets: 1}}}}}
	if err := big.send(huge); err != nil && err != io.EOF {
		t.Fatalf("send big message: %v", err)
	}
	select {
	case err := <-big.ended:
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("big message: stream ended with %v, want ResourceExhausted", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("big message: stream still open")
	}
	big.conn.Close()
	big = nil
	runtime.GC()

	// 2. Junk and beyond-quota rules, maximal events, a huge hello.
	h := dialHostile(t, tg, "edge-evil", &pb.Hello{AgentId: "edge-evil", Epoch: 2, Hostname: strings.Repeat("h", 3<<20),
		Capabilities: make([]string, 10000)})
	junk := []string{"", "not a cidr", "10.1.2.3/24", "::ffff:10.1.2.3/128x", strings.Repeat("\u00ff\x01\u202e", 100), "<script>alert(1)</script>", "10.0.0.0/33"}
	const batches = 6 // 24,576 distinct valid rules: well past the quota
	seq := uint64(0)
	valid := 0
	junkSent := 0
	for b := range batches {
		var ds []*pb.CounterDelta
		for i := range controlstream.MaxDeltasPerBatch {
			if i%2 == 0 {
				ds = append(ds, &pb.CounterDelta{Rule: junk[i%len(junk)] + strings.Repeat("x", 300), Packets: 1 << 40, Bytes: 1 << 50})
				junkSent++
				continue
			}
			valid++
			ds = append(ds, &pb.CounterDelta{Rule: fmt.Sprintf("10.%d.%d.%d/32", b, i>>8, i&0xff), Action: pb.RuleAction_RULE_ACTION_DROP,
				Kind: pb.CounterKind_COUNTER_KIND_DROP, Slot: uint32(i), Packets: 1 << 40, Bytes: 1 << 50})
		}
		seq++
		if err := h.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Counters{Counters: &pb.CounterBatch{Seq: seq, Deltas: ds}}}); err != nil {
			t.Fatal(err)
		}
		var evs []*pb.Event
		for range 1000 {
			evs = append(evs, &pb.Event{TimeUnixNano: time.Now().UnixNano(), Kind: pb.EventKind_EVENT_KIND_VIOLATION, Path: strings.Repeat("/p", 1500), Detail: strings.Repeat("d", 300),
				Process: strings.Repeat("p", 200), Op: strings.Repeat("o", 100), Severity: strings.Repeat("s", 100)})
		}
		seq++
		if err := h.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Events{Events: &pb.EventBatch{Seq: seq, Events: evs}}}); err != nil {
			t.Fatal(err)
		}
	}
	h.waitAck(seq, 60*time.Second)
	took := time.Since(start)
	time.Sleep(500 * time.Millisecond) // a prune or two
	// Measured before the test itself holds query results.
	dbAfter, heapAfter := dbBytes(t, tg.dbPath), heapInuse()

	// Connections: at most maxConnsPerAgent per agent certificate.
	var extra []*grpc.ClientConn
	for i := range maxConnsPerAgent {
		cert, _ := tg.ca.Client("edge-evil", pki.RoleAgent)
		conn, err := grpc.NewClient(tg.grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(cert, tg.ca.Pool(), "127.0.0.1"))))
		if err != nil {
			t.Fatal(err)
		}
		extra = append(extra, conn)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = pb.NewControlClient(conn).Stream(ctx)
		if err == nil {
			// The stream is only opened once the connection is up: wait for
			// the server to take it (or drop it).
			for conn.GetState().String() != "READY" && conn.GetState().String() != "TRANSIENT_FAILURE" && ctx.Err() == nil {
				conn.WaitForStateChange(ctx, conn.GetState())
			}
		}
		state := conn.GetState().String()
		cancel()
		// h holds one connection, so the first maxConnsPerAgent-1 get in.
		if want := i < maxConnsPerAgent-1; (state == "READY") != want {
			t.Fatalf("extra connection %d: state %s, want ready %v", i+1, state, want)
		}
	}
	for _, c := range extra {
		c.Close()
	}

	// The hostile agent's share.
	evilRows, err := tg.st.Counters(context.Background(), store.CounterQuery{AgentID: "edge-evil"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evilRows) != store.DefaultMaxRules {
		t.Fatalf("hostile agent stored %d rule rows, want its quota %d", len(evilRows), store.DefaultMaxRules)
	}
	for _, r := range evilRows {
		if !validRule(r.Rule) {
			t.Fatalf("junk rule stored: %q", r.Rule)
		}
	}
	if got, want := tg.g.Refused("edge-evil"), uint64(junkSent+valid-store.DefaultMaxRules); got != want {
		t.Fatalf("refused %d deltas, want %d (%d junk + %d beyond the quota)", got, want, junkSent, valid-store.DefaultMaxRules)
	}
	evs, _ := tg.st.Events(context.Background(), store.EventQuery{AgentID: "edge-evil", Limit: store.MaxPage})
	if maxEv := eventBurst + int(took.Seconds()+2)*eventRate; len(evs) > maxEv || len(evs) == 0 {
		t.Fatalf("hostile agent has %d events stored, want 1..%d", len(evs), maxEv)
	}
	if len(evs[0].Path) > maxPathLen || len(evs[0].Detail) > maxDetailLen || len(evs[0].Process) > maxShortLen {
		t.Fatalf("event fields not cut: path %d, detail %d, process %d", len(evs[0].Path), len(evs[0].Detail), len(evs[0].Process))
	}
	var agents []AgentView
	tg.getJSON(t, "/api/agents", &agents)
	for _, a := range agents {
		if a.ID == "edge-evil" && (len(a.Hostname) > maxHostLen || len(a.Capabilities) > maxListLen) {
			t.Fatalf("hello not cut: hostname %d bytes, %d capabilities", len(a.Hostname), len(a.Capabilities))
		}
	}

	// Bounds.
	t.Logf("attack took %v: database %d -> %d bytes (+%.1f MiB), heap in use %d -> %d (+%.1f MiB); %d rule rows, %d events, %d deltas refused",
		took.Round(time.Millisecond), dbBefore, dbAfter, float64(dbAfter-dbBefore)/(1<<20), heapBefore, heapAfter,
		float64(int64(heapAfter)-int64(heapBefore))/(1<<20), len(evilRows), len(evs), tg.g.Refused("edge-evil"))
	if dbAfter-dbBefore > hostileDBBound {
		t.Errorf("database grew by %d bytes, bound %d", dbAfter-dbBefore, hostileDBBound)
	}
	if int64(heapAfter)-int64(heapBefore) > hostileHeapBound {
		t.Errorf("heap in use grew by %d bytes, bound %d", int64(heapAfter)-int64(heapBefore), hostileHeapBound)
	}

	// The other agent and the dashboard.
	var goodRows []Row
	tg.getJSON(t, "/api/counters?agent=edge-good", &goodRows)
	var drops, allows uint64
	for _, r := range goodRows {
		switch r.Kind {
		case store.KindDrop:
			drops += r.Packets
		case store.KindAllow:
			allows += r.Packets
		}
	}
	if drops != goodSent || allows != 5 {
		t.Fatalf("good agent: %d drops and %d allow hits stored, sent %d and 5", drops, allows, goodSent)
	}
	t0 := time.Now()
	resp, err := http.Get("http://" + tg.httpAddr + "/api/snapshot")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	snapTook := time.Since(t0)
	var snap Snapshot
	if err := json.Unmarshal(body, &snap); err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshot: %d bytes in %v", len(body), snapTook.Round(time.Millisecond))
	if len(body) > 512<<10 || snapTook > raceSlowdown*time.Second {
		t.Fatalf("snapshot %d bytes in %v: want under 512 KiB and %v", len(body), snapTook, raceSlowdown*time.Second)
	}
	if len(snap.FleetAllow) != 1 || snap.FleetAllow[0].Rule != "10.77.99.0/24" || snap.FleetAllow[0].Packets != 5 {
		t.Fatalf("snapshot allow hits %+v", snap.FleetAllow)
	}
	// The dashboard, narrowed to the other agent, shows its exact counts;
	// the agents table shows what the hostile agent had refused.
	bctx := browser.New(t, time.Minute)
	if err := chromedp.Do(bctx, chromedp.Navigate("http://"+tg.httpAddr+"/"), chromedp.WaitVisible(chromedp.CSS(`#agents tr[data-agent="edge-evil"]`)),
		chromedp.SendKeys(chromedp.CSS("#agent"), "edge-good")); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	waitFor(t, 5*raceSlowdown*time.Second, "the other agent's counts on the page", func() bool {
		return num(browser.Text(t, bctx, cellJS("fleet", "203.0.113.0/24"))) == goodSent && num(browser.Text(t, bctx, cellJS("fleet-allow", "10.77.99.0/24"))) == 5
	})
	browser.Text(t, bctx, `document.getElementById("agent").value = "edge-evil"; document.getElementById("agent").dispatchEvent(new Event("input")); ""`)
	waitFor(t, 5*raceSlowdown*time.Second, "refused count on the page", func() bool {
		return num(browser.Text(t, bctx, `(() => { const td = document.querySelector('#agents tr[data-agent="edge-evil"] td.refused'); return td ? td.textContent : "0"; })()`)) == tg.g.Refused("edge-evil")
	})

	// Paging the API covers the hostile agent's rows without one huge page.
	var page []Row
	tg.getJSON(t, "/api/counters?agent=edge-evil&limit=100000", &page)
	if len(page) != maxAPIPage {
		t.Fatalf("one page has %d rows, want %d", len(page), maxAPIPage)
	}
}
