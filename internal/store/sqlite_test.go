package store

import (
	"context"
	"database/sql"
	"fmt"
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
			{RuleKey: drop("10.0.0.0/8"), Packets: pk, Bytes: pk * 100},
			{RuleKey: wouldDrop("10.0.0.0/8"), Packets: 1, Bytes: 60},
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
	if _, err := s.Apply(ctx, []Batch{{AgentID: "a1", Epoch: 8, Seq: 1, Time: now, Counters: []CounterDelta{{RuleKey: drop("10.0.0.0/8"), Packets: 100}}}}); err != nil {
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
	ser, _ := s2.Series(ctx, "a1", "10.0.0.0/8", KindDrop, now.Add(-time.Hour))
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
			{RuleKey: drop("192.0.2.0/24"), Packets: uint64(10 * (i + 1))},
			{RuleKey: drop("198.51.100.0/24"), Packets: 1},
			{RuleKey: wouldDrop("198.51.100.0/24"), Packets: 50},
		}})
	}
	if _, err := s.Apply(ctx, batches); err != nil {
		t.Fatal(err)
	}
	fleet, _ := s.Counters(ctx, CounterQuery{Fleet: true})
	if len(fleet) != 3 || !fleet[0].DryRun || fleet[1].Rule != "192.0.2.0/24" || fleet[1].Packets != 60 || fleet[1].Agents != 3 {
		t.Fatalf("fleet %+v", fleet)
	}
	filtered, _ := s.Counters(ctx, CounterQuery{Fleet: true, Filter: "198.51", Kind: KindDrop})
	if len(filtered) != 1 || filtered[0].Packets != 3 {
		t.Fatalf("filtered %+v", filtered)
	}
	top, _ := s.Counters(ctx, CounterQuery{Limit: 1, Kind: KindDrop})
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
	if _, err := s.Apply(ctx, []Batch{{AgentID: "a", Epoch: 1, Seq: 1, Time: now.Add(-2 * time.Hour), Events: evs, Counters: []CounterDelta{{RuleKey: drop("x"), Packets: 1}}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Prune(ctx, Retention{MaxEvents: 20, EventAge: 24 * time.Hour, SampleAge: time.Hour}, now); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Events(ctx, EventQuery{})
	if len(got) != 20 {
		t.Fatalf("%d events kept, want 20", len(got))
	}
	if ser, _ := s.Series(ctx, "", "x", KindDrop, time.Time{}); len(ser) != 0 {
		t.Fatalf("samples kept: %+v", ser)
	}
	// Totals survive pruning of the series.
	if c, _ := s.Counters(ctx, CounterQuery{}); len(c) != 1 || c[0].Packets != 1 {
		t.Fatalf("counters %+v", c)
	}
}

func drop(rule string) RuleKey { return RuleKey{Rule: rule, Action: "drop", Kind: KindDrop} }

func wouldDrop(rule string) RuleKey {
	return RuleKey{Rule: rule, Action: "drop", Kind: KindWouldDrop}
}

// TestKindsApart: a drop rule and a later allow rule for the same CIDR, a
// log-only rule's would-drops and the same rule in another slot are stored
// as separate rows, and the totals keep drops, would-drops and allow hits
// apart.
func TestKindsApart(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	now := time.Now()
	cidr := "10.77.99.0/24"
	b := []Batch{
		{AgentID: "a", Epoch: 1, Seq: 1, Time: now, Counters: []CounterDelta{
			{RuleKey: RuleKey{Rule: cidr, Action: "drop", Slot: 3, Kind: KindDrop}, Packets: 10, Bytes: 1000}}},
		// The policy changed: the same CIDR is now an allow exception.
		{AgentID: "a", Epoch: 1, Seq: 2, Time: now, Counters: []CounterDelta{
			{RuleKey: RuleKey{Rule: cidr, Action: "allow", Slot: 7, Kind: KindAllow}, Packets: 4, Bytes: 400},
			{RuleKey: RuleKey{Rule: "fd77::55:0/112", Action: "drop", LogOnly: true, Slot: 5, Kind: KindWouldDrop}, Packets: 2, Bytes: 200},
			// The drop rule came back in another slot: a new row.
			{RuleKey: RuleKey{Rule: cidr, Action: "drop", Slot: 9, Kind: KindDrop}, Packets: 1, Bytes: 100}}},
	}
	if _, err := s.Apply(ctx, b); err != nil {
		t.Fatal(err)
	}
	rows, err := s.Counters(ctx, CounterQuery{AgentID: "a", Filter: cidr})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("rows %+v, want 3 (drop slot 3, allow slot 7, drop slot 9)", rows)
	}
	for _, r := range rows {
		want := map[uint32]uint64{3: 10, 7: 4, 9: 1}[r.Slot]
		if r.Packets != want || (r.Slot == 7) != (r.Kind == KindAllow && r.Action == "allow") {
			t.Fatalf("row %+v", r)
		}
	}
	fleet, _ := s.Counters(ctx, CounterQuery{Fleet: true, Kind: KindDrop})
	if len(fleet) != 1 || fleet[0].Packets != 11 || fleet[0].Action != "drop" {
		t.Fatalf("fleet drops %+v", fleet)
	}
	tot, err := s.Totals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tot.Packets != 11 || tot.AllowPackets != 4 || tot.DryPackets != 2 {
		t.Fatalf("totals %+v: want 11 drops, 4 allow hits, 2 would-drops", tot)
	}
	kt, _ := s.KindTotals(ctx, CounterQuery{})
	if len(kt) != 3 {
		t.Fatalf("kind totals %+v", kt)
	}
	if ser, _ := s.Series(ctx, "", cidr, KindAllow, now.Add(-time.Hour)); len(ser) != 1 || ser[0].Packets != 4 {
		t.Fatalf("allow series %+v", ser)
	}
}

// TestRuleQuota: one agent stores at most MaxRules rule keys; further new
// keys are refused and counted, known keys keep counting, and other agents
// are unaffected.
func TestRuleQuota(t *testing.T) {
	ctx := context.Background()
	s, path := openTest(t)
	s.MaxRules, s.MaxSampleRules = 100, 20
	now := time.Now()
	var ds []CounterDelta
	for i := range 150 {
		ds = append(ds, CounterDelta{RuleKey: drop(fmt.Sprintf("10.0.%d.0/24", i)), Packets: 1})
	}
	b := []Batch{{AgentID: "bad", Epoch: 1, Seq: 1, Time: now, Counters: ds},
		{AgentID: "good", Epoch: 1, Seq: 1, Time: now, Counters: ds[:3]}}
	if _, err := s.Apply(ctx, b); err != nil {
		t.Fatal(err)
	}
	if b[0].Refused != 50 || b[1].Refused != 0 {
		t.Fatalf("refused %d and %d, want 50 and 0", b[0].Refused, b[1].Refused)
	}
	var samples int
	if err := s.r.QueryRow(`SELECT COUNT(*) FROM rule_samples WHERE agent_id='bad'`).Scan(&samples); err != nil || samples != 20 {
		t.Fatalf("%d sample rows (%v), want MaxSampleRules 20", samples, err)
	}
	// Known keys still count after a reopen (the row count is re-read).
	s.Close()
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	s2.MaxRules = 100
	b = []Batch{{AgentID: "bad", Epoch: 1, Seq: 2, Time: now, Counters: []CounterDelta{{RuleKey: drop("10.0.0.0/24"), Packets: 5},
		{RuleKey: drop("10.9.9.0/24"), Packets: 5}}}}
	if _, err := s2.Apply(ctx, b); err != nil {
		t.Fatal(err)
	}
	if b[0].Refused != 1 {
		t.Fatalf("refused %d after reopen, want 1", b[0].Refused)
	}
	if rows, _ := s2.Counters(ctx, CounterQuery{AgentID: "bad"}); len(rows) != 100 || rows[0].Packets != 6 {
		t.Fatalf("%d rows, top %+v", len(rows), rows[0])
	}
	if rows, _ := s2.Counters(ctx, CounterQuery{AgentID: "good"}); len(rows) != 3 {
		t.Fatalf("good agent rows %d", len(rows))
	}
	// Paging: two pages of 60 and 40 cover the 100 rows once.
	p1, _ := s2.Counters(ctx, CounterQuery{AgentID: "bad", Limit: 60})
	p2, _ := s2.Counters(ctx, CounterQuery{AgentID: "bad", Limit: 60, Offset: 60})
	if len(p1) != 60 || len(p2) != 40 || p1[59].Rule == p2[0].Rule {
		t.Fatalf("pages %d and %d", len(p1), len(p2))
	}
}

// TestPruneCountersAndAgentEvents: counter rows idle for CounterAge go, and
// one agent keeps at most MaxEventsPerAgent events without touching
// another agent's.
func TestPruneCountersAndAgentEvents(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	s.MaxRules = 10
	now := time.Now()
	var noisy, calm []Event
	for range 300 {
		noisy = append(noisy, Event{Time: now, Kind: "fim", Path: "/x"})
	}
	for range 5 {
		calm = append(calm, Event{Time: now, Kind: "violation", Path: "/etc/serviceradar/a.json"})
	}
	b := []Batch{
		{AgentID: "calm", Epoch: 1, Seq: 1, Time: now, Events: calm},
		{AgentID: "noisy", Epoch: 1, Seq: 1, Time: now.Add(-48 * time.Hour), Events: noisy, Counters: []CounterDelta{{RuleKey: drop("10.1.0.0/16"), Packets: 1}}},
		{AgentID: "noisy", Epoch: 1, Seq: 2, Time: now, Counters: []CounterDelta{{RuleKey: drop("10.2.0.0/16"), Packets: 1}}},
	}
	if _, err := s.Apply(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := s.Prune(ctx, Retention{MaxEventsPerAgent: 100, CounterAge: 24 * time.Hour}, now); err != nil {
		t.Fatal(err)
	}
	if ev, _ := s.Events(ctx, EventQuery{AgentID: "noisy"}); len(ev) != 100 {
		t.Fatalf("noisy agent keeps %d events, want 100", len(ev))
	}
	if ev, _ := s.Events(ctx, EventQuery{AgentID: "calm"}); len(ev) != 5 {
		t.Fatalf("calm agent keeps %d events, want 5", len(ev))
	}
	rows, _ := s.Counters(ctx, CounterQuery{AgentID: "noisy"})
	if len(rows) != 1 || rows[0].Rule != "10.2.0.0/16" {
		t.Fatalf("counters after prune %+v", rows)
	}
}

// TestMigrate: a database from before counter kinds opens, and its rows
// keep their totals as drops and would-drops.
func TestMigrate(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE TABLE counters (agent_id TEXT NOT NULL, rule TEXT NOT NULL, dry_run INTEGER NOT NULL, packets INTEGER NOT NULL, bytes INTEGER NOT NULL, updated INTEGER NOT NULL, PRIMARY KEY (agent_id, rule, dry_run))`,
		`CREATE TABLE samples (agent_id TEXT NOT NULL, rule TEXT NOT NULL, dry_run INTEGER NOT NULL, minute INTEGER NOT NULL, packets INTEGER NOT NULL, bytes INTEGER NOT NULL, PRIMARY KEY (agent_id, rule, dry_run, minute))`,
		`INSERT INTO counters VALUES ('a', '10.0.0.0/8', 0, 42, 4200, 1), ('a', '10.0.0.0/8', 1, 7, 700, 1)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tot, err := s.Totals(ctx)
	if err != nil || tot.Packets != 42 || tot.DryPackets != 7 {
		t.Fatalf("totals %+v, %v", tot, err)
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

// TestHugeCounts: counts near 2^64 from a hostile agent neither overflow
// the sums nor break the totals of anyone else.
func TestHugeCounts(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	now := time.Now()
	var b []Batch
	for i := range 5 {
		b = append(b, Batch{AgentID: "bad", Epoch: 1, Seq: uint64(i + 1), Time: now, Counters: []CounterDelta{
			{RuleKey: drop("10.0.0.0/8"), Packets: ^uint64(0), Bytes: ^uint64(0)},
			{RuleKey: drop("10.1.0.0/16"), Packets: 1 << 62, Bytes: 1 << 63}}})
	}
	b = append(b, Batch{AgentID: "good", Epoch: 1, Seq: 1, Time: now, Counters: []CounterDelta{{RuleKey: drop("192.0.2.0/24"), Packets: 7}}})
	if _, err := s.Apply(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Totals(ctx); err != nil {
		t.Fatalf("totals: %v", err)
	}
	if _, err := s.Counters(ctx, CounterQuery{Fleet: true}); err != nil {
		t.Fatalf("fleet counters: %v", err)
	}
	rows, err := s.Counters(ctx, CounterQuery{AgentID: "good"})
	if err != nil || len(rows) != 1 || rows[0].Packets != 7 {
		t.Fatalf("good agent %+v, %v", rows, err)
	}
	rows, _ = s.Counters(ctx, CounterQuery{AgentID: "bad"})
	if len(rows) != 2 || rows[0].Packets != maxCount {
		t.Fatalf("bad agent rows %+v, want capped at %d", rows, uint64(maxCount))
	}
}
