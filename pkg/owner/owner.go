// Package owner says who owns a file or directory and who else may change
// it, for programs that must not act on what another local user could have
// put there: the agent, which runs as root, with its state dir, device key,
// osquery socket and osqueryd binary; the verifier's commands with their
// data dir and secret files. Where files carry no POSIX owner and mode bits
// (Windows), ACLs are the operator's business and nothing is refused here.
package owner

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Foreign returns the uid that owns the file st describes, and whether that
// is neither the effective user nor root.
func Foreign(st fs.FileInfo) (uid int, foreign bool) {
	uid, ok := fileUID(st)
	if !ok {
		return 0, false
	}
	return uid, uid != 0 && uid != os.Geteuid()
}

// Bits returns st's permission bits within mask: with mask 0o022, whether
// group or others may write it. It is 0 where files carry no POSIX mode.
func Bits(st fs.FileInfo, mask fs.FileMode) fs.FileMode {
	if !posixMode {
		return 0
	}
	return st.Mode().Perm() & mask
}

// Check refuses what st describes (what names it, "state dir", at path)
// when it is owned by neither the effective user nor root, or has any
// permission bit of deny set (0o022: group or others may write it; 0o077:
// group or others may use it at all). The error says what to fix.
func Check(what, path string, st fs.FileInfo, deny fs.FileMode) error {
	if uid, foreign := Foreign(st); foreign {
		return fmt.Errorf("%s %s is owned by uid %d, not by root or the user running this (uid %d), who could have put anything there; check what it holds, then run: chown %s %s",
			what, path, uid, os.Geteuid(), userName(), path)
	}
	if bits := Bits(st, deny); bits != 0 {
		verb := "writable"
		if bits&0o044 != 0 {
			verb = "readable or writable"
		}
		return fmt.Errorf("%s %s is %s by group or others (mode %04o); check what it holds, then run: chmod %s %s",
			what, path, verb, st.Mode().Perm(), symbolic(deny), path)
	}
	return nil
}

// userName is how chown names the effective user.
func userName() string {
	if os.Geteuid() == 0 {
		return "root"
	}
	return fmt.Sprint(os.Geteuid())
}

// symbolic writes deny as chmod's removal of those bits, "go-w" for 0o022.
func symbolic(deny fs.FileMode) string {
	var b strings.Builder
	b.WriteString("go-")
	for _, p := range []struct {
		bits fs.FileMode
		c    byte
	}{{0o044, 'r'}, {0o022, 'w'}, {0o011, 'x'}} {
		if deny&p.bits != 0 {
			b.WriteByte(p.c)
		}
	}
	return b.String()
}

// maxLinks bounds the symbolic links a path may go through, as the
// kernel's own bound does (40 on Linux).
const maxLinks = 40

// Resolve returns path with every symbolic link resolved, for a program
// that must then use only that: nothing is looked up again between this
// check and the use. It refuses (with Check's message, dirWhat naming the
// directory, "directory of osqueryd") what another user could point
// elsewhere or move: the directory holding path and every link it goes
// through, the directory holding what it resolves to, and every directory
// above that, must be owned by root or the effective user and writable by
// no one else; one above the holding directory may be sticky, as /tmp is,
// since no one else can move what is in it. What path resolves to is the
// caller's to check.
func Resolve(dirWhat, path string) (string, error) {
	var dirs []string
	hop := filepath.Clean(path)
	for range maxLinks {
		dirs = append(dirs, filepath.Dir(hop))
		lst, err := os.Lstat(hop)
		if err != nil {
			return "", err
		}
		if lst.Mode()&fs.ModeSymlink == 0 {
			break
		}
		target, err := os.Readlink(hop)
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(hop), target)
		}
		hop = filepath.Clean(target)
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", err
	}
	if real, err = filepath.Abs(real); err != nil {
		return "", err
	}
	for _, dir := range dirs {
		st, err := os.Stat(dir)
		if err != nil {
			return "", err
		}
		if err := Check(dirWhat, dir, st, 0o022); err != nil {
			return "", err
		}
	}
	for dir, first := filepath.Dir(real), true; ; dir, first = filepath.Dir(dir), false {
		st, err := os.Lstat(dir)
		if err != nil {
			return "", err
		}
		if first || st.Mode()&fs.ModeSticky == 0 {
			if err := Check(dirWhat, dir, st, 0o022); err != nil {
				return "", err
			}
		}
		if dir == filepath.Dir(dir) {
			return real, nil
		}
	}
}
