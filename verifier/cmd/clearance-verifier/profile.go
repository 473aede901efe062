package main

import (
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/clearance/clearance/pkg/atomicfile"
	"github.com/clearance/clearance/pkg/certpem"
	"github.com/clearance/clearance/verifier/ca"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/profile"
)

// profileCmd writes configuration profiles for MDM.
func profileCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("profile needs a kind: agent or user-scope")
	}
	switch args[0] {
	case "agent":
		return profileAgent(args[1:], os.Getenv, stdout, stderr)
	case "user-scope":
		return profileUserScope(args[1:], os.Getenv, stdout, stderr)
	default:
		return fmt.Errorf("unknown profile kind %q: use agent or user-scope", args[0])
	}
}

// signFlags are the optional CMS signature flags both profiles take.
type signFlags struct{ cert, key *string }

func addSignFlags(fs *flag.FlagSet) signFlags {
	return signFlags{
		cert: fs.String("sign-cert", "", "PEM file: the signing certificate, then its issuers nearest first; signs the profile (CMS, DER)"),
		key:  fs.String("sign-key", "", "PEM file: the signing certificate's private key (RSA or ECDSA, unencrypted)"),
	}
}

// sign returns doc unchanged when no signing flags are given, or doc wrapped
// in a CMS SignedData.
func (s signFlags) sign(doc []byte) ([]byte, error) {
	if *s.cert == "" && *s.key == "" {
		return doc, nil
	}
	if *s.cert == "" || *s.key == "" {
		return nil, errors.New("--sign-cert and --sign-key go together")
	}
	raw, err := os.ReadFile(*s.cert)
	if err != nil {
		return nil, fmt.Errorf("reading the signing certificate: %w", err)
	}
	certs, err := certpem.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("signing certificate %s: %w", *s.cert, err)
	}
	raw, err = os.ReadFile(*s.key)
	if err != nil {
		return nil, fmt.Errorf("reading the signing key: %w", err)
	}
	key, err := profile.ParseSigningKey(raw)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", *s.key, err)
	}
	return profile.Sign(doc, certs[0], key, certs[1:])
}

// writeProfile writes doc to out ("" or "-": stdout) and says on stderr what
// to do with the file. Profiles carry secrets, so files are 0600.
func writeProfile(out string, doc []byte, stdout, stderr io.Writer, next string) error {
	if out == "" || out == "-" {
		_, err := stdout.Write(doc)
		return err
	}
	if err := atomicfile.Write(out, doc, 0o600); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s; %s\n", out, next)
	return nil
}

// readCert reads the single certificate in DIR/name, which serve created.
func readCert(dataDir, name string) (*x509.Certificate, error) {
	path := filepath.Join(dataDir, name)
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s does not exist: run 'clearance-verifier serve --data-dir %s' once first; its first start creates the CAs", path, dataDir)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	certs, err := certpem.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs[0], nil
}

// profileAgent writes the agent's device-scope profile.
func profileAgent(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("profile agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", getenv("CLEARANCE_DATA_DIR"), "the verifier's data directory, for ca.pem (env CLEARANCE_DATA_DIR)")
	verifier := fs.String("verifier", "", "HOST:PORT agents connect to (the verifier's gRPC listener, as Macs reach it)")
	secret := fs.String("enroll-secret", "", "enroll secret from 'secret create'")
	org := fs.String("organization", "", "organization shown in System Settings")
	interval := fs.Duration("interval", 0, "run every policy this often instead of its own interval (0: each policy's own)")
	out := fs.String("out", "", "write the profile here (0600) instead of stdout ('-': stdout)")
	sf := addSignFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *dataDir == "" {
		return errors.New("--data-dir is required")
	}
	root, err := readCert(*dataDir, ca.RootCertFile)
	if err != nil {
		return err
	}
	doc, err := profile.Agent(profile.AgentOptions{
		Organization: *org, VerifierAddress: *verifier, EnrollSecret: *secret, CACert: root,
		Interval: interval.Round(time.Second),
	})
	if err != nil {
		return err
	}
	if doc, err = sf.sign(doc); err != nil {
		return err
	}
	// The profile carries the enroll secret: keep it private.
	return writeProfile(*out, doc, stdout, stderr, "upload it to your MDM as a device-scope custom profile")
}

// profileUserScope writes the user-scope profile that enrolls the browser's
// device certificate. It reads the same settings as serve (flags, CLEARANCE_*
// variables, --config), so the SCEP and SSO URLs are the ones serve uses.
func profileUserScope(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("profile user-scope", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "write the profile here (0600) instead of stdout ('-': stdout)")
	challenge := fs.String("challenge", "", "SCEP challenge to put in the profile, e.g. a one-time one from 'scep challenge' (default: the scep-challenge setting)")
	org := fs.String("organization", "", "organization shown in System Settings as the profile's publisher")
	uuidVar := fs.String("hardware-uuid-variable", profile.DefaultHardwareUUIDVariable, "variable the SAN carries for the Mac's hardware UUID, when the MDM substitutes its own (e.g. Jamf's $UDID)")
	sf := addSignFlags(fs)
	cfg, err := config.Load(fs, args, getenv)
	if err != nil {
		return err
	}
	c := *challenge
	if c == "" {
		c = cfg.SCEPChallenge
	}
	if strings.TrimSpace(c) == "" {
		return errors.New("no SCEP challenge: pass --challenge (a one-time challenge from 'clearance-verifier scep challenge'), or set the static scep-challenge setting (CLEARANCE_SCEP_CHALLENGE, or scep_challenge in the --config file)")
	}
	root, err := readCert(cfg.DataDir, ca.RootCertFile)
	if err != nil {
		return err
	}
	deviceCA, err := readCert(cfg.DataDir, ca.DeviceCACertFile)
	if err != nil {
		return err
	}
	// Browser certificates chain device CA → root; a profile naming a device
	// CA that this root did not sign would trust one and select by the other.
	if err := deviceCA.CheckSignatureFrom(root); err != nil {
		return fmt.Errorf("%s was not issued by %s: the data dir's CA files do not belong together",
			filepath.Join(cfg.DataDir, ca.DeviceCACertFile), filepath.Join(cfg.DataDir, ca.RootCertFile))
	}
	doc, err := profile.UserScope(profile.UserScopeOptions{
		Organization:         *org,
		SCEPURL:              cfg.SCEPURL(),
		Challenge:            c,
		SSOURL:               cfg.SSOURL(),
		CACert:               root,
		IssuerCN:             deviceCA.Subject.CommonName,
		HardwareUUIDVariable: *uuidVar,
	})
	if err != nil {
		return err
	}
	if doc, err = sf.sign(doc); err != nil {
		return err
	}
	// The profile carries the SCEP challenge: keep it private.
	return writeProfile(*out, doc, stdout, stderr, "upload it to your MDM as a user-scope custom profile (after the agent's device-scope profile)")
}
