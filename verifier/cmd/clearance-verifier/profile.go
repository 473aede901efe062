package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/clearance/clearance/pkg/atomicfile"
	"github.com/clearance/clearance/verifier/profile"
)

// profileCmd writes configuration profiles for MDM.
func profileCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "agent" {
		return errors.New("profile needs a kind: agent (the user-scope profile comes with the SCEP endpoint)")
	}
	fs := flag.NewFlagSet("profile agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", os.Getenv("CLEARANCE_DATA_DIR"), "the verifier's data directory, for ca.pem (env CLEARANCE_DATA_DIR)")
	verifier := fs.String("verifier", "", "HOST:PORT agents connect to (the verifier's gRPC listener, as Macs reach it)")
	secret := fs.String("enroll-secret", "", "enroll secret from 'secret create'")
	org := fs.String("organization", "", "organization shown in System Settings")
	interval := fs.Duration("interval", 0, "run every policy this often instead of its own interval (0: each policy's own)")
	out := fs.String("out", "", "write the profile here (0600) instead of stdout")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *dataDir == "" {
		return errors.New("--data-dir is required")
	}
	raw, err := os.ReadFile(filepath.Join(*dataDir, "ca.pem"))
	if err != nil {
		return fmt.Errorf("reading the CA: %w", err)
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		return fmt.Errorf("%s holds no PEM certificate", filepath.Join(*dataDir, "ca.pem"))
	}
	root, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("parsing the CA: %w", err)
	}
	doc, err := profile.Agent(profile.AgentOptions{
		Organization: *org, VerifierAddress: *verifier, EnrollSecret: *secret, CACert: root,
		Interval: interval.Round(time.Second),
	})
	if err != nil {
		return err
	}
	if *out == "" {
		_, err = stdout.Write(doc)
		return err
	}
	// The profile carries the enroll secret: keep it private.
	if err := atomicfile.Write(*out, doc, 0o600); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s; upload it to your MDM as a device-scope custom profile\n", *out)
	return nil
}
