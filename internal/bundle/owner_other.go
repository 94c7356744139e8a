//go:build !unix

package bundle

import "io/fs"

// fileOwner reports no owner: files have no uid here, so only the mode
// check applies.
func fileOwner(fs.FileInfo) (uid uint32, ok bool) { return 0, false }
