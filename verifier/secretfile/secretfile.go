// Package secretfile reads the verifier's secret files (the admin and
// metrics tokens, private keys) so that a data dir someone else can write
// cannot hand the verifier, or an admin's command, another file in their
// place: a secret file is read without following a symbolic link, and must be
// a regular file owned by the user reading it (or root) that no one else may
// read or write.
package secretfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/clearance/clearance/pkg/owner"
)

// ErrMode means the file is readable or writable by group or others.
var ErrMode = errors.New("secret file permissions too open")

// modeError is the message for a file whose mode is too open; it is ErrMode.
type modeError string

func (e modeError) Error() string        { return string(e) }
func (e modeError) Is(target error) bool { return target == ErrMode }

// MaxSize bounds what Read returns: tokens and PEM keys are far smaller.
const MaxSize = 1 << 20

// Read returns the contents of the secret file at path. A missing file is
// an error that matches fs.ErrNotExist; a symbolic link, a file that is not
// regular, one owned by another user, or one that group or others may read
// or write (ErrMode) is refused with a message that says what to do.
func Read(path string) ([]byte, error) {
	f, err := open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", path, st.Mode().Type())
	}
	if err := checkOwner(path, st); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, MaxSize)
	}
	return data, nil
}

// notLink turns an open refused because path is a symbolic link into a
// clear error; anything else is returned as it is.
func notLink(path string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if st, lerr := os.Lstat(path); lerr == nil && st.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("%s is a symbolic link; a secret file must be the file itself, not a link to one", path)
	}
	return err
}

func checkOwner(path string, st fs.FileInfo) error {
	if uid, foreign := owner.Foreign(st); foreign {
		return fmt.Errorf("%s is owned by uid %d, not by this user (uid %d) or root; run this as the user that owns the data dir", path, uid, os.Geteuid())
	}
	if owner.Bits(st, 0o077) != 0 {
		return modeError(fmt.Sprintf("%s is readable or writable by group or others (mode %04o); run: chmod 600 %s", path, st.Mode().Perm(), path))
	}
	return nil
}
