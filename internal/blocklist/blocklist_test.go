package blocklist

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/carverauto/fortress/internal/lpm"
)

func TestParse(t *testing.T) {
	in := `# Spamhaus-style list
1.2.3.0/24 ; SBL123
10.0.0.0/8 drop
10.1.0.0/16 allow   # exception
10.2.0.0/16 drop log-only
192.0.2.7
2001:db8::/32
2001:db8::1

1.2.3.0/24
`
	l, err := Parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []lpm.Rule{
		{Prefix: netip.MustParsePrefix("1.2.3.0/24")},
		{Prefix: netip.MustParsePrefix("10.0.0.0/8")},
		{Prefix: netip.MustParsePrefix("10.1.0.0/16"), Action: lpm.Allow},
		{Prefix: netip.MustParsePrefix("10.2.0.0/16"), LogOnly: true},
		{Prefix: netip.MustParsePrefix("192.0.2.7/32")},
		{Prefix: netip.MustParsePrefix("2001:db8::/32")},
		{Prefix: netip.MustParsePrefix("2001:db8::1/128")},
	}
	// The last line is an exact repeat.
	if l.Duplicates != 1 {
		t.Errorf("duplicates %d, want 1", l.Duplicates)
	}
	if fmt.Sprint(l.Rules) != fmt.Sprint(want) {
		t.Fatalf("rules\n got %v\nwant %v", l.Rules, want)
	}
}

func TestParseErrorsNameTheLine(t *testing.T) {
	cases := map[string]int{
		"1.2.3.4/33":                       3,
		"10.0.0.256/8":                     3,
		"hello":                            3,
		"10.0.0.0/8 reject":                3,
		"10.0.0.0/8 allow log-only":        3,
		"10.0.0.0/8 allow":                 3, // conflicts with line 1
		"fe80::1%eth0":                     3,
		"10.0.0.0/8 drop drop":             3,
		"10.0.0.0/8 log-only log-only":     3,
		"2001:db8::/129":                   3,
		"1.2.3.4 drop log-only extra-word": 3,
		"10.1.2.3/24":                      3, // host bits
		"::ffff:10.1.2.3/128":              3, // IPv4-mapped
		"::ffff:10.1.2.3":                  3,
		"::ffff:10.0.0.0/104":              3,
	}
	for bad, line := range cases {
		in := "10.0.0.0/8\n# ok\n" + bad + "\n8.8.8.8\n"
		_, err := Parse(strings.NewReader(in))
		var le *LineError
		if !errors.As(err, &le) {
			t.Errorf("%q: error %v, want a LineError", bad, err)
			continue
		}
		if le.Line != line || le.Text != bad {
			t.Errorf("%q: error names line %d %q, want line %d", bad, le.Line, le.Text, line)
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("line %d", line)) {
			t.Errorf("%q: message %q lacks the line number", bad, err)
		}
	}
}

func TestParseLargeListWithOneBadLine(t *testing.T) {
	var sb strings.Builder
	for i := 0; i < 100000; i++ {
		if i == 77777 {
			sb.WriteString("10.20.30.400/32\n")
			continue
		}
		fmt.Fprintf(&sb, "%d.%d.%d.0/24\n", 1+i>>16, i>>8&255, i&255)
	}
	_, err := Parse(strings.NewReader(sb.String()))
	var le *LineError
	if !errors.As(err, &le) || le.Line != 77778 {
		t.Fatalf("error %v, want line 77778", err)
	}
}

func TestLongLineRefused(t *testing.T) {
	_, err := Parse(strings.NewReader("1.2.3.4\n" + strings.Repeat("x", MaxLineBytes+1) + "\n"))
	var le *LineError
	if !errors.As(err, &le) || le.Line != 2 {
		t.Fatalf("error %v, want line 2", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("10.0.0.0/8 drop\n::/0 allow\n")
	f.Fuzz(func(t *testing.T, s string) {
		l, err := Parse(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, r := range l.Rules {
			if !r.Prefix.IsValid() || r.Prefix != r.Prefix.Masked() {
				t.Fatalf("accepted invalid or unmasked prefix %v", r.Prefix)
			}
		}
	})
}

// TestParseTraps: inputs that used to be accepted and then did something
// other than what they say are refused, and the error says what to write.
func TestParseTraps(t *testing.T) {
	cases := []struct{ in, want string }{
		{"::ffff:10.1.2.3/128", "write 10.1.2.3/32 instead"},
		{"::ffff:10.1.2.3", "write 10.1.2.3/32 instead"},
		{"::ffff:10.0.0.0/104", "write 10.0.0.0/8 instead"},
		{"10.1.2.3/24", "the network is 10.1.2.0/24"},
		{"2001:db8::1/32", "the network is 2001:db8::/32"},
	}
	for _, c := range cases {
		_, err := Parse(strings.NewReader("192.0.2.0/24\n" + c.in + "\n"))
		var le *LineError
		if !errors.As(err, &le) || le.Line != 2 || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("%s: %v, want line 2 and %q", c.in, err, c.want)
		}
		if _, err := ParseRule(c.in, "drop", false); err == nil {
			t.Errorf("ParseRule(%s) accepted it", c.in)
		}
	}
	if !errors.Is(func() error { _, err := ParseRule("::ffff:1.2.3.4/128", "", false); return err }(), ErrMappedIPv4) {
		t.Error("mapped address: not ErrMappedIPv4")
	}
	if !errors.Is(func() error { _, err := ParseRule("10.1.2.3/24", "", false); return err }(), ErrHostBits) {
		t.Error("host bits: not ErrHostBits")
	}
	// Plain IPv6 that merely contains the mapped range is a normal rule.
	if _, err := ParseRule("::/64", "drop", false); err != nil {
		t.Errorf("::/64: %v", err)
	}
}

// TestJunkIsNotEchoed: binary junk in a list or a rule appears in the error
// quoted and cut short, never raw and whole.
func TestJunkIsNotEchoed(t *testing.T) {
	junk := make([]byte, 1500)
	for i := range junk {
		junk[i] = byte(i*7 + 1)
		if junk[i] == '\n' || junk[i] == '#' || junk[i] == ';' || junk[i] == ' ' || junk[i] == '\t' {
			junk[i] = 0xff
		}
	}
	check := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: accepted", what)
		}
		msg := err.Error()
		if len(msg) > 800 {
			t.Errorf("%s: error is %d bytes long: %.300q", what, len(msg), msg)
		}
		for _, r := range msg {
			if r < 0x20 || r == 0x7f || r == 0xfffd {
				t.Errorf("%s: raw control or invalid byte in the error: %q", what, msg)
				break
			}
		}
		if !strings.Contains(msg, "(1500 bytes)") {
			t.Errorf("%s: error does not give the input's length: %q", what, msg)
		}
	}
	_, err := Parse(strings.NewReader("10.0.0.0/8\n" + string(junk) + "\n"))
	check("list line", err)
	_, err = ParseRule("1.2.3.4/"+string(junk[:1492]), "drop", false)
	if err == nil || len(err.Error()) > 400 {
		t.Errorf("junk prefix length: %v", err)
	}
	_, err = ParseRule(string(junk), "drop", false)
	if err == nil || len(err.Error()) > 400 {
		t.Errorf("junk address: %.300v", err)
	}
}
