package initramfs

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cavaliergopher/cpio"
)

// Writer writes a gzip-compressed newc cpio archive. Parent directories are
// created on demand, each path is written at most once, and all entries
// belong to root.
type Writer struct {
	gz      *gzip.Writer
	cw      *cpio.Writer
	entries map[string]fs.FileMode
}

// NewWriter returns a Writer writing the compressed archive to w.
func NewWriter(w io.Writer) *Writer {
	// Fastest compression: the archive is written for every VM run, and the
	// guest's decompression time hardly depends on the level.
	gz, _ := gzip.NewWriterLevel(w, gzip.BestSpeed) // a valid level never fails
	return &Writer{gz: gz, cw: cpio.NewWriter(gz), entries: map[string]fs.FileMode{}}
}

// Has reports whether name (an absolute guest path) was written.
func (w *Writer) Has(name string) bool {
	_, ok := w.entries[clean(name)]
	return ok
}

// clean turns a guest path into the archive's relative form.
func clean(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// Dir writes directory name and its missing parents. perm may carry
// fs.ModeSticky, fs.ModeSetuid and fs.ModeSetgid.
func (w *Writer) Dir(name string, perm fs.FileMode) error {
	name = clean(name)
	if name == "" || name == "." {
		return nil
	}
	if mode, ok := w.entries[name]; ok {
		if !mode.IsDir() {
			return fmt.Errorf("cpio %s: exists and is not a directory", name)
		}
		return nil
	}
	if err := w.Dir(path.Dir(name), 0o755); err != nil {
		return err
	}
	w.entries[name] = fs.ModeDir | perm
	return w.header(&cpio.Header{Name: name, Mode: cpio.TypeDir | cpioPerm(perm), Links: 2})
}

// File writes a regular file with the given contents.
func (w *Writer) File(name string, perm fs.FileMode, data []byte) error {
	return w.Reader(name, perm, int64(len(data)), bytes.NewReader(data))
}

// Reader writes a regular file of size bytes read from r.
func (w *Writer) Reader(name string, perm fs.FileMode, size int64, r io.Reader) error {
	name, err := w.add(name, perm)
	if err != nil {
		return err
	}
	if err := w.header(&cpio.Header{Name: name, Mode: cpio.TypeReg | cpioPerm(perm), Size: size, Links: 1}); err != nil {
		return err
	}
	if n, err := io.Copy(w.cw, r); err != nil {
		return fmt.Errorf("cpio %s: %w", name, err)
	} else if n != size {
		return fmt.Errorf("cpio %s: wrote %d of %d bytes", name, n, size)
	}
	return nil
}

// CopyFile writes the host file src (following symlinks) as name. A zero
// perm keeps the host file's permissions.
func (w *Writer) CopyFile(name, src string, perm fs.FileMode) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("cpio %s: %w", name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("cpio %s: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("cpio %s: %s is not a regular file", name, src)
	}
	if perm == 0 {
		perm = fi.Mode().Perm()
	}
	return w.Reader(name, perm, fi.Size(), f)
}

// Symlink writes a symbolic link name pointing at target.
func (w *Writer) Symlink(name, target string) error {
	name, err := w.add(name, fs.ModeSymlink|0o777)
	if err != nil {
		return err
	}
	if err := w.header(&cpio.Header{Name: name, Mode: cpio.TypeSymlink | 0o777, Size: int64(len(target)), Links: 1}); err != nil {
		return err
	}
	if _, err := io.WriteString(w.cw, target); err != nil {
		return fmt.Errorf("cpio %s: %w", name, err)
	}
	return nil
}

// CopyTree writes the host directory src, recursively, as dir. Regular
// files, directories and symbolic links are copied; other files are
// skipped.
func (w *Writer) CopyTree(dir, src string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		name := path.Join(dir, filepath.ToSlash(rel))
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return w.Dir(name, fi.Mode().Perm())
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return w.Symlink(name, target)
		case d.Type().IsRegular():
			return w.CopyFile(name, p, fi.Mode().Perm())
		}
		return nil
	})
}

// Close finishes the archive and the compressed stream; it does not close
// the underlying writer.
func (w *Writer) Close() error {
	if err := w.cw.Close(); err != nil {
		return fmt.Errorf("close cpio: %w", err)
	}
	if err := w.gz.Close(); err != nil {
		return fmt.Errorf("close gzip: %w", err)
	}
	return nil
}

// add registers a non-directory entry and creates its parents.
func (w *Writer) add(name string, mode fs.FileMode) (string, error) {
	name = clean(name)
	if name == "" || name == "." {
		return "", fmt.Errorf("cpio: empty path")
	}
	if _, ok := w.entries[name]; ok {
		return "", fmt.Errorf("cpio %s: written twice", name)
	}
	if err := w.Dir(path.Dir(name), 0o755); err != nil {
		return "", err
	}
	w.entries[name] = mode
	return name, nil
}

// cpioPerm converts permission bits, including the setuid, setgid and
// sticky bits, to their cpio form.
func cpioPerm(m fs.FileMode) cpio.FileMode {
	p := cpio.FileMode(m.Perm())
	if m&fs.ModeSetuid != 0 {
		p |= cpio.ModeSetuid
	}
	if m&fs.ModeSetgid != 0 {
		p |= cpio.ModeSetgid
	}
	if m&fs.ModeSticky != 0 {
		p |= cpio.ModeSticky
	}
	return p
}

func (w *Writer) header(h *cpio.Header) error {
	if err := w.cw.WriteHeader(h); err != nil {
		return fmt.Errorf("cpio %s: %w", h.Name, err)
	}
	return nil
}

// Entries returns the written paths, sorted, in archive form (no leading
// slash).
func (w *Writer) Entries() []string {
	out := make([]string, 0, len(w.entries))
	for name := range w.entries {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}
