package auditlog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// writeLog opens a log in a temporary directory and appends n records.
func writeLog(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit", "fortress-audit.log")
	l, err := Open(path, WithActor("test[1]"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer l.Close()
	for i := 1; i <= n; i++ {
		err := l.Append(context.Background(), Record{
			Action:  ActionAttach,
			Object:  fmt.Sprintf("xdp_shield@veth%d", i),
			Outcome: OutcomeOK,
			Details: map[string]any{"ifindex": i, "mode": "native", "flags": []string{"a", "<b>"}},
		})
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
	return path
}

func readLines(t *testing.T, path string) [][]byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(raw, []byte("\n"))
	if len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	return lines
}

func writeLines(t *testing.T, path string, lines [][]byte) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

// wantChainError asserts err is a *ChainError at line with problem p.
func wantChainError(t *testing.T, err error, line int, p Problem) {
	t.Helper()
	var ce *ChainError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want a ChainError at line %d (%s)", err, line, p)
	}
	if ce.Line != line || ce.Problem != p {
		t.Fatalf("got line %d %q (%v), want line %d %q", ce.Line, ce.Problem, err, line, p)
	}
	if line > 0 && !strings.Contains(err.Error(), fmt.Sprintf("line %d", line)) {
		t.Errorf("message %q does not name line %d", err, line)
	}
}

func TestIntactChain(t *testing.T) {
	path := writeLog(t, 5)
	s, err := VerifyFile(path)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if s.Records != 5 || s.Head.Seq != 5 || s.Head.Hash != s.LastHash || s.HeadPending {
		t.Errorf("summary = %+v", s)
	}

	lines := readLines(t, path)
	var prev = ZeroHash
	for i, line := range lines {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if m["seq"].(float64) != float64(i+1) || m["prev"] != prev || m["actor"] != "test[1]" {
			t.Errorf("line %d: %s", i+1, line)
		}
		ts, err := time.Parse(time.RFC3339Nano, m["time"].(string))
		if err != nil || ts.Location() != time.UTC {
			t.Errorf("line %d: time %v %v", i+1, m["time"], err)
		}
		sum := sha256.Sum256(bytes.TrimSuffix(line, []byte("\n")))
		prev = hex.EncodeToString(sum[:])
	}
	// HTML characters are not escaped: the canonical form is Go's with
	// SetEscapeHTML(false).
	if !bytes.Contains(lines[0], []byte(`"<b>"`)) {
		t.Errorf("line 1 = %s", lines[0])
	}

	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("log mode = %v, %v", fi.Mode(), err)
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("dir mode = %v, %v", di.Mode(), err)
	}
}

// TestCanonicalEncoding pins the documented format: a verifier written in
// another language must be able to recompute these bytes.
func TestCanonicalEncoding(t *testing.T) {
	b := body{
		Seq: 1, Time: "2026-01-02T03:04:05.5Z", Actor: "a", Action: "policy_swap", Object: "shield",
		Outcome: "ok", Details: map[string]any{"z": json.Number("1"), "a": map[string]any{"y": "<&>", "b": true}},
		Prev: ZeroHash,
	}
	hash, line, err := seal(&b)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"seq":1,"time":"2026-01-02T03:04:05.5Z","actor":"a","action":"policy_swap","object":"shield","outcome":"ok","details":{"a":{"b":true,"y":"<&>"},"z":1},"prev":"` + ZeroHash + `"}`
	sum := sha256.Sum256([]byte(want))
	if hash != hex.EncodeToString(sum[:]) {
		t.Errorf("hash is not SHA-256 of %s", want)
	}
	wantLine := want[:len(want)-1] + `,"hash":"` + hash + `"}`
	if string(line) != wantLine {
		t.Errorf("line =\n%s\nwant\n%s", line, wantLine)
	}
}

func TestDetailsRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	details := map[string]any{
		"big":    uint64(1) << 63,
		"float":  1.5,
		"neg":    -7,
		"nested": map[string]any{"k": []any{1, "two", nil, 3.25e-10}},
		"digest": "sha256:abc",
		"bad":    "\xff",
	}
	if err := l.Append(context.Background(), Record{Action: ActionPolicySwap, Object: "shield", Outcome: OutcomeOK, Details: details}); err != nil {
		t.Fatal(err)
	}
	if err := Verify(path); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !bytes.Contains(readLines(t, path)[0], []byte(`"big":9223372036854775808`)) {
		t.Errorf("large integer not kept exactly: %s", readLines(t, path)[0])
	}
	f, _ := os.Open(path)
	defer f.Close()
	recs, err := Records(f)
	if err != nil || len(recs) != 1 || recs[0].Action != ActionPolicySwap || recs[0].Time.IsZero() {
		t.Fatalf("Records = %+v, %v", recs, err)
	}
}

func TestAppendValidates(t *testing.T) {
	l, err := Open(filepath.Join(t.TempDir(), "a.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	if err := l.Append(ctx, Record{Object: "x", Outcome: OutcomeOK}); err == nil {
		t.Error("empty action accepted")
	}
	if err := l.Append(ctx, Record{Action: ActionLoad, Object: "x"}); err == nil {
		t.Error("empty outcome accepted")
	}
	if err := l.Append(ctx, Record{Action: ActionLoad, Outcome: "ok", Details: map[string]any{"c": make(chan int)}}); err == nil {
		t.Error("unencodable details accepted")
	}
	if err := l.Append(ctx, Record{Action: ActionLoad, Outcome: Outcome(errors.New("EPERM"))}); err != nil {
		t.Fatal(err)
	}
	if seq, _ := l.Last(); seq != 1 {
		t.Errorf("seq = %d after rejected records, want 1", seq)
	}
	l.Close()
	if err := l.Append(ctx, Record{Action: ActionLoad, Outcome: "ok"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close = %v", err)
	}
}

func TestTampering(t *testing.T) {
	const n = 6
	tests := []struct {
		name    string
		tamper  func(t *testing.T, path string, lines [][]byte) [][]byte
		line    int
		problem Problem
	}{
		{
			name: "edited line",
			tamper: func(t *testing.T, _ string, lines [][]byte) [][]byte {
				lines[2] = bytes.Replace(lines[2], []byte(`"outcome":"ok"`), []byte(`"outcome":"no"`), 1)
				return lines
			},
			line: 3, problem: ProblemHash,
		},
		{
			name: "whitespace added",
			tamper: func(t *testing.T, _ string, lines [][]byte) [][]byte {
				lines[1] = bytes.Replace(lines[1], []byte(`"seq":2,`), []byte(`"seq": 2,`), 1)
				return lines
			},
			line: 2, problem: ProblemCanonical,
		},
		{
			name: "deleted middle line",
			tamper: func(t *testing.T, _ string, lines [][]byte) [][]byte {
				return append(lines[:3:3], lines[4:]...)
			},
			line: 4, problem: ProblemSeq,
		},
		{
			name: "deleted last line",
			tamper: func(t *testing.T, _ string, lines [][]byte) [][]byte {
				return lines[:n-1]
			},
			line: n, problem: ProblemTruncated,
		},
		{
			name: "deleted last three lines",
			tamper: func(t *testing.T, _ string, lines [][]byte) [][]byte {
				return lines[:n-3]
			},
			line: n - 2, problem: ProblemTruncated,
		},
		{
			name: "emptied",
			tamper: func(t *testing.T, _ string, lines [][]byte) [][]byte {
				return nil
			},
			line: 1, problem: ProblemTruncated,
		},
		{
			name: "swapped lines",
			tamper: func(t *testing.T, _ string, lines [][]byte) [][]byte {
				lines[1], lines[2] = lines[2], lines[1]
				return lines
			},
			line: 2, problem: ProblemSeq,
		},
		{
			name: "partial last line",
			tamper: func(t *testing.T, _ string, lines [][]byte) [][]byte {
				lines[n-1] = lines[n-1][:len(lines[n-1])/2]
				return lines
			},
			line: n, problem: ProblemTornLine,
		},
		{
			name: "last newline removed",
			tamper: func(t *testing.T, _ string, lines [][]byte) [][]byte {
				lines[n-1] = bytes.TrimSuffix(lines[n-1], []byte("\n"))
				return lines
			},
			line: n, problem: ProblemTornLine,
		},
		{
			name: "garbage line",
			tamper: func(t *testing.T, _ string, lines [][]byte) [][]byte {
				lines[0] = []byte("not json\n")
				return lines
			},
			line: 1, problem: ProblemJSON,
		},
		{
			name: "unknown field",
			tamper: func(t *testing.T, _ string, lines [][]byte) [][]byte {
				lines[0] = bytes.Replace(lines[0], []byte(`{"seq"`), []byte(`{"x":1,"seq"`), 1)
				return lines
			},
			line: 1, problem: ProblemJSON,
		},
		{
			name: "forged edit with recomputed hash",
			tamper: func(t *testing.T, _ string, lines [][]byte) [][]byte {
				lines[2] = forge(t, lines[2], func(w *wire) { w.Outcome = "forged" })
				return lines
			},
			line: 4, problem: ProblemPrev,
		},
		{
			name: "forged last line with recomputed hash",
			tamper: func(t *testing.T, _ string, lines [][]byte) [][]byte {
				lines[n-1] = forge(t, lines[n-1], func(w *wire) { w.Outcome = "forged" })
				return lines
			},
			line: n, problem: ProblemHead,
		},
		{
			name: "forged truncation with rewritten tail",
			tamper: func(t *testing.T, _ string, lines [][]byte) [][]byte {
				// Drop the last record, re-forge the new last one: the
				// chain is valid, only the head can tell.
				lines = lines[:n-1]
				lines[n-2] = forge(t, lines[n-2], func(w *wire) { w.Outcome = "forged" })
				return lines
			},
			line: n, problem: ProblemTruncated,
		},
		{
			name: "head removed",
			tamper: func(t *testing.T, path string, lines [][]byte) [][]byte {
				if err := os.Remove(path + HeadSuffix); err != nil {
					t.Fatal(err)
				}
				return lines
			},
			line: 0, problem: ProblemHeadMissing,
		},
		{
			name: "record appended by hand",
			tamper: func(t *testing.T, _ string, lines [][]byte) [][]byte {
				// A valid extra record, then another: two past the head
				// cannot be a crash.
				for range 2 {
					last := bytes.TrimSuffix(lines[len(lines)-1], []byte("\n"))
					w, err := parseLine(last)
					if err != nil {
						t.Fatal(err)
					}
					b := w.body
					b.Seq++
					b.Prev = lineDigest(last)
					_, line, err := seal(&b)
					if err != nil {
						t.Fatal(err)
					}
					lines = append(lines, append(line, '\n'))
				}
				return lines
			},
			line: n + 2, problem: ProblemHead,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeLog(t, n)
			writeLines(t, path, tt.tamper(t, path, readLines(t, path)))
			err := Verify(path)
			t.Log(err)
			wantChainError(t, err, tt.line, tt.problem)

			// And no writer appends to it.
			if l, err := Open(path); err == nil {
				l.Close()
				t.Fatal("Open accepted a log that fails verification")
			} else if !strings.Contains(err.Error(), "refusing to append") {
				t.Errorf("Open error = %v", err)
			}
		})
	}
}

// forge rewrites a line as an attacker would: edit, then recompute the hash.
func forge(t *testing.T, line []byte, edit func(*wire)) []byte {
	t.Helper()
	w, err := parseLine(bytes.TrimSuffix(line, []byte("\n")))
	if err != nil {
		t.Fatal(err)
	}
	edit(w)
	_, out, err := seal(&w.body)
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

func TestVerifyReaderWithoutHead(t *testing.T) {
	path := writeLog(t, 4)
	lines := readLines(t, path)
	// Without the head, truncation is invisible: documented limitation.
	s, err := VerifyReader(bytes.NewReader(bytes.Join(lines[:3], nil)), nil)
	if err != nil || s.Records != 3 {
		t.Fatalf("VerifyReader = %+v, %v", s, err)
	}
	head, err := ReadHead(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = VerifyReader(bytes.NewReader(bytes.Join(lines[:3], nil)), &head)
	wantChainError(t, err, 4, ProblemTruncated)
}

func TestHeadOneBehindIsRepaired(t *testing.T) {
	path := writeLog(t, 3)
	// Simulate a crash after the fourth record's fsync, before its head
	// update: the head still names record 3.
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	oldHead, _ := os.ReadFile(path + HeadSuffix)
	if err := l.Append(context.Background(), Record{Action: ActionDetach, Object: "x", Outcome: OutcomeOK}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if err := os.WriteFile(path+HeadSuffix, oldHead, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := VerifyFile(path)
	if err != nil || !s.HeadPending || s.Records != 4 {
		t.Fatalf("VerifyFile = %+v, %v; want 4 records, head pending", s, err)
	}
	l, err = Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	l.Close()
	s, err = VerifyFile(path)
	if err != nil || s.HeadPending || s.Head.Seq != 4 {
		t.Fatalf("after Open: %+v, %v; want head repaired", s, err)
	}
}

func TestReopenResumesChain(t *testing.T) {
	path := writeLog(t, 3)
	l, err := Open(path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if seq, _ := l.Last(); seq != 3 {
		t.Fatalf("resumed at seq %d, want 3", seq)
	}
	for range 2 {
		if err := l.Append(context.Background(), Record{Action: ActionUnpin, Object: "/sys/fs/bpf/x", Outcome: OutcomeOK}); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	s, err := VerifyFile(path)
	if err != nil || s.Records != 5 {
		t.Fatalf("VerifyFile = %+v, %v", s, err)
	}
}

func TestFreshLogAndStaleHead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	s, err := VerifyFile(path)
	if err != nil || s.Records != 0 || s.LastHash != ZeroHash {
		t.Fatalf("empty log: %+v, %v", s, err)
	}
	if _, err := os.Stat(path + HeadSuffix); err != nil {
		t.Errorf("no head file for a new log: %v", err)
	}
	if err := Verify(filepath.Join(dir, "missing.log")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Verify(missing) = %v", err)
	}

	// Deleting the whole log but not its head is truncation too.
	path = writeLog(t, 2)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); err == nil {
		t.Fatal("Open accepted a deleted log whose head remains")
	} else {
		wantChainError(t, err, 1, ProblemTruncated)
	}
}

func TestSymlinkRefused(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "a.log")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if l, err := Open(link); err == nil {
		l.Close()
		t.Fatal("Open followed a symlink")
	}
}

func TestConcurrentAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.log")
	// Two Logs on one file behave like two processes: separate open file
	// descriptions, serialised only by flock.
	a, err := Open(path, WithActor("a"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(path, WithActor("b"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	const goroutines, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*each)
	for g := range goroutines {
		l := a
		if g%2 == 1 {
			l = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				errs <- l.Append(context.Background(), Record{
					Action: ActionMapUpdate, Object: "shield_rules", Outcome: OutcomeOK,
					Details: map[string]any{"g": g, "i": i},
				})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	s, err := VerifyFile(path)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if s.Records != goroutines*each {
		t.Errorf("records = %d, want %d", s.Records, goroutines*each)
	}
	f, _ := os.Open(path)
	defer f.Close()
	recs, err := Records(f)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range recs {
		key := fmt.Sprint(r.Details["g"], "/", r.Details["i"])
		if seen[key] {
			t.Errorf("record %s written twice", key)
		}
		seen[key] = true
	}
}

func TestAppendWaitHonoursContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// Another "process" holds the lock.
	other, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := flock(nil, other, 2 /* LOCK_EX */); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err = l.Append(ctx, Record{Action: ActionLoad, Object: "x", Outcome: OutcomeOK})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Append under a held lock = %v, want deadline exceeded", err)
	}
	unlock(other)
	if err := l.Append(context.Background(), Record{Action: ActionLoad, Object: "x", Outcome: OutcomeOK}); err != nil {
		t.Fatalf("Append after release: %v", err)
	}
}

func TestForeignTruncationWhileOpen(t *testing.T) {
	path := writeLog(t, 3)
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	lines := readLines(t, path)
	writeLines(t, path, lines[:2])
	err = l.Append(context.Background(), Record{Action: ActionLoad, Object: "x", Outcome: OutcomeOK})
	if err == nil {
		t.Fatal("Append continued a log truncated under it")
	}
	// The Log stays unusable.
	if err := l.Append(context.Background(), Record{Action: ActionLoad, Object: "x", Outcome: OutcomeOK}); err == nil {
		t.Fatal("Append succeeded after a failure")
	}
}
