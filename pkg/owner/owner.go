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
// check and the use. It walks the path a name at a time, as the kernel
// does, and refuses (with Check's message, dirWhat naming the directory,
// "directory of osqueryd") any directory it looks a name up in that
// another user could change: one owned by neither root nor the effective
// user, or one group or others may write. A directory on the way may be
// sticky, as /tmp is, if its owner is trusted and so is the entry looked
// up in it (no one else can move that entry); the directory holding the
// last name may not. More than maxLinks links is refused. What path
// resolves to is the caller's to check.
func Resolve(dirWhat, path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if !posixMode {
		return filepath.EvalSymlinks(abs)
	}
	rest := splitPath(abs)
	cur := "/"
	links := 0
	for len(rest) > 0 {
		name := rest[0]
		rest = rest[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			cur = filepath.Dir(cur) // cur has no links: the parent is the real one
			continue
		}
		last := onlyDots(rest)
		dst, err := os.Lstat(cur)
		if err != nil {
			return "", err
		}
		sticky := !last && dst.Mode()&fs.ModeSticky != 0
		deny := fs.FileMode(0o022)
		if sticky {
			deny = 0
		}
		if err := Check(dirWhat, cur, dst, deny); err != nil {
			return "", err
		}
		next := filepath.Join(cur, name)
		lst, err := os.Lstat(next)
		if err != nil {
			return "", err
		}
		if sticky {
			// Anyone may write the directory: only the entry's owner (or
			// the directory's, checked above) may move it.
			if uid, foreign := Foreign(lst); foreign {
				return "", fmt.Errorf("%s is owned by uid %d in the directory %s, which others may write: they could have put it there; move it somewhere only root may write", next, uid, cur)
			}
		}
		if lst.Mode()&fs.ModeSymlink == 0 {
			if len(rest) > 0 && !lst.IsDir() { // "f/." names nothing, as "f/g" does not
				return "", fmt.Errorf("%s: %s is not a directory", path, next)
			}
			cur = next
			continue
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("%s: more than %d symbolic links", path, maxLinks)
		}
		target, err := os.Readlink(next)
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) {
			cur = "/"
		}
		rest = append(splitPath(target), rest...)
	}
	return cur, nil
}

// onlyDots reports whether names, what is left of a path, name nothing
// more: only "" and ".", so the name before them is the last.
func onlyDots(names []string) bool {
	for _, n := range names {
		if n != "" && n != "." {
			return false
		}
	}
	return true
}

// splitPath is path's names, "" and "." among them where path has them.
func splitPath(path string) []string {
	return strings.Split(strings.Trim(filepath.ToSlash(path), "/"), "/")
}
