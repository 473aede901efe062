// Package agentbuild cross-compiles clearance-agent for macOS: the package
// command uses it when not given prebuilt binaries, and the packaging tests
// use it for real darwin executables.
package agentbuild

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"unicode"
)

// Package is the import path of the agent's main package.
const Package = "github.com/clearance/clearance/agent/cmd/clearance-agent"

// VersionVar is the variable the agent reports its version from.
const VersionVar = "github.com/clearance/clearance/agent/version.Version"

// CommitVar is the variable `clearance-agent --version` reports the source
// revision from (make build links it the same way).
const CommitVar = "github.com/clearance/clearance/pkg/cli.commit"

// Build compiles clearance-agent for darwin/goarch into dir and returns the
// binary's path; a non-empty version and commit are linked in (neither may
// start with '-' or hold white space or a quote). CGO is off so any host
// can cross-compile (the agent then falls back from the Secure Enclave to a
// key file); -trimpath and an empty build id keep the output independent of
// the build directory.
func Build(goarch, version, commit, dir string) (string, error) {
	// Each is one word of -ldflags, which cmd/go splits at white space
	// and quotes: whatever else the caller checked, no value becomes a
	// linker flag of its own.
	for _, v := range []struct{ name, value string }{{"version", version}, {"commit", commit}} {
		if strings.HasPrefix(v.value, "-") || strings.ContainsFunc(v.value, func(r rune) bool { return unicode.IsSpace(r) || r == '\'' || r == '"' }) {
			return "", fmt.Errorf("agentbuild: %s %q cannot be linked in: it starts with '-' or holds white space or a quote", v.name, v.value)
		}
	}
	out := filepath.Join(dir, "clearance-agent-"+goarch)
	ldflags := "-buildid="
	if version != "" {
		ldflags += " -X " + VersionVar + "=" + version
	}
	if commit != "" {
		ldflags += " -X " + CommitVar + "=" + commit
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags="+ldflags, "-o", out, Package)
	cmd.Env = append(os.Environ(), "GOOS=darwin", "GOARCH="+goarch, "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building clearance-agent for darwin/%s: %w: %s", goarch, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// BuildBoth builds the arm64 and amd64 agents into dir and returns their
// contents in that order.
func BuildBoth(version, commit, dir string) (arm64, amd64 []byte, err error) {
	var bins [2][]byte
	for i, arch := range []string{"arm64", "amd64"} {
		p, err := Build(arch, version, commit, dir)
		if err != nil {
			return nil, nil, err
		}
		if bins[i], err = os.ReadFile(p); err != nil {
			return nil, nil, err
		}
	}
	return bins[0], bins[1], nil
}
