// Package cpio writes cpio archives in the POSIX.1 portable "odc" format
// (magic 070707), the format of a flat package's Payload and Scripts.
//
// Only what an installer payload needs is supported: directories, regular
// files and symbolic links, with explicit owners, modes and times, so that
// archives do not depend on the machine that builds them.
package cpio

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"
)

// Header describes one archive entry.
type Header struct {
	Name    string      // path inside the archive, e.g. "./usr/local/bin/x"
	Mode    fs.FileMode // permission bits plus fs.ModeDir or fs.ModeSymlink
	UID     int
	GID     int
	ModTime time.Time // the zero value is stored as the Unix epoch
	Size    int64     // content length; zero for directories, target length for links
}

// Unix file type bits as stored in the odc mode field.
const (
	typeDir     = 0o040000
	typeRegular = 0o100000
	typeSymlink = 0o120000
)

const trailerName = "TRAILER!!!"

// odc fields are fixed-width octal; these are their largest values.
const (
	max6  = 0o777777
	max11 = 0o77777777777
)

var (
	// ErrWriteTooLong is returned when more bytes are written than the
	// header announced.
	ErrWriteTooLong = errors.New("cpio: write too long")
	errUnsupported  = errors.New("cpio: unsupported file type")
)

// Writer writes an odc cpio archive. Call WriteHeader, then Write exactly
// Size bytes, for each entry, and Close to add the trailer.
type Writer struct {
	w         io.Writer
	remaining int64
	ino       int
	closed    bool
}

// NewWriter returns a Writer writing to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// WriteHeader starts a new entry.
func (cw *Writer) WriteHeader(h *Header) error {
	if cw.closed {
		return errors.New("cpio: write after close")
	}
	if cw.remaining != 0 {
		return fmt.Errorf("cpio: previous entry is %d bytes short", cw.remaining)
	}
	mode, err := unixMode(h.Mode)
	if err != nil {
		return fmt.Errorf("%w: %s (%v)", errUnsupported, h.Name, h.Mode)
	}
	size := h.Size
	if h.Mode.IsDir() {
		size = 0
	}
	// A zero ModTime means the epoch, not year 1, which odc cannot hold.
	var mtime int64
	if !h.ModTime.IsZero() {
		mtime = h.ModTime.Unix()
	}
	// Each entry gets its own inode number so that readers never take two
	// entries for hard links of each other.
	cw.ino++
	if err := cw.header(h.Name, cw.ino, mode, h.UID, h.GID, mtime, size); err != nil {
		return err
	}
	cw.remaining = size
	return nil
}

// Write writes content of the current entry.
func (cw *Writer) Write(p []byte) (int, error) {
	if int64(len(p)) > cw.remaining {
		return 0, ErrWriteTooLong
	}
	n, err := cw.w.Write(p)
	cw.remaining -= int64(n)
	return n, err
}

// Close writes the trailer entry. It does not close the underlying writer.
func (cw *Writer) Close() error {
	if cw.closed {
		return nil
	}
	if cw.remaining != 0 {
		return fmt.Errorf("cpio: last entry is %d bytes short", cw.remaining)
	}
	cw.closed = true
	return cw.header(trailerName, 0, 0, 0, 0, 0, 0)
}

func (cw *Writer) header(name string, ino int, mode uint32, uid, gid int, mtime, size int64) error {
	fields := []struct {
		v     int64
		width int
		what  string
	}{
		{0, 6, "dev"},
		{int64(ino), 6, "inode"},
		{int64(mode), 6, "mode"},
		{int64(uid), 6, "uid"},
		{int64(gid), 6, "gid"},
		{1, 6, "nlink"},
		{0, 6, "rdev"},
		{mtime, 11, "mtime"},
		{int64(len(name) + 1), 6, "name size"},
		{size, 11, "file size"},
	}
	buf := make([]byte, 0, 76+len(name)+1)
	buf = append(buf, "070707"...)
	for _, f := range fields {
		limit := int64(max6)
		if f.width == 11 {
			limit = max11
		}
		if f.v < 0 || f.v > limit {
			return fmt.Errorf("cpio: %s of %q out of range: %d", f.what, name, f.v)
		}
		buf = fmt.Appendf(buf, "%0*o", f.width, f.v)
	}
	buf = append(buf, name...)
	buf = append(buf, 0)
	_, err := cw.w.Write(buf)
	return err
}

func unixMode(m fs.FileMode) (uint32, error) {
	perm := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		perm |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		perm |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		perm |= 0o1000
	}
	switch m.Type() {
	case 0:
		return typeRegular | perm, nil
	case fs.ModeDir:
		return typeDir | perm, nil
	case fs.ModeSymlink:
		return typeSymlink | perm, nil
	}
	return 0, errUnsupported
}
