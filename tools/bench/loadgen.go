package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/carverauto/fortress/api/controlpb"
	"github.com/carverauto/fortress/internal/controlstream"
	"github.com/carverauto/fortress/internal/gateway"
	"github.com/carverauto/fortress/internal/pki"
	"github.com/carverauto/fortress/internal/store"
)

type loadOpts struct {
	agents, rules   int
	seconds         int
	eventsPerSec    float64
	tick            time.Duration
	gatewayAddr     string
	httpURL         string
	pkiDir          string
	drainTimeout    time.Duration
	connectParallel int
}

func runLoadgen(ctx context.Context, args []string) (int, error) {
	fs := newFlagSet("loadgen")
	var o loadOpts
	fs.IntVar(&o.agents, "agents", 100, "simulated agents (each its own mTLS connection)")
	fs.IntVar(&o.seconds, "seconds", 30, "how long to send (at most 3600)")
	fs.IntVar(&o.rules, "rules", 8, "rules per agent reporting counters (about 1 in 8 dry-run)")
	fs.Float64Var(&o.eventsPerSec, "events", 2, "FIM/violation events per agent per second")
	fs.DurationVar(&o.tick, "tick", 250*time.Millisecond, "how often each agent adds counter deltas (the client batches them once a second)")
	fs.StringVar(&o.gatewayAddr, "gateway", "", "loopback address of a running gateway (default: start one)")
	fs.StringVar(&o.httpURL, "http", "", "that gateway's HTTP base URL, e.g. http://127.0.0.1:8080")
	fs.StringVar(&o.pkiDir, "pki", "", "that gateway's pki directory (its CA key issues the agent certificates)")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 2*time.Minute, "how long to wait for every batch to be acknowledged after sending stops")
	fs.IntVar(&o.connectParallel, "connect-parallel", 50, "agents connecting at once during ramp-up")
	serve := fs.Bool("serve-gateway", false, "internal: run the gateway for loadgen (child process)")
	db := fs.String("db", "", "internal: database for --serve-gateway")
	usage := "loadgen [--agents N] [--seconds S] [--rules R] [--events E] [--gateway ADDR --http URL --pki DIR]"
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return 2, usageError{fmt.Sprintf("%s: %v", usage, err)}
	}
	if *serve {
		return serveGateway(ctx, o.pkiDir, *db)
	}
	if o.agents < 1 || o.agents > 100000 || o.seconds < 1 || o.seconds > 3600 || o.rules < 1 || o.rules > 10000 || o.eventsPerSec < 0 {
		return 2, usageError{"loadgen: --agents 1..100000, --seconds 1..3600, --rules 1..10000, --events >= 0"}
	}
	return loadgen(ctx, o)
}

// serveGateway is the child process: a gateway on loopback ports that
// prints its addresses and runs until its stdin closes or it is signalled.
func serveGateway(ctx context.Context, dir, db string) (int, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, pki.Files.Server), filepath.Join(dir, pki.Files.ServerKey))
	if err != nil {
		return 1, err
	}
	pool, err := pki.LoadPool(filepath.Join(dir, pki.Files.CA))
	if err != nil {
		return 1, err
	}
	st, err := store.Open(db)
	if err != nil {
		return 1, err
	}
	defer st.Close()
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 1, err
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 1, err
	}
	g, err := gateway.New(gateway.Config{GRPCListener: gl, HTTPListener: hl, TLS: pki.ServerTLS(cert, pool), Store: st,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return 1, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { io.Copy(io.Discard, os.Stdin); cancel() }()
	fmt.Printf("grpc %s\nhttp http://%s\n", gl.Addr(), hl.Addr())
	if err := g.Run(ctx); err != nil {
		return 1, err
	}
	return 0, nil
}

func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

type simAgent struct {
	id     string
	c      *controlstream.Client
	rules  []string
	rng    *rand.Rand
	pk, by atomic.Uint64 // sent, enforce
	dpk    atomic.Uint64 // sent, dry-run packets
	dby    atomic.Uint64
	events atomic.Uint64
}

func loadgen(ctx context.Context, o loadOpts) (int, error) {
	dir, err := os.MkdirTemp("", "fortress-loadgen-")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(dir)
	var child *exec.Cmd
	var ca *pki.CA
	if o.gatewayAddr == "" {
		if ca, err = pki.Init(dir, "127.0.0.1"); err != nil {
			return 1, err
		}
		self, err := os.Executable()
		if err != nil {
			return 1, err
		}
		child = exec.Command(self, "loadgen", "--serve-gateway", "--pki", dir, "--db", filepath.Join(dir, "gateway.db"))
		child.Stderr = os.Stderr
		stdin, _ := child.StdinPipe()
		out, _ := child.StdoutPipe()
		if err := child.Start(); err != nil {
			return 1, fmt.Errorf("start gateway: %w", err)
		}
		defer func() {
			stdin.Close()
			done := make(chan struct{})
			go func() { child.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				child.Process.Kill()
				<-done
			}
		}()
		sc := bufio.NewScanner(out)
		for (o.gatewayAddr == "" || o.httpURL == "") && sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 2 && f[0] == "grpc" {
				o.gatewayAddr = f[1]
			} else if len(f) == 2 && f[0] == "http" {
				o.httpURL = f[1]
			}
		}
		if o.gatewayAddr == "" || o.httpURL == "" {
			return 1, errors.New("gateway child did not report its addresses")
		}
		go io.Copy(io.Discard, out)
	} else {
		if o.httpURL == "" || o.pkiDir == "" {
			return 2, usageError{"--gateway needs --http and --pki"}
		}
		if ca, err = pki.LoadCA(o.pkiDir); err != nil {
			return 1, err
		}
	}
	if !isLoopback(o.gatewayAddr) || !strings.HasPrefix(o.httpURL, "http://") || !isLoopback(strings.TrimPrefix(o.httpURL, "http://")) {
		return 2, usageError{"loadgen only targets loopback addresses"}
	}
	fmt.Printf("gateway grpc %s http %s; %d agents x %d rules, %.1f events/s each, %d s\n",
		o.gatewayAddr, o.httpURL, o.agents, o.rules, o.eventsPerSec, o.seconds)

	before, err := totals(o.httpURL)
	if err != nil {
		return 1, err
	}
	// Issue certificates and connect the agents, a few at a time.
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	agents := make([]*simAgent, o.agents)
	runCtx, stopAgents := context.WithCancel(ctx)
	defer stopAgents()
	var runWG sync.WaitGroup
	start := time.Now()
	for i := range agents {
		id := fmt.Sprintf("sim-%05d", i)
		cert, err := ca.Client(id, pki.RoleAgent)
		if err != nil {
			return 1, err
		}
		c, err := controlstream.NewClient(controlstream.ClientConfig{Addr: o.gatewayAddr, TLS: pki.ClientTLS(cert, ca.Pool(), "127.0.0.1"),
			Hello:      controlstream.Hello{AgentID: id, AgentVersion: "loadgen", Hostname: id, Capabilities: []string{"shield", "sentinel"}},
			MinBackoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second, Logger: quiet})
		if err != nil {
			return 1, err
		}
		a := &simAgent{id: id, c: c, rng: rand.New(rand.NewPCG(uint64(i), 42))}
		for r := range o.rules {
			a.rules = append(a.rules, fmt.Sprintf("10.%d.%d.0/24", r/256, r%256))
		}
		agents[i] = a
		c.SetStatus(&pb.Status{Shield: &pb.Layer{State: pb.LayerState_LAYER_STATE_ENFORCING, Mode: "enforce"},
			Sentinel: &pb.Layer{State: pb.LayerState_LAYER_STATE_ENFORCING, Mode: "enforce"}, PolicyVersion: 1})
		runWG.Add(1)
		go func() { defer runWG.Done(); c.Run(runCtx) }()
		if (i+1)%o.connectParallel == 0 {
			waitConnected(ctx, agents[:i+1], 30*time.Second)
		}
	}
	if n := waitConnected(ctx, agents, 60*time.Second); n < len(agents) {
		return 1, fmt.Errorf("only %d of %d agents connected", n, len(agents))
	}
	fmt.Printf("connected %d agents in %v\n", len(agents), time.Since(start).Round(time.Millisecond))

	m0, _ := metrics(o.httpURL)
	sendStart := time.Now()
	sendCtx, stopSend := context.WithTimeout(ctx, time.Duration(o.seconds)*time.Second)
	var sendWG sync.WaitGroup
	for _, a := range agents {
		sendWG.Add(1)
		go func() {
			defer sendWG.Done()
			a.produce(sendCtx, o)
		}()
	}
	var peakRSS float64
	progress := time.NewTicker(10 * time.Second)
	go func() {
		for {
			select {
			case <-sendCtx.Done():
				return
			case <-progress.C:
				if m, err := metrics(o.httpURL); err == nil {
					peakRSS = max(peakRSS, m["process_resident_memory_bytes"])
					fmt.Printf("  %3.0fs: %8.0f counter updates, %8.0f events stored; gateway rss %.0f MiB\n", time.Since(sendStart).Seconds(),
						m["fortress_gateway_counter_updates_total"]-m0["fortress_gateway_counter_updates_total"],
						m["fortress_gateway_events_total"]-m0["fortress_gateway_events_total"], m["process_resident_memory_bytes"]/(1<<20))
				}
			}
		}
	}()
	sendWG.Wait()
	stopSend()
	progress.Stop()
	sendDur := time.Since(sendStart)
	m1, _ := metrics(o.httpURL)

	// Drain: every delta and event handed to a client must be acknowledged.
	for _, a := range agents {
		a.c.Flush()
	}
	drainStart := time.Now()
	deadline := time.Now().Add(o.drainTimeout)
	for {
		pending := 0
		for _, a := range agents {
			if !a.c.Drained() {
				pending++
			}
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 1, fmt.Errorf("%d agents still had unacknowledged data after %v", pending, o.drainTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	drainDur := time.Since(drainStart)
	m2, err := metrics(o.httpURL)
	if err != nil {
		return 1, err
	}
	after, err := totals(o.httpURL)
	if err != nil {
		return 1, err
	}
	var sent struct{ pk, by, dpk, dby, ev, dropped, connects uint64 }
	for _, a := range agents {
		sent.pk += a.pk.Load()
		sent.by += a.by.Load()
		sent.dpk += a.dpk.Load()
		sent.dby += a.dby.Load()
		sent.ev += a.events.Load()
		st := a.c.Stats()
		sent.dropped += st.EventsDropped
		sent.connects += st.Connects
	}
	stopAgents()
	runWG.Wait()

	stored := map[string]uint64{}
	for k, v := range after {
		stored[k] = v - before[k]
	}
	peakRSS = max(peakRSS, m1["process_resident_memory_bytes"], m2["process_resident_memory_bytes"])
	secs := sendDur.Seconds()
	cu := m1["fortress_gateway_counter_updates_total"] - m0["fortress_gateway_counter_updates_total"]
	ev := m1["fortress_gateway_events_total"] - m0["fortress_gateway_events_total"]
	fmt.Printf("\nsent for %.1f s, drained in %v\n", secs, drainDur.Round(time.Millisecond))
	fmt.Printf("accepted while sending: %.0f counter updates/s, %.0f events/s, %.0f batches/s\n", cu/secs, ev/secs,
		(m1[`fortress_gateway_batches_total{result="applied"}`]-m0[`fortress_gateway_batches_total{result="applied"}`])/secs)
	fmt.Printf("accepted overall:       %.0f counter updates, %.0f events, %.0f duplicate batches ignored, %d connects\n",
		m2["fortress_gateway_counter_updates_total"]-m0["fortress_gateway_counter_updates_total"],
		m2["fortress_gateway_events_total"]-m0["fortress_gateway_events_total"],
		m2[`fortress_gateway_batches_total{result="duplicate"}`]-m0[`fortress_gateway_batches_total{result="duplicate"}`], sent.connects)
	fmt.Printf("gateway memory: rss now %.0f MiB, peak sampled %.0f MiB, go heap in use %.0f MiB",
		m2["process_resident_memory_bytes"]/(1<<20), peakRSS/(1<<20), m2["go_memstats_heap_inuse_bytes"]/(1<<20))
	if child != nil {
		if hwm := procHWM(child.Process.Pid); hwm > 0 {
			fmt.Printf(", VmHWM %.0f MiB", float64(hwm)/(1<<20))
		}
	}
	fmt.Println()
	ok := true
	check := func(name string, sentV, storedV uint64) {
		mark := "equal"
		if sentV != storedV {
			mark, ok = "MISMATCH", false
		}
		fmt.Printf("  %-22s sent %14d  stored %14d  %s\n", name, sentV, storedV, mark)
	}
	fmt.Println("totals:")
	check("packets (enforce)", sent.pk, stored["packets"])
	check("bytes (enforce)", sent.by, stored["bytes"])
	check("packets (dry-run)", sent.dpk, stored["dry_packets"])
	check("bytes (dry-run)", sent.dby, stored["dry_bytes"])
	check("events", sent.ev, stored["events"])
	if sent.dropped > 0 {
		fmt.Printf("  events dropped by full agent buffers (counted, not sent): %d\n", sent.dropped)
	}
	if !ok {
		fmt.Println("RESULT: stored totals differ from sent totals")
		return 1, nil
	}
	fmt.Println("RESULT: stored totals equal sent totals")
	return 0, nil
}

func (a *simAgent) produce(ctx context.Context, o loadOpts) {
	t := time.NewTicker(o.tick)
	defer t.Stop()
	perTick := o.eventsPerSec * o.tick.Seconds()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		deltas := make([]*pb.CounterDelta, 0, len(a.rules))
		for i, r := range a.rules {
			if a.rng.IntN(2) == 0 {
				continue
			}
			p := uint64(a.rng.IntN(1000) + 1)
			b := p * uint64(60+a.rng.IntN(1400))
			dry := i%8 == 7
			deltas = append(deltas, &pb.CounterDelta{Rule: r, DryRun: dry, Packets: p, Bytes: b})
			if dry {
				a.dpk.Add(p)
				a.dby.Add(b)
			} else {
				a.pk.Add(p)
				a.by.Add(b)
			}
		}
		a.c.AddCounters(deltas...)
		n := int(perTick)
		if a.rng.Float64() < perTick-float64(n) {
			n++
		}
		for range n {
			kind, op := pb.EventKind_EVENT_KIND_FIM, "write"
			if a.rng.IntN(4) == 0 {
				kind, op = pb.EventKind_EVENT_KIND_VIOLATION, "unlink"
			}
			if a.c.AddEvent(&pb.Event{Kind: kind, Path: "/etc/serviceradar/checkers/sweep.json", Op: op, Process: "vim",
				Pid: uint32(a.rng.IntN(60000)), Denied: kind == pb.EventKind_EVENT_KIND_VIOLATION}) {
				a.events.Add(1)
			}
		}
	}
}

func waitConnected(ctx context.Context, agents []*simAgent, d time.Duration) int {
	deadline := time.Now().Add(d)
	for {
		n := 0
		for _, a := range agents {
			if a.c.Stats().Connected {
				n++
			}
		}
		if n == len(agents) || time.Now().After(deadline) || ctx.Err() != nil {
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

func totals(base string) (map[string]uint64, error) {
	resp, err := httpClient.Get(base + "/api/totals")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var t map[string]uint64
	if err := json.NewDecoder(resp.Body).Decode(&t); err != nil {
		return nil, fmt.Errorf("totals: %w", err)
	}
	return t, nil
}

// metrics reads the gateway's /metrics into name{labels} -> value.
func metrics(base string) (map[string]float64, error) {
	resp, err := httpClient.Get(base + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

// procHWM returns a process's peak resident set size in bytes.
func procHWM(pid int) uint64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				kb, _ := strconv.ParseUint(f[1], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}
