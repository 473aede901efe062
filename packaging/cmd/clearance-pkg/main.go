// Command clearance-pkg builds clearance-agent's macOS installer package on
// any OS:
//
//	clearance-pkg -version 1.2.3 [-arm64 FILE -amd64 FILE] [-o FILE]
//
// Without -arm64 and -amd64 it cross-compiles the agent for both
// architectures itself (needs the Go toolchain and this module). With
// SOURCE_DATE_EPOCH set, every timestamp in the package is that time and
// two builds from the same inputs are byte-identical.
//
// With -sign-cert (PEM: the Developer ID Installer certificate, then its
// issuers) and -sign-key (PEM RSA private key) the package is signed.
package main

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/clearance/clearance/packaging/agentpkg"
	"github.com/clearance/clearance/packaging/internal/agentbuild"
	"github.com/clearance/clearance/packaging/xar"
)

func main() {
	if err := run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr, time.Now); err != nil {
		fmt.Fprintln(os.Stderr, "clearance-pkg:", err)
		os.Exit(1)
	}
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer, now func() time.Time) error {
	fs := flag.NewFlagSet("clearance-pkg", flag.ContinueOnError)
	fs.SetOutput(stderr)
	version := fs.String("version", "", "package and agent version, e.g. 1.2.3 (required)")
	arm64 := fs.String("arm64", "", "prebuilt darwin/arm64 clearance-agent (with -amd64)")
	amd64 := fs.String("amd64", "", "prebuilt darwin/amd64 clearance-agent (with -arm64)")
	out := fs.String("o", "", "output file (default dist/clearance-agent-VERSION.pkg)")
	minOS := fs.String("min-os", agentpkg.DefaultMinOSVersion, "minimum macOS version")
	uninstall := fs.String("uninstall-script", "", "also write the uninstall script to this file")
	mdmScripts := fs.String("mdm-scripts", "", "also write the scripts an MDM runs on each Mac (a Jamf Pro extension attribute, a Kandji audit, an Intune custom attribute) into this directory")
	commit := fs.String("commit", "", "source revision the agent it builds reports in --version (make pkg gives it)")
	signCert := fs.String("sign-cert", "", "PEM certificate chain to sign with, leaf first (with -sign-key)")
	signKey := fs.String("sign-key", "", "PEM RSA private key of the signing certificate (with -sign-cert)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *version == "" {
		return errors.New("-version is required")
	}
	if !versionPattern.MatchString(*version) {
		return fmt.Errorf("-version %q is not a version: 1 to 64 letters, digits, '.', '-', '+' and '_', not starting with '-' (1.2.3, 1.2.3-rc.1, 0.0.0-dev)", *version)
	}
	if (*arm64 == "") != (*amd64 == "") {
		return errors.New("-arm64 and -amd64 go together")
	}
	if *commit != "" && !commitPattern.MatchString(*commit) {
		return fmt.Errorf("-commit %q is not a revision: hex digits (7 to 64), then -dirty for a work tree with changes", *commit)
	}
	if *commit != "" && *arm64 != "" {
		return errors.New("-commit is linked into the agents it builds; prebuilt ones (-arm64, -amd64) carry their own")
	}
	if (*signCert == "") != (*signKey == "") {
		return errors.New("-sign-cert and -sign-key go together")
	}
	var signer *xar.Signer
	if *signCert != "" {
		var err error
		if signer, err = loadSigner(*signCert, *signKey); err != nil {
			return err
		}
		if leaf := signer.Chain[0]; !strings.HasPrefix(leaf.Subject.CommonName, developerIDInstaller) {
			fmt.Fprintf(stderr, "clearance-pkg: warning: the signing certificate (%q) is not a %q certificate: Installer, Gatekeeper and the MDMs that check a package's signature will not trust it\n",
				leaf.Subject.CommonName, strings.TrimSuffix(developerIDInstaller, ": "))
		}
	}
	if *out == "" {
		*out = filepath.Join("dist", agentpkg.FileName(*version))
	}

	// 1. Timestamps: SOURCE_DATE_EPOCH makes the build reproducible.
	mtime := now().UTC().Truncate(time.Second)
	if s := getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil || sec < 0 {
			return fmt.Errorf("SOURCE_DATE_EPOCH %q is not a non-negative number of seconds", s)
		}
		mtime = time.Unix(sec, 0).UTC()
	} else {
		fmt.Fprintln(stderr, "clearance-pkg: SOURCE_DATE_EPOCH not set; using the current time, so this build is not reproducible")
	}

	// 2. Agent binaries, given or built.
	var armBin, amdBin []byte
	var err error
	if *arm64 != "" {
		if armBin, err = os.ReadFile(*arm64); err != nil {
			return err
		}
		if amdBin, err = os.ReadFile(*amd64); err != nil {
			return err
		}
	} else {
		tmp, err := os.MkdirTemp("", "clearance-pkg-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		if armBin, amdBin, err = agentbuild.BuildBoth(*version, *commit, tmp); err != nil {
			return err
		}
	}

	// 3. The package.
	pkg, err := agentpkg.Build(agentpkg.Config{
		Version: *version, AgentARM64: armBin, AgentAMD64: amdBin,
		MinOSVersion: *minOS, ModTime: mtime, Signer: signer,
	})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(*out, pkg, 0o644); err != nil {
		return err
	}
	// Each file written, a line each, the package first.
	written := []string{*out}
	if *uninstall != "" {
		b, err := agentpkg.Scripts.ReadFile("scripts/uninstall")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*uninstall, b, 0o755); err != nil {
			return err
		}
		written = append(written, *uninstall)
	}
	if *mdmScripts != "" {
		if err := os.MkdirAll(*mdmScripts, 0o755); err != nil {
			return err
		}
		for _, name := range slices.Sorted(maps.Keys(agentpkg.MDMScripts)) {
			b, err := agentpkg.Scripts.ReadFile(agentpkg.MDMScripts[name])
			if err != nil {
				return err
			}
			path := filepath.Join(*mdmScripts, name)
			if err := os.WriteFile(path, b, 0o755); err != nil {
				return err
			}
			written = append(written, path)
		}
	}
	for _, path := range written {
		fmt.Fprintln(stdout, path)
	}
	return nil
}

// versionPattern is what -version takes: 1 to 64 letters, digits, '.',
// '-', '+' and '_', not starting with '-' (1.2.3, 1.2.3-rc.1, 0.0.0-dev,
// 1.2.3+build.5). It is linked into the agents it builds and names the
// package's file: nothing else reaches the linker's flags or the path.
var versionPattern = regexp.MustCompile(`^[A-Za-z0-9._+][A-Za-z0-9._+-]{0,63}$`)

// commitPattern is what -commit takes: a git revision, as make pkg gives
// it (git rev-parse HEAD, "-dirty" after it for a work tree with changes).
// Nothing else reaches the linker's flags.
var commitPattern = regexp.MustCompile(`^[0-9a-f]{7,64}(-dirty)?$`)

// developerIDInstaller begins the common name of every certificate Apple
// issues for signing installer packages outside the App Store
// ("Developer ID Installer: Example Corp (TEAMID1234)").
const developerIDInstaller = "Developer ID Installer: "

// loadSigner reads a PEM certificate chain and a PEM private key (PKCS #8
// or PKCS #1).
func loadSigner(certFile, keyFile string) (*xar.Signer, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	var chain []*x509.Certificate
	for rest := certPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", certFile, err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate", certFile)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, fmt.Errorf("%s holds no PEM key", keyFile)
	}
	var key crypto.Signer
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%s: unsupported key type %T", keyFile, k)
		}
		key = s
	} else if k, err1 := x509.ParsePKCS1PrivateKey(block.Bytes); err1 == nil {
		key = k
	} else {
		return nil, fmt.Errorf("parsing %s: %w", keyFile, err)
	}
	s := &xar.Signer{Key: key, Chain: chain}
	// Check now, so a wrong key fails before any build work.
	if err := xar.NewWriter(time.Time{}).Sign(s); err != nil {
		return nil, err
	}
	return s, nil
}
