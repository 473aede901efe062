//go:build !unix

package secretfile

import (
	"fmt"
	"io/fs"
	"os"
)

// open refuses a link by looking first: without O_NOFOLLOW a link swapped
// in between is possible, which the operator's ACLs must prevent.
func open(path string) (*os.File, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode()&fs.ModeSymlink != 0 {
		return nil, fmt.Errorf("%s is a symbolic link; a secret file must be the file itself, not a link to one", path)
	}
	return os.Open(path)
}
