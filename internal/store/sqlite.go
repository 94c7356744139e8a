package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver
)

const schema = `
CREATE TABLE IF NOT EXISTS agents (
	id TEXT PRIMARY KEY,
	hostname TEXT NOT NULL DEFAULT '',
	version TEXT NOT NULL DEFAULT '',
	capabilities TEXT NOT NULL DEFAULT '[]',
	kernel TEXT NOT NULL DEFAULT '{}',
	epoch INTEGER NOT NULL DEFAULT 0,
	first_seen INTEGER NOT NULL,
	last_seen INTEGER NOT NULL,
	connected INTEGER NOT NULL DEFAULT 0,
	status TEXT NOT NULL DEFAULT '{}',
	events_lost INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS streams (
	agent_id TEXT NOT NULL,
	epoch INTEGER NOT NULL,
	last_seq INTEGER NOT NULL,
	batches INTEGER NOT NULL DEFAULT 0,
	updated INTEGER NOT NULL,
	PRIMARY KEY (agent_id, epoch)
);
CREATE TABLE IF NOT EXISTS rule_counters (
	agent_id TEXT NOT NULL,
	rule TEXT NOT NULL,
	action TEXT NOT NULL,
	log_only INTEGER NOT NULL,
	slot INTEGER NOT NULL,
	kind TEXT NOT NULL,
	packets INTEGER NOT NULL,
	bytes INTEGER NOT NULL,
	updated INTEGER NOT NULL,
	PRIMARY KEY (agent_id, rule, action, log_only, slot, kind)
);
CREATE INDEX IF NOT EXISTS rule_counters_updated ON rule_counters (updated);
CREATE INDEX IF NOT EXISTS rule_counters_kind ON rule_counters (kind, packets);
CREATE TABLE IF NOT EXISTS rule_samples (
	agent_id TEXT NOT NULL,
	rule TEXT NOT NULL,
	action TEXT NOT NULL,
	log_only INTEGER NOT NULL,
	slot INTEGER NOT NULL,
	kind TEXT NOT NULL,
	minute INTEGER NOT NULL,
	packets INTEGER NOT NULL,
	bytes INTEGER NOT NULL,
	PRIMARY KEY (agent_id, rule, action, log_only, slot, kind, minute)
);
CREATE INDEX IF NOT EXISTS rule_samples_minute ON rule_samples (minute);
CREATE TABLE IF NOT EXISTS events (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	agent_id TEXT NOT NULL,
	ts INTEGER NOT NULL,
	kind TEXT NOT NULL,
	severity TEXT NOT NULL,
	path TEXT NOT NULL,
	op TEXT NOT NULL,
	process TEXT NOT NULL,
	pid INTEGER NOT NULL,
	uid INTEGER NOT NULL,
	detail TEXT NOT NULL,
	denied INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE INDEX IF NOT EXISTS events_agent ON events (agent_id, id);
`

// migrate moves counters and samples of databases made before counters
// had kinds: an old row is a drop (dry_run 0) or a would-drop (dry_run 1)
// of a drop rule in an unknown slot.
const migrate = `
INSERT OR IGNORE INTO rule_counters (agent_id, rule, action, log_only, slot, kind, packets, bytes, updated)
	SELECT agent_id, rule, 'drop', 0, 0, CASE dry_run WHEN 1 THEN 'would-drop' ELSE 'drop' END, packets, bytes, updated FROM counters;
INSERT OR IGNORE INTO rule_samples (agent_id, rule, action, log_only, slot, kind, minute, packets, bytes)
	SELECT agent_id, rule, 'drop', 0, 0, CASE dry_run WHEN 1 THEN 'would-drop' ELSE 'drop' END, minute, packets, bytes FROM samples;
DROP TABLE counters;
DROP TABLE samples;
`

// maxCount caps a stored counter (2^53, exact as a float): no sum of
// counters can overflow, whatever an agent sends.
const maxCount = 1 << 53

// SQLite is the embedded Storage.
type SQLite struct {
	w, r *sql.DB
	// MaxRules is how many distinct rule keys one agent may store
	// (DefaultMaxRules); deltas for new keys beyond it are refused and
	// counted in Batch.Refused. Set it before the first Apply.
	MaxRules int
	// MaxSampleRules is how many rule keys of one agent get a per-minute
	// sample in one minute (DefaultMaxSampleRules); totals count them all.
	MaxSampleRules int
	// mu serialises Apply so the caches match the database.
	mu    sync.Mutex
	cache applyCache
}

// applyCache is what Apply remembers of the database between calls: stream
// positions, rule rows per agent, sample rows per agent in the current
// minute. It is used only with SQLite.mu held.
type applyCache struct {
	pos   map[streamKey]uint64
	nrows map[string]int // rule_counters rows per agent
	nsamp map[string]minuteCount
}

func newApplyCache() applyCache {
	return applyCache{pos: map[streamKey]uint64{}, nrows: map[string]int{}, nsamp: map[string]minuteCount{}}
}

// reset forgets everything: after a rollback the caches may hold what the
// rollback undid.
func (c *applyCache) reset() {
	clear(c.pos)
	clear(c.nrows)
	clear(c.nsamp)
}

// minuteCount is how many sample rows an agent has in one minute.
type minuteCount struct {
	minute int64
	n      int
}

type streamKey struct {
	agent string
	epoch uint64
}

var _ Storage = (*SQLite)(nil)

// Open opens (creating if needed) the SQLite database at path, in WAL mode
// with one writer connection and a few readers.
func Open(path string) (*SQLite, error) {
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "synchronous(NORMAL)", "busy_timeout(10000)", "foreign_keys(1)"} {
		q.Add("_pragma", p)
	}
	dsn := "file:" + path + "?" + q.Encode()
	w, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	if _, err := w.Exec(schema); err != nil {
		w.Close()
		return nil, fmt.Errorf("create schema in %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", dsn)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	r.SetMaxOpenConns(4)
	var old int
	if err := w.QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE type='table' AND name='counters'`).Scan(&old); err == nil && old > 0 {
		if _, err := w.Exec(migrate); err != nil {
			w.Close()
			r.Close()
			return nil, fmt.Errorf("migrate counters in %s: %w", path, err)
		}
	}
	return &SQLite{w: w, r: r, MaxRules: DefaultMaxRules, MaxSampleRules: DefaultMaxSampleRules,
		cache: newApplyCache()}, nil
}

// Close closes the database.
func (s *SQLite) Close() error {
	return errors.Join(s.r.Close(), s.w.Close())
}

func ns(t time.Time) int64 { return t.UnixNano() }

func fromNS(v int64) time.Time { return time.Unix(0, v).UTC() }

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// UpsertAgent implements Storage.
func (s *SQLite) UpsertAgent(ctx context.Context, a Agent) error {
	caps, _ := json.Marshal(a.Capabilities)
	kern, _ := json.Marshal(a.Kernel)
	now := ns(a.LastSeen)
	_, err := s.w.ExecContext(ctx, `INSERT INTO agents (id, hostname, version, capabilities, kernel, epoch, first_seen, last_seen, connected)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)
		ON CONFLICT (id) DO UPDATE SET hostname=excluded.hostname, version=excluded.version,
			capabilities=excluded.capabilities, kernel=excluded.kernel, epoch=excluded.epoch,
			last_seen=excluded.last_seen, connected=1`,
		a.ID, a.Hostname, a.Version, string(caps), string(kern), int64(a.Epoch), now, now)
	if err != nil {
		return fmt.Errorf("upsert agent %s: %w", a.ID, err)
	}
	return nil
}

// SetStatus implements Storage.
func (s *SQLite) SetStatus(ctx context.Context, id string, st Status, seen time.Time) error {
	js, _ := json.Marshal(st)
	_, err := s.w.ExecContext(ctx, `UPDATE agents SET status=?, last_seen=? WHERE id=?`, string(js), ns(seen), id)
	if err != nil {
		return fmt.Errorf("set status %s: %w", id, err)
	}
	return nil
}

// SetConnected implements Storage.
func (s *SQLite) SetConnected(ctx context.Context, id string, connected bool, seen time.Time) error {
	_, err := s.w.ExecContext(ctx, `UPDATE agents SET connected=?, last_seen=? WHERE id=?`, b2i(connected), ns(seen), id)
	if err != nil {
		return fmt.Errorf("set connected %s: %w", id, err)
	}
	return nil
}

// Agents implements Storage.
func (s *SQLite) Agents(ctx context.Context) ([]Agent, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, hostname, version, capabilities, kernel, epoch, first_seen, last_seen, connected, status, events_lost FROM agents ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	defer rows.Close()
	var out []Agent
	for rows.Next() {
		var a Agent
		var caps, kern, status string
		var epoch, first, last, lost int64
		var conn int
		if err := rows.Scan(&a.ID, &a.Hostname, &a.Version, &caps, &kern, &epoch, &first, &last, &conn, &status, &lost); err != nil {
			return nil, fmt.Errorf("list agents: %w", err)
		}
		json.Unmarshal([]byte(caps), &a.Capabilities)
		json.Unmarshal([]byte(kern), &a.Kernel)
		json.Unmarshal([]byte(status), &a.Status)
		a.Epoch, a.FirstSeen, a.LastSeen, a.Connected, a.EventsLost = uint64(epoch), fromNS(first), fromNS(last), conn == 1, uint64(lost)
		out = append(out, a)
	}
	return out, rows.Err()
}

// Position implements Storage.
func (s *SQLite) Position(ctx context.Context, agentID string, epoch uint64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cache.position(ctx, s.w, streamKey{agentID, epoch})
}

type querier interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

func (c *applyCache) position(ctx context.Context, q querier, k streamKey) (uint64, error) {
	if p, ok := c.pos[k]; ok {
		return p, nil
	}
	var p int64
	err := q.QueryRowContext(ctx, `SELECT last_seq FROM streams WHERE agent_id=? AND epoch=?`, k.agent, int64(k.epoch)).Scan(&p)
	if errors.Is(err, sql.ErrNoRows) {
		err = nil
	}
	if err != nil {
		return 0, fmt.Errorf("stream position %s/%d: %w", k.agent, k.epoch, err)
	}
	c.pos[k] = uint64(p)
	return uint64(p), nil
}

// Apply implements Storage.
func (s *SQLite) Apply(ctx context.Context, batches []Batch) (applied []bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
			s.cache.reset()
		}
	}()
	prep := func(q string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var st *sql.Stmt
		st, err = tx.PrepareContext(ctx, q)
		return st
	}
	updStmt := prep(`UPDATE rule_counters SET packets=MIN(packets+?, 9007199254740992), bytes=MIN(bytes+?, 9007199254740992), updated=?
		WHERE agent_id=? AND rule=? AND action=? AND log_only=? AND slot=? AND kind=?`)
	insStmt := prep(`INSERT INTO rule_counters (agent_id, rule, action, log_only, slot, kind, packets, bytes, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	smpUpd := prep(`UPDATE rule_samples SET packets=MIN(packets+?, 9007199254740992), bytes=MIN(bytes+?, 9007199254740992)
		WHERE agent_id=? AND rule=? AND action=? AND log_only=? AND slot=? AND kind=? AND minute=?`)
	smpIns := prep(`INSERT INTO rule_samples (agent_id, rule, action, log_only, slot, kind, minute, packets, bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	evStmt := prep(`INSERT INTO events (agent_id, ts, kind, severity, path, op, process, pid, uid, detail, denied) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	posStmt := prep(`INSERT INTO streams (agent_id, epoch, last_seq, batches, updated) VALUES (?, ?, ?, 1, ?)
		ON CONFLICT (agent_id, epoch) DO UPDATE SET last_seq=excluded.last_seq, batches=batches+1, updated=excluded.updated`)
	lostStmt := prep(`UPDATE agents SET events_lost=events_lost+? WHERE id=?`)
	if err != nil {
		return nil, fmt.Errorf("apply: prepare: %w", err)
	}
	applied = make([]bool, len(batches))
	for i, b := range batches {
		k := streamKey{b.AgentID, b.Epoch}
		var p uint64
		if p, err = s.cache.position(ctx, tx, k); err != nil {
			return nil, err
		}
		if b.Seq <= p {
			continue
		}
		t := b.Time
		if t.IsZero() {
			t = time.Now()
		}
		minute := t.Truncate(time.Minute).Unix()
		batches[i].Refused = 0
		stored := b.Counters[:0:0]
		for _, c := range b.Counters {
			k := c.RuleKey
			c.Packets, c.Bytes = min(c.Packets, maxCount), min(c.Bytes, maxCount)
			var res sql.Result
			if res, err = updStmt.ExecContext(ctx, int64(c.Packets), int64(c.Bytes), ns(t), b.AgentID, k.Rule, k.Action, b2i(k.LogOnly), int64(k.Slot), k.Kind); err != nil {
				return nil, fmt.Errorf("apply counters %s: %w", b.AgentID, err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				var rows int
				if rows, err = s.cache.rowCount(ctx, tx, b.AgentID); err != nil {
					return nil, err
				}
				if rows >= s.MaxRules {
					batches[i].Refused++
					continue
				}
				if _, err = insStmt.ExecContext(ctx, b.AgentID, k.Rule, k.Action, b2i(k.LogOnly), int64(k.Slot), k.Kind, int64(c.Packets), int64(c.Bytes), ns(t)); err != nil {
					return nil, fmt.Errorf("apply counters %s: %w", b.AgentID, err)
				}
				s.cache.nrows[b.AgentID] = rows + 1
			}
			if err = s.cache.sample(ctx, smpUpd, smpIns, b.AgentID, k, minute, c, s.MaxSampleRules); err != nil {
				return nil, err
			}
			stored = append(stored, c)
		}
		batches[i].Counters = stored
		for j := range b.Events {
			e := &b.Events[j]
			var res sql.Result
			res, err = evStmt.ExecContext(ctx, b.AgentID, ns(e.Time), e.Kind, e.Severity, e.Path, e.Op, e.Process, int64(e.PID), int64(e.UID), e.Detail, b2i(e.Denied))
			if err != nil {
				return nil, fmt.Errorf("apply events %s: %w", b.AgentID, err)
			}
			e.ID, _ = res.LastInsertId()
			e.AgentID = b.AgentID
		}
		if b.Dropped > 0 {
			if _, err = lostStmt.ExecContext(ctx, int64(b.Dropped), b.AgentID); err != nil {
				return nil, fmt.Errorf("apply dropped %s: %w", b.AgentID, err)
			}
		}
		if _, err = posStmt.ExecContext(ctx, b.AgentID, int64(b.Epoch), int64(b.Seq), ns(t)); err != nil {
			return nil, fmt.Errorf("apply position %s: %w", b.AgentID, err)
		}
		s.cache.pos[k] = b.Seq
		applied[i] = true
	}
	if err = tx.Commit(); err != nil {
		return nil, fmt.Errorf("apply: commit: %w", err)
	}
	return applied, nil
}

// sample adds a delta to its per-minute sample; a new sample row only
// while the agent has fewer than maxRules in that minute.
func (ac *applyCache) sample(ctx context.Context, upd, ins *sql.Stmt, agent string, k RuleKey, minute int64, c CounterDelta, maxRules int) error {
	res, err := upd.ExecContext(ctx, int64(c.Packets), int64(c.Bytes), agent, k.Rule, k.Action, b2i(k.LogOnly), int64(k.Slot), k.Kind, minute)
	if err != nil {
		return fmt.Errorf("apply samples %s: %w", agent, err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		return nil
	}
	mc := ac.nsamp[agent]
	if mc.minute != minute {
		mc = minuteCount{minute: minute}
	}
	if mc.n >= maxRules {
		return nil
	}
	if _, err := ins.ExecContext(ctx, agent, k.Rule, k.Action, b2i(k.LogOnly), int64(k.Slot), k.Kind, minute, int64(c.Packets), int64(c.Bytes)); err != nil {
		return fmt.Errorf("apply samples %s: %w", agent, err)
	}
	mc.n++
	ac.nsamp[agent] = mc
	return nil
}

// counterWhere is the WHERE clause of q's agent, filter and kind.
func counterWhere(q CounterQuery) (string, []any) {
	var where []string
	var args []any
	if q.AgentID != "" {
		where = append(where, "agent_id = ?")
		args = append(args, q.AgentID)
	}
	if q.Filter != "" {
		where = append(where, "instr(rule, ?) > 0")
		args = append(args, q.Filter)
	}
	if q.Kind != "" {
		where = append(where, "kind = ?")
		args = append(args, q.Kind)
	}
	if len(where) == 0 {
		return "", nil
	}
	return "WHERE " + strings.Join(where, " AND "), args
}

// rowCount is the number of rule_counters rows of agent.
func (c *applyCache) rowCount(ctx context.Context, q querier, agent string) (int, error) {
	if n, ok := c.nrows[agent]; ok {
		return n, nil
	}
	var n int
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM rule_counters WHERE agent_id=?`, agent).Scan(&n); err != nil {
		return 0, fmt.Errorf("count rules of %s: %w", agent, err)
	}
	c.nrows[agent] = n
	return n, nil
}

// Counters implements Storage.
func (s *SQLite) Counters(ctx context.Context, q CounterQuery) ([]CounterTotal, error) {
	cond, args := counterWhere(q)
	var sqlq string
	if q.Fleet {
		sqlq = `SELECT '', rule, action, log_only, 0, kind, CAST(TOTAL(packets) AS INTEGER), CAST(TOTAL(bytes) AS INTEGER), COUNT(DISTINCT agent_id), MAX(updated) FROM rule_counters ` + cond +
			` GROUP BY rule, action, log_only, kind ORDER BY TOTAL(packets) DESC, rule, action, kind`
	} else {
		sqlq = `SELECT agent_id, rule, action, log_only, slot, kind, packets, bytes, 1, updated FROM rule_counters ` + cond +
			` ORDER BY packets DESC, agent_id, rule, action, kind, slot`
	}
	limit := q.Limit
	if limit <= 0 || limit > MaxPage {
		limit = MaxPage
	}
	sqlq += fmt.Sprintf(" LIMIT %d OFFSET %d", limit, max(q.Offset, 0))
	rows, err := s.r.QueryContext(ctx, sqlq, args...)
	if err != nil {
		return nil, fmt.Errorf("query counters: %w", err)
	}
	defer rows.Close()
	var out []CounterTotal
	for rows.Next() {
		var c CounterTotal
		var logOnly int
		var slot, pk, by, upd int64
		if err := rows.Scan(&c.AgentID, &c.Rule, &c.Action, &logOnly, &slot, &c.Kind, &pk, &by, &c.Agents, &upd); err != nil {
			return nil, fmt.Errorf("query counters: %w", err)
		}
		c.LogOnly, c.Slot, c.Packets, c.Bytes, c.Updated = logOnly == 1, uint32(slot), uint64(pk), uint64(by), fromNS(upd)
		c.DryRun = c.Kind == KindWouldDrop
		if !q.Fleet {
			c.Agents = 0
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// KindTotals implements Storage.
func (s *SQLite) KindTotals(ctx context.Context, q CounterQuery) ([]KindTotal, error) {
	cond, args := counterWhere(q)
	rows, err := s.r.QueryContext(ctx, `SELECT agent_id, kind, CAST(TOTAL(packets) AS INTEGER), CAST(TOTAL(bytes) AS INTEGER) FROM rule_counters `+cond+
		` GROUP BY agent_id, kind ORDER BY agent_id, kind`, args...)
	if err != nil {
		return nil, fmt.Errorf("query kind totals: %w", err)
	}
	defer rows.Close()
	var out []KindTotal
	for rows.Next() {
		var k KindTotal
		var pk, by int64
		if err := rows.Scan(&k.AgentID, &k.Kind, &pk, &by); err != nil {
			return nil, fmt.Errorf("query kind totals: %w", err)
		}
		k.Packets, k.Bytes = uint64(pk), uint64(by)
		out = append(out, k)
	}
	return out, rows.Err()
}

// Series implements Storage.
func (s *SQLite) Series(ctx context.Context, agentID, rule, kind string, since time.Time) ([]Sample, error) {
	q := `SELECT minute, CAST(TOTAL(packets) AS INTEGER), CAST(TOTAL(bytes) AS INTEGER) FROM rule_samples WHERE rule=? AND kind=? AND minute>=?`
	args := []any{rule, kind, since.Truncate(time.Minute).Unix()}
	if agentID != "" {
		q += ` AND agent_id=?`
		args = append(args, agentID)
	}
	rows, err := s.r.QueryContext(ctx, q+` GROUP BY minute ORDER BY minute`, args...)
	if err != nil {
		return nil, fmt.Errorf("query series: %w", err)
	}
	defer rows.Close()
	var out []Sample
	for rows.Next() {
		var m, pk, by int64
		if err := rows.Scan(&m, &pk, &by); err != nil {
			return nil, fmt.Errorf("query series: %w", err)
		}
		out = append(out, Sample{Minute: time.Unix(m, 0).UTC(), Packets: uint64(pk), Bytes: uint64(by)})
	}
	return out, rows.Err()
}

// Events implements Storage.
func (s *SQLite) Events(ctx context.Context, q EventQuery) ([]Event, error) {
	where := []string{"id > ?"}
	args := []any{q.AfterID}
	if q.AgentID != "" {
		where = append(where, "agent_id = ?")
		args = append(args, q.AgentID)
	}
	if q.Kind != "" {
		where = append(where, "kind = ?")
		args = append(args, q.Kind)
	}
	limit := q.Limit
	if limit <= 0 || limit > 10000 {
		limit = 10000
	}
	rows, err := s.r.QueryContext(ctx, `SELECT id, agent_id, ts, kind, severity, path, op, process, pid, uid, detail, denied FROM events WHERE `+
		strings.Join(where, " AND ")+fmt.Sprintf(` ORDER BY id DESC LIMIT %d`, limit), args...)
	if err != nil {
		return nil, fmt.Errorf("query events: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var ts, pid, uid int64
		var denied int
		if err := rows.Scan(&e.ID, &e.AgentID, &ts, &e.Kind, &e.Severity, &e.Path, &e.Op, &e.Process, &pid, &uid, &e.Detail, &denied); err != nil {
			return nil, fmt.Errorf("query events: %w", err)
		}
		e.Time, e.PID, e.UID, e.Denied = fromNS(ts), uint32(pid), uint32(uid), denied == 1
		out = append(out, e)
	}
	return out, rows.Err()
}

// Totals implements Storage.
func (s *SQLite) Totals(ctx context.Context) (Totals, error) {
	var t Totals
	var ev, bt int64
	err := s.r.QueryRowContext(ctx, `SELECT COALESCE((SELECT MAX(id) FROM events), 0), COALESCE((SELECT SUM(batches) FROM streams), 0)`).Scan(&ev, &bt)
	if err != nil {
		return t, fmt.Errorf("totals: %w", err)
	}
	t.Events, t.Batches = uint64(ev), uint64(bt)
	rows, err := s.r.QueryContext(ctx, `SELECT kind, CAST(TOTAL(packets) AS INTEGER), CAST(TOTAL(bytes) AS INTEGER) FROM rule_counters GROUP BY kind`)
	if err != nil {
		return t, fmt.Errorf("totals: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var kind string
		var pk, by int64
		if err := rows.Scan(&kind, &pk, &by); err != nil {
			return t, fmt.Errorf("totals: %w", err)
		}
		switch kind {
		case KindDrop:
			t.Packets, t.Bytes = uint64(pk), uint64(by)
		case KindWouldDrop:
			t.DryPackets, t.DryBytes = uint64(pk), uint64(by)
		case KindAllow:
			t.AllowPackets, t.AllowBytes = uint64(pk), uint64(by)
		}
	}
	return t, rows.Err()
}

// Prune implements Storage.
func (s *SQLite) Prune(ctx context.Context, r Retention, now time.Time) error {
	if r.EventAge > 0 {
		if _, err := s.w.ExecContext(ctx, `DELETE FROM events WHERE ts < ?`, ns(now.Add(-r.EventAge))); err != nil {
			return fmt.Errorf("prune events by age: %w", err)
		}
	}
	if r.MaxEvents > 0 {
		if _, err := s.w.ExecContext(ctx, `DELETE FROM events WHERE id <= (SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?)`, r.MaxEvents); err != nil {
			return fmt.Errorf("prune events by count: %w", err)
		}
	}
	if r.MaxEventsPerAgent > 0 {
		if _, err := s.w.ExecContext(ctx, `DELETE FROM events WHERE id IN (SELECT id FROM
			(SELECT id, ROW_NUMBER() OVER (PARTITION BY agent_id ORDER BY id DESC) AS n FROM events) WHERE n > ?)`, r.MaxEventsPerAgent); err != nil {
			return fmt.Errorf("prune events by agent: %w", err)
		}
	}
	if r.SampleAge > 0 {
		if _, err := s.w.ExecContext(ctx, `DELETE FROM rule_samples WHERE minute < ?`, now.Add(-r.SampleAge).Truncate(time.Minute).Unix()); err != nil {
			return fmt.Errorf("prune samples: %w", err)
		}
	}
	if r.CounterAge > 0 {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, err := s.w.ExecContext(ctx, `DELETE FROM rule_counters WHERE updated < ?`, ns(now.Add(-r.CounterAge))); err != nil {
			return fmt.Errorf("prune counters: %w", err)
		}
		clear(s.cache.nrows)
	}
	return nil
}
