// Package regularfile reads a file an operator names (a settings file, a
// policy file) only if it is a regular file, and only up to a bound: a
// FIFO, a device or a directory put in its place is refused at once rather
// than blocking the reader, which may be the one goroutine that handles
// every reload, or filling memory.
package regularfile

import (
	"errors"
	"fmt"
	"io"
)

// ErrNotRegular is a path that names a FIFO, a device, a socket or a
// directory.
var ErrNotRegular = errors.New("is not a regular file")

// ErrTooLarge is a file larger than the bound.
var ErrTooLarge = errors.New("is too large")

// Read returns the contents of the regular file at path (links followed),
// refusing one larger than max bytes with an error wrapping ErrTooLarge,
// and anything but a regular file with one wrapping ErrNotRegular. The
// open does not wait for a FIFO's writer.
func Read(path string, max int64) ([]byte, error) {
	f, err := open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s %w (%s)", path, ErrNotRegular, kind(fi.Mode().String()))
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s %w: larger than %d bytes", path, ErrTooLarge, max)
	}
	return data, nil
}

// kind names what a file mode's first letter says the file is.
func kind(mode string) string {
	switch mode[0] {
	case 'd':
		return "a directory"
	case 'p':
		return "a FIFO"
	case 'S':
		return "a socket"
	case 'D', 'c':
		return "a device"
	}
	return "mode " + mode
}
