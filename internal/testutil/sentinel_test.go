package testutil

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestSentinelUnsupported(t *testing.T) {
	for _, tt := range []struct {
		arch, release string
		unsupported   bool
	}{
		{"amd64", "5.10.0-32-cloud-amd64", false},
		{"amd64", "6.1.0-57-cloud-amd64", false},
		{"arm64", "6.1.0-57-cloud-arm64", true},
		{"arm64", "5.10.0-32-cloud-arm64", true},
		{"arm64", "6.3.13", true},
		{"arm64", "6.4.0", false},
		{"arm64", "6.12.118+deb13-cloud-arm64", false},
		{"arm64", "7.0.0", false},
		{"arm64", "garbage", false}, // unknown: the tests run, and say what fails
	} {
		got := sentinelUnsupported(tt.arch, tt.release)
		if (got != "") != tt.unsupported {
			t.Errorf("sentinelUnsupported(%s, %s) = %q, want unsupported=%v", tt.arch, tt.release, got, tt.unsupported)
		}
		if got != "" && !strings.Contains(got, tt.release) {
			t.Errorf("reason %q does not name the kernel", got)
		}
	}
}

func TestExpectSentinelUnavailableElsewhere(t *testing.T) {
	if SentinelUnsupported() != "" {
		t.Skip("runs where Sentinel can run")
	}
	// Where Sentinel runs, the helper lets any outcome through to the test.
	errUnavailable := errors.New("unavailable")
	for _, err := range []error{nil, errUnavailable, fmt.Errorf("%w: attach: not supported", errUnavailable), errors.New("other")} {
		ExpectSentinelUnavailable(t, err, errUnavailable)
		ExpectSentinelStatusUnavailable(t, "enforcing", "")
		if CheckSentinelUnavailable(err, errUnavailable) == nil {
			t.Errorf("CheckSentinelUnavailable(%v) accepted a refusal where Sentinel can run", err)
		}
	}
}
