// Package agentpkg assembles clearance-agent's macOS installer: a universal
// binary at /usr/local/clearance/bin/clearance-agent (service.ExecutablePath)
// and its launch daemon plist, both root:wheel, with scripts that refuse a
// Mac where someone other than root controls the binary's directory, stop
// the agent before an upgrade, and load it afterwards.
//
// /usr/local/bin/clearance-agent (LinkPath) is a symbolic link the
// postinstall script makes, not a payload entry: the payload then holds no
// entry for /usr/local/bin, a directory that on Intel Macs with Homebrew is
// the Homebrew user's and whose owner and mode Installer would otherwise be
// told to set (PackageInfo says overwrite-permissions). The script also
// replaces the regular file earlier packages installed there and leaves a
// directory in its place alone, which a payload entry could not.
package agentpkg

import (
	"embed"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/clearance/clearance/agent/service"
	"github.com/clearance/clearance/packaging/flatpkg"
	"github.com/clearance/clearance/packaging/macho"
	"github.com/clearance/clearance/packaging/xar"
)

// Scripts holds preinstall and postinstall, shipped in the package, and
// uninstall, jamf-extension-attribute, kandji-audit and
// intune-custom-attribute, shipped next to it for administrators
// (MDMScripts): those three are given to the MDM, which runs them on each
// Mac to report the agent's standing.
//
//go:embed scripts/preinstall scripts/postinstall scripts/uninstall scripts/jamf-extension-attribute scripts/kandji-audit scripts/intune-custom-attribute
var Scripts embed.FS

// MDMScripts are the scripts in Scripts an MDM runs on each Mac, by the
// name each is given next to the package. Each is a whole file an
// administrator uploads as it is, so the watchdog they share around
// `clearance-agent status` is written out in each, between the same
// marker lines; a test checks the copies are the same.
var MDMScripts = map[string]string{
	"clearance-agent-jamf-extension-attribute.sh": "scripts/jamf-extension-attribute",
	"clearance-agent-kandji-audit.sh":             "scripts/kandji-audit",
	"clearance-agent-intune-custom-attribute.sh":  "scripts/intune-custom-attribute",
}

// LinkPath puts clearance-agent on administrators' PATH. launchd never runs
// it: whoever owns /usr/local/bin can replace it.
const LinkPath = "/usr/local/bin/clearance-agent"

// DefaultMinOSVersion is the oldest macOS the Go toolchain supports.
const DefaultMinOSVersion = "12.0"

// Config is what varies between builds.
type Config struct {
	Version      string // e.g. "1.2.3"
	AgentARM64   []byte // darwin/arm64 clearance-agent
	AgentAMD64   []byte // darwin/amd64 clearance-agent
	MinOSVersion string // defaults to DefaultMinOSVersion
	// ModTime stamps every file, e.g. from SOURCE_DATE_EPOCH.
	ModTime time.Time
	// Signer optionally signs the package.
	Signer *xar.Signer
}

// FileName is the conventional name of the package for version.
func FileName(version string) string {
	return "clearance-agent-" + version + ".pkg"
}

// Build returns the product package.
func Build(c Config) ([]byte, error) {
	if c.Version == "" {
		return nil, errors.New("agentpkg: version is required")
	}
	if c.MinOSVersion == "" {
		c.MinOSVersion = DefaultMinOSVersion
	}
	// 1. One binary for both kinds of Mac.
	fat, err := macho.Fat(c.AgentARM64, c.AgentAMD64)
	if err != nil {
		return nil, fmt.Errorf("merging agent binaries: %w", err)
	}
	// 2. The plist the agent's own install command writes.
	plist, err := service.LaunchdPlist()
	if err != nil {
		return nil, fmt.Errorf("rendering launchd plist: %w", err)
	}
	var scripts []flatpkg.Script
	for _, name := range []string{"preinstall", "postinstall"} {
		b, err := Scripts.ReadFile("scripts/" + name)
		if err != nil {
			return nil, err
		}
		scripts = append(scripts, flatpkg.Script{Name: name, Data: b})
	}
	// 3. The package.
	return flatpkg.Build(flatpkg.Product{
		Title:             "Clearance agent",
		Identifier:        service.Label,
		Version:           strings.TrimPrefix(c.Version, "v"),
		MinOSVersion:      c.MinOSVersion,
		HostArchitectures: []string{"x86_64", "arm64"},
		ComponentName:     "clearance-agent",
		Files: []flatpkg.File{
			{Path: strings.TrimPrefix(service.ExecutablePath, "/"), Mode: 0o755, Data: fat},
			{Path: strings.TrimPrefix(service.LaunchdPlistPath, "/"), Mode: 0o644, Data: plist},
			// /etc is a link to /private/etc on macOS: a payload names
			// the directory itself, never the link.
			{Path: "private" + service.NewsyslogPath, Mode: 0o644, Data: service.NewsyslogConf()},
		},
		Scripts: scripts,
		ModTime: c.ModTime,
		Signer:  c.Signer,
	})
}
