package auditlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/carverauto/fortress/internal/statedir"
)

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("audit log closed")

// Log appends records to one audit log file.
type Log struct {
	path  string
	actor string
	now   func() time.Time

	mu     sync.Mutex
	f      *os.File
	c      chain // state up to the end of the log as last seen
	broken error // set by a failed write; Append refuses afterwards
}

// Option configures Open.
type Option func(*Log)

// WithActor sets the actor recorded when a Record leaves Actor empty. The
// default is "<program>[<pid>]".
func WithActor(actor string) Option { return func(l *Log) { l.actor = actor } }

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(l *Log) { l.now = now } }

// Open opens the audit log at path for appending, creating it (mode 0600,
// parent directories 0700) when missing. It verifies the existing log and
// its head file first, refuses to append to a log that fails verification,
// and resumes the chain from the last record.
func Open(path string, opts ...Option) (*Log, error) {
	l := &Log{
		path:  path,
		actor: fmt.Sprintf("%s[%d]", filepath.Base(os.Args[0]), os.Getpid()),
		now:   time.Now,
	}
	for _, o := range opts {
		o(l)
	}

	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	created := true
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if errors.Is(err, fs.ErrExist) {
		created = false
		f, err = os.OpenFile(path, os.O_RDWR|os.O_APPEND|unix.O_NOFOLLOW, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	if created {
		// Make the new file's directory entry durable before the first
		// record relies on it.
		if err := errors.Join(f.Sync(), statedir.SyncDir(dir)); err != nil {
			f.Close()
			return nil, fmt.Errorf("open audit log %s: sync: %w", path, err)
		}
	}
	l.f = f

	if err := l.resume(); err != nil {
		f.Close()
		return nil, err
	}
	return l, nil
}

// resume verifies the whole log under an exclusive lock and loads the
// chain state, repairing a head left one record behind by a crash.
func (l *Log) resume() error {
	if err := flock(nil, l.f, unix.LOCK_EX); err != nil {
		return fmt.Errorf("open audit log %s: %w", l.path, err)
	}
	defer unlock(l.f)

	s, c, err := verifyLocked(l.path, l.f)
	if err != nil {
		return fmt.Errorf("open audit log %s: refusing to append to a log that fails verification: %w", l.path, err)
	}
	l.c = c

	_, headErr := os.Lstat(l.path + HeadSuffix)
	if s.HeadPending || errors.Is(headErr, fs.ErrNotExist) {
		if err := writeHead(l.path, Head{Seq: c.seq, Hash: c.hash}); err != nil {
			return fmt.Errorf("open audit log %s: %w", l.path, err)
		}
	}
	// The exclusive lock is held, so no writer is using a head temporary.
	statedir.RemoveTemps(l.path + HeadSuffix)
	return nil
}

// Path returns the log's file name.
func (l *Log) Path() string { return l.path }

// Last returns the seq and hash of the last record this Log has seen.
func (l *Log) Last() (seq uint64, hash string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.c.seq, l.c.hash
}

// Append adds r to the log. It sets r's Seq, Time, Prev and Hash (any values
// given are replaced) and Actor when empty; Action and Outcome are required.
// The record is on disk (fsynced) and the head file updated when Append
// returns nil. ctx bounds the wait for other writers' lock.
func (l *Log) Append(ctx context.Context, r Record) error {
	if r.Action == "" {
		return fmt.Errorf("append audit record: empty action")
	}
	if r.Outcome == "" {
		return fmt.Errorf("append audit record %s %s: empty outcome (use auditlog.Outcome(err))", r.Action, r.Object)
	}
	details, err := normalizeDetails(r.Details)
	if err != nil {
		return fmt.Errorf("append audit record %s %s: details: %w", r.Action, r.Object, err)
	}
	if r.Actor == "" {
		r.Actor = l.actor
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return ErrClosed
	}
	if l.broken != nil {
		return fmt.Errorf("append audit log %s: log unusable after an earlier failure, reopen it: %w", l.path, l.broken)
	}
	if err := flock(ctx, l.f, unix.LOCK_EX); err != nil {
		return fmt.Errorf("append audit log %s: %w", l.path, err)
	}
	defer unlock(l.f)

	if err := l.catchUp(); err != nil {
		l.broken = err
		return fmt.Errorf("append audit log %s: %w", l.path, err)
	}

	b := body{
		Seq:     l.c.seq + 1,
		Time:    formatTime(l.now()),
		Actor:   r.Actor,
		Action:  r.Action,
		Object:  r.Object,
		Outcome: r.Outcome,
		Details: details,
		Prev:    l.c.prev,
	}
	hash, line, err := seal(&b)
	if err != nil {
		return fmt.Errorf("append audit record %s %s: encode: %w", r.Action, r.Object, err)
	}
	if len(line) > MaxLineSize {
		return fmt.Errorf("append audit record %s %s: record is %d bytes, limit %d", r.Action, r.Object, len(line), MaxLineSize)
	}

	// One write(2) of the whole line on an O_APPEND descriptor.
	line = append(line, '\n')
	if _, err := l.f.Write(line); err != nil {
		l.broken = err
		return fmt.Errorf("append audit log %s: write: %w", l.path, err)
	}
	if err := l.f.Sync(); err != nil {
		l.broken = err
		return fmt.Errorf("append audit log %s: sync: %w", l.path, err)
	}
	if _, cerr := l.c.next(line[:len(line)-1]); cerr != nil {
		// Cannot happen: the line was built by seal from the chain state.
		l.broken = cerr
		return fmt.Errorf("append audit log %s: %w", l.path, cerr)
	}
	if err := writeHead(l.path, Head{Seq: l.c.seq, Hash: hash}); err != nil {
		// The record is durable but the head is behind: Verify accepts
		// one record of lag and the next Open repairs it. Stop here so the
		// lag never grows.
		l.broken = err
		return fmt.Errorf("append audit log %s: %w", l.path, err)
	}
	return nil
}

// catchUp reads records other writers appended since this Log last looked.
// The caller holds the file lock.
func (l *Log) catchUp() error {
	st, err := l.f.Stat()
	if err != nil {
		return err
	}
	if cur, err := os.Lstat(l.path); err != nil || !os.SameFile(st, cur) {
		return fmt.Errorf("log file was replaced or removed since it was opened")
	}
	switch size := st.Size(); {
	case size == l.c.size:
		return nil
	case size < l.c.size:
		return &ChainError{Path: l.path, Line: l.c.line, Problem: ProblemTruncated,
			Detail: fmt.Sprintf("log shrank from %d to %d bytes while open", l.c.size, size)}
	default:
		c := l.c
		if cerr := c.consume(io.NewSectionReader(l.f, c.size, size-c.size), nil); cerr != nil {
			cerr.Path = l.path
			return cerr
		}
		l.c = c
		return nil
	}
}

// Close closes the log file. Appends after Close return ErrClosed.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// writeHead replaces the head file atomically and durably.
func writeHead(logPath string, h Head) error {
	raw, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if err := statedir.WriteFile(logPath+HeadSuffix, append(raw, '\n'), 0o600); err != nil {
		return fmt.Errorf("write head: %w", err)
	}
	return nil
}

// flock takes a flock(2) lock of kind how on f. With a nil ctx it blocks;
// otherwise it polls so that ctx can end the wait.
func flock(ctx context.Context, f *os.File, how int) error {
	fd := int(f.Fd())
	if ctx == nil {
		for {
			err := unix.Flock(fd, how)
			if !errors.Is(err, unix.EINTR) {
				if err != nil {
					return fmt.Errorf("flock: %w", err)
				}
				return nil
			}
		}
	}
	wait := time.Millisecond
	for {
		err := unix.Flock(fd, how|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("flock: %w", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("wait for lock: %w", ctx.Err())
		case <-t.C:
		}
		wait = min(wait*2, 50*time.Millisecond)
	}
}

func unlock(f *os.File) { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN) }
