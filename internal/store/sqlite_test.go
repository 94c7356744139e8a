package store

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

func openTest(t *testing.T) (*SQLite, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gw.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestApplyDedupes(t *testing.T) {
	ctx := context.Background()
	s, path := openTest(t)
	now := time.Date(2026, 11, 1, 12, 0, 30, 0, time.UTC)
	if err := s.UpsertAgent(ctx, Agent{ID: "a1", Epoch: 7, LastSeen: now}); err != nil {
		t.Fatal(err)
	}
	mk := func(seq uint64, pk uint64) Batch {
		return Batch{AgentID: "a1", Epoch: 7, Seq: seq, Time: now, Counters: []CounterDelta{
			{Rule: "10.0.0.0/8", Packets: pk, Bytes: pk * 100},
			{Rule: "10.0.0.0/8", DryRun: true, Packets: 1, Bytes: 60},
		}}
	}
	applied, err := s.Apply(ctx, []Batch{mk(1, 5), mk(2, 7), mk(2, 7), mk(1, 5)})
	if err != nil {
		t.Fatal(err)
	}
	if want := []bool{true, true, false, false}; !equal(applied, want) {
		t.Fatalf("applied %v, want %v", applied, want)
	}
	ev := Batch{AgentID: "a1", Epoch: 7, Seq: 3, Time: now, Dropped: 2, Events: []Event{{Time: now, Kind: "fim", Path: "/etc/serviceradar/agent.json", Op: "write", Denied: true}}}
	if _, err := s.Apply(ctx, []Batch{ev, ev}); err != nil {
		t.Fatal(err)
	}
	// A new epoch (agent restart) starts its own sequence space.
	if _, err := s.Apply(ctx, []Batch{{AgentID: "a1", Epoch: 8, Seq: 1, Time: now, Counters: []CounterDelta{{Rule: "10.0.0.0/8", Packets: 100}}}}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// Everything survives a reopen, including positions.
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if p, _ := s2.Position(ctx, "a1", 7); p != 3 {
		t.Fatalf("position %d, want 3", p)
	}
	if p, _ := s2.Position(ctx, "a1", 9); p != 0 {
		t.Fatalf("new epoch position %d", p)
	}
	ct, err := s2.Counters(ctx, CounterQuery{AgentID: "a1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ct) != 2 || ct[0].Packets != 112 || ct[0].Bytes != 1200 || ct[0].DryRun || ct[1].Packets != 2 || !ct[1].DryRun {
		t.Fatalf("counters %+v", ct)
	}
	tot, _ := s2.Totals(ctx)
	if tot.Packets != 112 || tot.DryPackets != 2 || tot.Events != 1 || tot.Batches != 4 {
		t.Fatalf("totals %+v", tot)
	}
	evs, _ := s2.Events(ctx, EventQuery{})
	if len(evs) != 1 || evs[0].Path != "/etc/serviceradar/agent.json" || !evs[0].Denied {
		t.Fatalf("events %+v", evs)
	}
	agents, _ := s2.Agents(ctx)
	if len(agents) != 1 || agents[0].EventsLost != 2 || !agents[0].Connected {
		t.Fatalf("agents %+v", agents)
	}
	ser, _ := s2.Series(ctx, "a1", "10.0.0.0/8", false, now.Add(-time.Hour))
	if len(ser) != 1 || ser[0].Packets != 112 {
		t.Fatalf("series %+v", ser)
	}
}

func TestCountersQuery(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	now := time.Now()
	var batches []Batch
	for i, a := range []string{"a1", "a2", "a3"} {
		batches = append(batches, Batch{AgentID: a, Epoch: 1, Seq: 1, Time: now, Counters: []CounterDelta{
			{Rule: "192.0.2.0/24", Packets: uint64(10 * (i + 1))},
			{Rule: "198.51.100.0/24", Packets: 1},
			{Rule: "198.51.100.0/24", DryRun: true, Packets: 50},
		}})
	}
	if _, err := s.Apply(ctx, batches); err != nil {
		t.Fatal(err)
	}
	fleet, _ := s.Counters(ctx, CounterQuery{Fleet: true})
	if len(fleet) != 3 || !fleet[0].DryRun || fleet[1].Rule != "192.0.2.0/24" || fleet[1].Packets != 60 || fleet[1].Agents != 3 {
		t.Fatalf("fleet %+v", fleet)
	}
	f := false
	filtered, _ := s.Counters(ctx, CounterQuery{Fleet: true, Filter: "198.51", DryRun: &f})
	if len(filtered) != 1 || filtered[0].Packets != 3 {
		t.Fatalf("filtered %+v", filtered)
	}
	top, _ := s.Counters(ctx, CounterQuery{Limit: 1, DryRun: &f})
	if len(top) != 1 || top[0].AgentID != "a3" {
		t.Fatalf("top %+v", top)
	}
}

func TestPrune(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	now := time.Now()
	var evs []Event
	for i := range 50 {
		evs = append(evs, Event{Time: now.Add(time.Duration(i-40) * time.Hour), Kind: "violation"})
	}
	if _, err := s.Apply(ctx, []Batch{{AgentID: "a", Epoch: 1, Seq: 1, Time: now.Add(-2 * time.Hour), Events: evs, Counters: []CounterDelta{{Rule: "x", Packets: 1}}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Prune(ctx, Retention{MaxEvents: 20, EventAge: 24 * time.Hour, SampleAge: time.Hour}, now); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Events(ctx, EventQuery{})
	if len(got) != 20 {
		t.Fatalf("%d events kept, want 20", len(got))
	}
	if ser, _ := s.Series(ctx, "", "x", false, time.Time{}); len(ser) != 0 {
		t.Fatalf("samples kept: %+v", ser)
	}
	// Totals survive pruning of the series.
	if c, _ := s.Counters(ctx, CounterQuery{}); len(c) != 1 || c[0].Packets != 1 {
		t.Fatalf("counters %+v", c)
	}
}

func equal(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
