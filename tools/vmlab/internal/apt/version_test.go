package apt

import "testing"

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"5.10.0-32", "5.10.0-9", 1},
		{"5.10.0-9", "5.10.0-32", -1},
		{"5.10.262-1", "5.10.251-5", 1},
		{"6.1.192-2", "6.1.180-1~deb11u1", 1},
		{"6.12.117-1", "6.12.117-1~deb12u1", 1},
		{"6.12.117-1~bpo12+1", "6.12.117-1", -1},
		{"1.0", "1.0", 0},
		{"1.0-1", "1.0-1", 0},
		{"1.0", "1.0-0", 0},
		{"1:1.0", "2.0", 1},
		{"1.0~rc1", "1.0", -1},
		{"1.0a", "1.0", 1},
		{"1.0a", "1.0+", -1},
		{"1.0.1", "1.0a", 1},
		{"1.01", "1.1", 0},
		{"1.35.0-4+deb12u1+b1", "1.35.0-4+deb12u1", 1},
		{"6.12.95+deb12", "6.12.117+deb12", -1},
	}
	for _, tt := range tests {
		if got := CompareVersions(tt.a, tt.b); got != tt.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := CompareVersions(tt.b, tt.a); got != -tt.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tt.b, tt.a, got, -tt.want)
		}
	}
}
