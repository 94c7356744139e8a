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
10.9.8.7/8

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
	// 10.9.8.7/8 masks to 10.0.0.0/8, an exact repeat; so is the last line.
	if l.Duplicates != 2 {
		t.Errorf("duplicates %d, want 2", l.Duplicates)
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
