//go:build linux

package fortress

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/carverauto/fortress/internal/blocklist"
	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/lpm"
	"github.com/carverauto/fortress/internal/shield"
	"github.com/carverauto/fortress/internal/statedir"
)

// maxListBytes bounds a referenced CIDR list (a million IPv6 rules with
// comments fit comfortably).
const maxListBytes = 256 << 20

// policy is a bundle converted into what each layer applies.
type policy struct {
	version uint64
	digest  string
	keyID   string
	// Shield.
	rules      []lpm.Rule
	dryRun     bool
	duplicates int
	listRef    string // the list's sha256, when the rules came from a list
	// list is the referenced list while its rules are not read (deferred
	// at start, see deferList); rules is nil until loadList.
	list       *bundle.ListRef
	allowEmpty bool
	// management are the management addresses the bundle names (its
	// "gateways" section; nil when it names none).
	management []netip.Addr
	// Sentinel; nil when the bundle has no sentinel section.
	sentinel *bundle.Sentinel
}

// shieldSetID names the Shield set of a list policy (zero for inline
// rules: Shield then names it by its rules).
func (p *policy) shieldSetID() shield.SetID {
	if p.listRef == "" {
		return shield.SetID{}
	}
	return shield.SetIDForList(p.listRef, p.dryRun)
}

// listSource returns a referenced list's content to read once (closed after
// if it is an io.Closer). loadList checks it against the digest as it
// parses it, so a source may stream.
type listSource func(ctx context.Context, ref bundle.ListRef) (io.Reader, error)

// errDeferList is what deferList returns: convert then leaves the list
// unread, for loadList.
var errDeferList = errors.New("list deferred")

// deferList is the list source of the policy re-applied at start: its list
// is read only if Shield does not hold its set already.
func deferList(context.Context, bundle.ListRef) (io.Reader, error) { return nil, errDeferList }

// hashingReader hashes what it reads; Stat and Len (when the source has
// them) let the parser size its tables once.
type hashingReader struct {
	r io.Reader
	h hash.Hash
}

func (r *hashingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.h.Write(p[:n])
	return n, err
}

func (r *hashingReader) Stat() (os.FileInfo, error) {
	if s, ok := r.r.(interface{ Stat() (os.FileInfo, error) }); ok {
		return s.Stat()
	}
	return nil, errors.New("not a file")
}

func (r *hashingReader) Len() int {
	if l, ok := r.r.(interface{ Len() int }); ok {
		return l.Len()
	}
	return 0
}

// loadList reads the rules of a policy whose list was deferred.
func (p *policy) loadList(ctx context.Context, lists listSource) error {
	if p.list == nil {
		return nil
	}
	ref := *p.list
	if lists == nil {
		return fmt.Errorf("payload.shield.list_ref %s: no way to fetch lists", ref.URL)
	}
	r, err := lists(ctx, ref)
	if err != nil {
		return fmt.Errorf("payload.shield.list_ref %s: %w", ref.URL, err)
	}
	if c, ok := r.(io.Closer); ok {
		defer c.Close()
	}
	// Streamed: the list is parsed as it is read, and its digest checked
	// before any of it is used.
	hr := &hashingReader{r: r, h: sha256.New()}
	l, err := blocklist.Parse(hr)
	if got := hex.EncodeToString(hr.h.Sum(nil)); err == nil && got != ref.SHA256 {
		err = fmt.Errorf("%w: %s has sha256 %s, bundle says %s", bundle.ErrListDigest, ref.URL, got, ref.SHA256)
	}
	if err != nil {
		return fmt.Errorf("payload.shield.list_ref %s: %w", ref.URL, err)
	}
	if len(l.Rules) == 0 && !p.allowEmpty {
		return fmt.Errorf("payload.shield.list_ref %s: the list has %w", ref.URL, bundle.ErrEmptyRules)
	}
	p.rules, p.duplicates, p.list = l.Rules, l.Duplicates, nil
	return nil
}

// convert turns a verified bundle into layer policy. It changes nothing;
// every error names the bundle field (and list line) at fault.
func convert(ctx context.Context, b *bundle.Bundle, lists listSource) (*policy, error) {
	p := &policy{version: b.Version, digest: b.Digest, keyID: b.KeyID, sentinel: b.Payload.Sentinel}
	if s := b.Payload.Shield; s != nil {
		p.dryRun = s.Mode == bundle.ShieldDryRun
		switch {
		case s.ListRef != nil:
			p.list, p.listRef, p.allowEmpty = s.ListRef, s.ListRef.SHA256, s.AllowEmpty
			if err := p.loadList(ctx, lists); err != nil && !errors.Is(err, errDeferList) {
				return nil, err
			}
		default:
			rules, dups, err := convertRules(s.Rules)
			if err != nil {
				return nil, err
			}
			p.rules, p.duplicates = rules, dups
		}
	}
	if g := b.Payload.Gateways; g != nil {
		for i, a := range g.V4 {
			ip, err := netip.ParseAddr(a)
			if err != nil {
				return nil, fmt.Errorf("payload.gateways.v4[%d]: %w", i, err)
			}
			p.management = append(p.management, ip)
		}
		for i, a := range g.V6 {
			ip, err := netip.ParseAddr(a)
			if err != nil {
				return nil, fmt.Errorf("payload.gateways.v6[%d]: %w", i, err)
			}
			p.management = append(p.management, ip)
		}
	}
	return p, nil
}

// convertRules parses inline rules. An exact repeat is skipped and counted;
// the same prefix with another action is refused, naming both rules.
func convertRules(in []bundle.Rule) ([]lpm.Rule, int, error) {
	out := make([]lpm.Rule, 0, len(in))
	where := make(map[netip.Prefix]int, len(in))
	dups := 0
	for i, r := range in {
		rule, err := blocklist.ParseRule(r.CIDR, r.Action, r.LogOnly)
		if err != nil {
			return nil, 0, fmt.Errorf("payload.shield.rules[%d] %s: %w", i, blocklist.Quote(r.CIDR), err)
		}
		if j, ok := where[rule.Prefix]; ok {
			if out[j] == rule {
				dups++
				continue
			}
			return nil, 0, fmt.Errorf("payload.shield.rules[%d] (%s): conflicts with an earlier rule (%s)", i, rule, out[j])
		}
		where[rule.Prefix] = len(out)
		out = append(out, rule)
	}
	return out, dups, nil
}

// mergeManagement is the configured management addresses plus the
// bundle's, without repeats, refusing more than Shield can hold. (Its error
// names the bundle's "gateways" section, where they come from.)
func mergeManagement(cfg, fromBundle []netip.Addr) ([]netip.Addr, error) {
	var out []netip.Addr
	n4, n6 := 0, 0
	for _, g := range slices.Concat(cfg, fromBundle) {
		g = g.Unmap()
		if slices.Contains(out, g) {
			continue
		}
		if g.Is4() {
			n4++
		} else {
			n6++
		}
		out = append(out, g)
	}
	if n4 > shield.MaxManagement || n6 > shield.MaxManagement {
		return nil, fmt.Errorf("gateways: %d IPv4 and %d IPv6 addresses (configured plus bundle), at most %d per family",
			n4, n6, shield.MaxManagement)
	}
	return out, nil
}

func sameAddrs(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// listCache keeps referenced lists in the state directory by digest, so a
// restarted agent re-applies its policy without reaching the list's server.
type listCache struct {
	dir   string
	fetch func(ctx context.Context, url string) ([]byte, error)
}

func (c listCache) path(sha string) string { return filepath.Join(c.dir, sha+".list") }

// get returns the cached list when its digest matches (an open file, read
// as it is parsed), else fetches, checks and caches it.
func (c listCache) get(ctx context.Context, ref bundle.ListRef) (io.Reader, error) {
	if f, err := os.Open(c.path(ref.SHA256)); err == nil {
		h := sha256.New()
		if _, err := io.Copy(h, f); err == nil && hex.EncodeToString(h.Sum(nil)) == ref.SHA256 {
			if _, err := f.Seek(0, io.SeekStart); err == nil {
				return f, nil
			}
		}
		f.Close()
	}
	fetch := c.fetch
	if fetch == nil {
		fetch = defaultFetch
	}
	data, err := fetch(ctx, ref.URL)
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	if err := bundle.CheckList(data, ref); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.dir, 0o700); err == nil {
		// A failed cache write costs a refetch after restart, no more.
		_ = statedir.WriteFile(c.path(ref.SHA256), data, 0o600)
	}
	return bytes.NewReader(data), nil
}

// prune removes cached lists other than keep.
func (c listCache) prune(keep string) {
	ents, _ := os.ReadDir(c.dir)
	for _, e := range ents {
		if name, ok := strings.CutSuffix(e.Name(), ".list"); ok && name != keep {
			os.Remove(filepath.Join(c.dir, e.Name()))
		}
	}
}

func defaultFetch(ctx context.Context, url string) ([]byte, error) {
	if p, ok := strings.CutPrefix(url, "file://"); ok || strings.HasPrefix(url, "/") {
		if !ok {
			p = url
		}
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return readCapped(f)
	}
	if !strings.HasPrefix(url, "https://") && !strings.HasPrefix(url, "http://") {
		return nil, fmt.Errorf("unsupported list url %q (want https://, http://, file:// or an absolute path)", url)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	// The digest in the signed bundle authenticates the content, so plain
	// http is no weaker than https here.
	return readCapped(resp.Body)
}

func readCapped(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxListBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxListBytes {
		return nil, errors.New("list larger than 256 MiB")
	}
	return data, nil
}
