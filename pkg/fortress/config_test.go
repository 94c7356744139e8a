package fortress

import (
	"os"
	"path/filepath"
	"testing"
)

func TestInside(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "etc")
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "sub", "key.pem"), nil, 0o644)
	outside := filepath.Join(root, "key.pem")
	os.WriteFile(outside, nil, 0o644)
	os.Symlink(outside, filepath.Join(dir, "out.pem"))
	os.Symlink(filepath.Join(dir, "sub", "key.pem"), filepath.Join(root, "in.pem"))
	os.WriteFile(filepath.Join(root, "etc2"), nil, 0o644)
	for path, want := range map[string]struct {
		resolved string
		inside   bool
	}{
		filepath.Join(dir, "sub", "key.pem"): {filepath.Join(dir, "sub", "key.pem"), true},
		filepath.Join(dir, "out.pem"):        {outside, false},
		filepath.Join(root, "in.pem"):        {filepath.Join(dir, "sub", "key.pem"), true},
		filepath.Join(dir, "..", "key.pem"):  {outside, false},
		dir:                                  {dir, false},
		filepath.Join(root, "etc2"):          {filepath.Join(root, "etc2"), false},
	} {
		resolved, inside, err := Inside(path, dir)
		if err != nil || resolved != want.resolved || inside != want.inside {
			t.Errorf("Inside(%s) = %s, %v, %v; want %s, %v", path, resolved, inside, err, want.resolved, want.inside)
		}
	}
	if _, _, err := Inside(filepath.Join(dir, "missing"), dir); err == nil {
		t.Error("a missing path resolved")
	}
}
