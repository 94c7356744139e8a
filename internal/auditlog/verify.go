package auditlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"time"

	"golang.org/x/sys/unix"
)

// Problem classifies a verification failure.
type Problem string

const (
	ProblemJSON        Problem = "bad JSON"
	ProblemTooLong     Problem = "line too long"
	ProblemTornLine    Problem = "incomplete last line"
	ProblemSeq         Problem = "seq out of order"
	ProblemPrev        Problem = "prev mismatch"
	ProblemHash        Problem = "hash mismatch"
	ProblemCanonical   Problem = "not canonical"
	ProblemTruncated   Problem = "truncated"
	ProblemHead        Problem = "head mismatch"
	ProblemHeadMissing Problem = "head file missing"
)

// ChainError reports the first place where a log fails verification.
type ChainError struct {
	// Path is the log file, when known.
	Path string
	// Line is the 1-based line number of the first bad line; for a
	// truncated log, the first missing line. 0 when no line applies.
	Line    int
	Problem Problem
	Detail  string
}

func (e *ChainError) Error() string {
	where := "audit log"
	if e.Path != "" {
		where += " " + e.Path
	}
	if e.Line > 0 {
		where += fmt.Sprintf(": line %d", e.Line)
	}
	if e.Detail == "" {
		return fmt.Sprintf("%s: %s", where, e.Problem)
	}
	return fmt.Sprintf("%s: %s: %s", where, e.Problem, e.Detail)
}

// Head is the content of the head file: the seq and hash of the last record
// appended (0 and ZeroHash for an empty log).
type Head struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

var hexHash = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ReadHead reads the head file of the log at logPath. A missing head file is
// reported as an error wrapping fs.ErrNotExist.
func ReadHead(logPath string) (Head, error) {
	raw, err := os.ReadFile(logPath + HeadSuffix)
	if err != nil {
		return Head{}, fmt.Errorf("read audit log head: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var h Head
	if err := dec.Decode(&h); err != nil {
		return Head{}, fmt.Errorf("parse audit log head %s: %w", logPath+HeadSuffix, err)
	}
	if !hexHash.MatchString(h.Hash) {
		return Head{}, fmt.Errorf("parse audit log head %s: bad hash %q", logPath+HeadSuffix, h.Hash)
	}
	return h, nil
}

// Summary describes a verified log.
type Summary struct {
	// Records is the number of records (equal to the last seq).
	Records uint64
	// LastHash is the hash of the last record, ZeroHash for an empty log.
	LastHash string
	// Head is the head file's content; zero when verified without one.
	Head Head
	// HeadPending is set when the head is exactly one record behind the
	// log: the last append was interrupted between writing the record and
	// updating the head. The next Open repairs it.
	HeadPending bool
}

// chain is the verifier's running state.
type chain struct {
	line    int    // lines consumed
	seq     uint64 // last seq
	hash    string // last record's hash
	prev    string // digest of the last line: the next record's prev
	size    int64  // bytes consumed
	watch   uint64 // seq whose hash to remember (the head's)
	watched string // that record's hash
}

func newChain() chain {
	return chain{hash: ZeroHash, prev: ZeroHash, watched: ZeroHash}
}

// next verifies one line (without its "\n") and advances the chain.
func (c *chain) next(line []byte) (*wire, *ChainError) {
	n := c.line + 1
	bad := func(p Problem, format string, args ...any) (*wire, *ChainError) {
		return nil, &ChainError{Line: n, Problem: p, Detail: fmt.Sprintf(format, args...)}
	}
	w, err := parseLine(line)
	if err != nil {
		return bad(ProblemJSON, "%v", err)
	}
	if w.Seq != c.seq+1 {
		return bad(ProblemSeq, "want seq %d, got %d (line removed, inserted or reordered)", c.seq+1, w.Seq)
	}
	if w.Prev != c.prev {
		if n == 1 {
			return bad(ProblemPrev, "first record's prev is %.12s…, want zeros", w.Prev)
		}
		return bad(ProblemPrev, "prev %.12s… is not the hash of line %d (%.12s…): line %d was altered, or records removed", w.Prev, n-1, c.prev, n-1)
	}
	hash, want, err := seal(&w.body)
	if err != nil {
		return bad(ProblemJSON, "re-encode: %v", err)
	}
	if w.Hash != hash {
		return bad(ProblemHash, "record hashes to %.12s…, line says %.12s… (record altered)", hash, w.Hash)
	}
	if !bytes.Equal(line, want) {
		return bad(ProblemCanonical, "line differs from its canonical encoding")
	}
	if t, err := time.Parse(time.RFC3339Nano, w.Time); err != nil || formatTime(t) != w.Time {
		return bad(ProblemCanonical, "time %q is not RFC 3339 UTC", w.Time)
	}
	c.line = n
	c.seq = w.Seq
	c.hash = w.Hash
	c.prev = lineDigest(line)
	c.size += int64(len(line)) + 1
	if w.Seq == c.watch {
		c.watched = w.Hash
	}
	return w, nil
}

// consume verifies every line of r, continuing c. visit, if not nil, sees
// each verified record.
func (c *chain) consume(r io.Reader, visit func(*wire)) *ChainError {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := readLine(br)
		if len(line) > 0 || (err == nil) {
			if len(line) > MaxLineSize {
				return &ChainError{Line: c.line + 1, Problem: ProblemTooLong, Detail: fmt.Sprintf("more than %d bytes", MaxLineSize)}
			}
			if err == io.EOF {
				return &ChainError{Line: c.line + 1, Problem: ProblemTornLine, Detail: "no trailing newline: torn or truncated write"}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return &ChainError{Line: c.line + 1, Problem: ProblemJSON, Detail: fmt.Sprintf("read: %v", err)}
		}
		w, cerr := c.next(line)
		if cerr != nil {
			return cerr
		}
		if visit != nil {
			visit(w)
		}
	}
}

// readLine returns the next line without its "\n"; io.EOF with a non-empty
// line means the last line has no newline. Lines longer than MaxLineSize are
// returned cut at MaxLineSize+1 bytes.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > MaxLineSize+1 {
			return line[:MaxLineSize+1], nil
		}
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return line, err
		}
	}
}

// checkHead compares the verified chain with the head file.
func (c *chain) checkHead(h Head) (pending bool, _ *ChainError) {
	switch {
	case h.Seq > c.seq:
		return false, &ChainError{Line: c.line + 1, Problem: ProblemTruncated,
			Detail: fmt.Sprintf("log ends at seq %d but the head file records seq %d: %d record(s) removed from the end", c.seq, h.Seq, h.Seq-c.seq)}
	case h.Seq == c.seq:
		if h.Hash != c.hash {
			return false, &ChainError{Line: c.line, Problem: ProblemHead,
				Detail: fmt.Sprintf("last record's hash %.12s… differs from the head file's %.12s… (last record replaced)", c.hash, h.Hash)}
		}
		return false, nil
	case h.Hash != c.watched:
		return false, &ChainError{Line: int(h.Seq), Problem: ProblemHead,
			Detail: fmt.Sprintf("record %d's hash %.12s… differs from the head file's %.12s…", h.Seq, c.watched, h.Hash)}
	case h.Seq+1 == c.seq:
		return true, nil
	default:
		return false, &ChainError{Line: int(h.Seq) + 2, Problem: ProblemHead,
			Detail: fmt.Sprintf("head file records seq %d but the log goes on to seq %d: records appended without Append", h.Seq, c.seq)}
	}
}

// VerifyReader verifies a log read from r. With a non-nil head it also
// checks that the log ends where the head says (see the package doc);
// without one, removal of the last records cannot be detected.
func VerifyReader(r io.Reader, head *Head) (Summary, error) {
	s, _, err := verifyChain(r, head)
	return s, err
}

func verifyChain(r io.Reader, head *Head) (Summary, chain, error) {
	c := newChain()
	if head != nil {
		c.watch = head.Seq
	}
	if err := c.consume(r, nil); err != nil {
		return Summary{}, c, err
	}
	s := Summary{Records: c.seq, LastHash: c.hash}
	if head != nil {
		pending, err := c.checkHead(*head)
		if err != nil {
			return Summary{}, c, err
		}
		s.Head, s.HeadPending = *head, pending
	}
	return s, c, nil
}

// Records verifies a log read from r (without a head) and returns its
// records.
func Records(r io.Reader) ([]Record, error) {
	var out []Record
	c := newChain()
	if err := c.consume(r, func(w *wire) { out = append(out, w.record()) }); err != nil {
		return nil, err
	}
	return out, nil
}

// Verify verifies the log at logPath and its head file. The error names the
// first bad line and the problem (a *ChainError), or says why the files
// could not be read.
func Verify(logPath string) error {
	_, err := VerifyFile(logPath)
	return err
}

// VerifyFile is Verify that also returns a summary of an intact log. It
// holds a shared flock on the log while reading, so it sees the log and
// the head of the same moment even while writers append.
func VerifyFile(logPath string) (Summary, error) {
	f, err := os.OpenFile(logPath, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return Summary{}, fmt.Errorf("verify audit log: %w", err)
	}
	defer f.Close()
	if err := flock(nil, f, unix.LOCK_SH); err != nil {
		return Summary{}, fmt.Errorf("verify audit log %s: %w", logPath, err)
	}
	defer unlock(f)
	s, _, err := verifyLocked(logPath, f)
	return s, err
}

// verifyLocked verifies the open log f (read from the start) and its head,
// returning the chain state at the end of the log. The caller holds a lock.
func verifyLocked(logPath string, f *os.File) (Summary, chain, error) {
	fail := func(err error) (Summary, chain, error) { return Summary{}, chain{}, err }
	st, err := f.Stat()
	if err != nil {
		return fail(fmt.Errorf("verify audit log %s: %w", logPath, err))
	}
	if !st.Mode().IsRegular() {
		return fail(fmt.Errorf("verify audit log %s: not a regular file", logPath))
	}
	head, err := ReadHead(logPath)
	switch {
	case errors.Is(err, fs.ErrNotExist) && st.Size() == 0:
		head = Head{Hash: ZeroHash}
	case errors.Is(err, fs.ErrNotExist):
		return fail(&ChainError{Path: logPath, Problem: ProblemHeadMissing,
			Detail: logPath + HeadSuffix + " does not exist: removal of the last records cannot be ruled out"})
	case err != nil:
		return fail(&ChainError{Path: logPath, Problem: ProblemHead, Detail: err.Error()})
	}
	s, c, err := verifyChain(io.NewSectionReader(f, 0, st.Size()), &head)
	var ce *ChainError
	if errors.As(err, &ce) {
		ce.Path = logPath
	}
	if err != nil {
		return fail(err)
	}
	return s, c, nil
}
