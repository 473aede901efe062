package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// commit is the source revision, set at link time by `make build`
// (-X github.com/clearance/clearance/pkg/cli.commit=…). Without it, the
// revision the go command stamped into the binary is used.
var commit string

// BuildInfo says which build a binary is.
type BuildInfo struct {
	Version  string
	Commit   string // "unknown" when neither the linker nor the go command recorded it
	Modified bool   // built from a work tree with uncommitted changes
	Go       string // e.g. go1.26.0 linux/amd64
}

// ReadBuild returns the running binary's build info for version.
func ReadBuild(version string) BuildInfo {
	b := BuildInfo{Version: version, Commit: commit, Go: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				if b.Commit == "" {
					b.Commit = s.Value
				}
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	if b.Commit == "" {
		b.Commit = "unknown"
	}
	if b.Version == "" {
		b.Version = "dev"
	}
	return b
}

// Line is what `version` prints: the program's version, then the commit
// and the Go version on their own labelled lines.
func (b BuildInfo) Line(program string) string {
	c := b.Commit
	if b.Modified {
		c += " (with uncommitted changes)"
	}
	return fmt.Sprintf("%s %s\n  commit  %s\n  go      %s", program, b.Version, c, b.Go)
}
