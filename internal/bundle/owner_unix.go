//go:build unix

package bundle

import (
	"io/fs"
	"syscall"
)

// fileOwner returns the uid that owns fi, where the platform has one.
func fileOwner(fi fs.FileInfo) (uid uint32, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Uid, true
}
