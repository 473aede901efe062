package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/clearance/clearance/pkg/agentprefs"
	"github.com/clearance/clearance/pkg/atomicfile"
	"github.com/clearance/clearance/pkg/certpem"
	"github.com/clearance/clearance/pkg/cli"
	"github.com/clearance/clearance/verifier/ca"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/datadir"
	"github.com/clearance/clearance/verifier/enroll"
	"github.com/clearance/clearance/verifier/profile"
	"github.com/clearance/clearance/verifier/server"
	"github.com/clearance/clearance/verifier/storage/sqlstore"
)

// profileCmd writes configuration profiles for MDM.
func (a *app) profileCmd() *cli.Command {
	return &cli.Command{
		Name:    "profile",
		Summary: "write the .mobileconfig profiles your MDM installs on Macs",
		Commands: []*cli.Command{
			{
				Name:    "agent",
				Summary: "the agent's device-scope profile: verifier address, CA and enroll secret",
				Doc: "Writes the device-scope profile that configures clearance-agent: the verifier's address, " +
					"its root CA (from the data dir's ca.pem) and an enroll secret. Upload it to your MDM before the agent's package.\n\n" +
					"  CLEARANCE_ENROLL_SECRET=\"$SECRET\" \\\n" +
					"  clearance-verifier profile agent --data-dir /var/lib/clearance \\\n" +
					"    --verifier clearance.example.com:8443 \\\n" +
					"    --organization \"Example Corp\" --out agent.mobileconfig",
				Footer: config.SharedFooter,
				Flags:  a.profileAgent,
			},
			{
				Name:    "login-item",
				Summary: "keeps the agent allowed in the background: a managed login item (macOS 13 and later)",
				Doc: "Writes a device-scope profile with one managed login items payload (com.apple.servicemanagement) " +
					"naming the agent daemon's launchd label, com.clearance.agent, and osqueryd's (--osquery-label): macOS " +
					"keeps both allowed in the background and shows them in System Settings as managed by your organization, " +
					"without the switch that would stop them (a person with an administrator's password has that switch " +
					"otherwise; with either off, every sign-in from the Mac is denied). macOS " +
					"accepts it only from an MDM, not installed by hand. It holds no secret and needs no data dir.\n\n" +
					"  clearance-verifier profile login-item --organization \"Example Corp\" \\\n" +
					"    --out clearance-login-item.mobileconfig",
				Flags: a.profileLoginItem,
			},
			{
				Name:    "user-scope",
				Summary: "the user-scope profile that gets the browser its device certificate over SCEP",
				Doc: "Writes the user-scope profile that makes macOS create a key in the user's keychain and get " +
					"a browser certificate from the verifier's SCEP endpoint. It reads the same settings as serve " +
					"(flags, CLEARANCE_* variables, --config), so the SCEP and SSO URLs are the ones serve uses.",
				Footer: config.SharedFooter,
				Flags:  a.profileUserScope,
			},
		},
	}
}

// signFlags are the optional CMS signature flags both profiles take.
type signFlags struct{ cert, key *string }

func addSignFlags(fs *cli.FlagSet) signFlags {
	fs.Group("Signing")
	return signFlags{
		cert: fs.String("sign-cert", "", "PEM file (`path`) of the signing certificate, then its issuers nearest first; signs the profile (CMS, DER)"),
		key:  fs.String("sign-key", "", "PEM file (`path`) of the signing certificate's private key (RSA or ECDSA, unencrypted)"),
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

// checkVerifierName refuses a --verifier host the verifier's TLS
// certificate (DIR/tls.pem) does not name: every Mac would refuse the
// connection ("certificate is valid for …, not …"). A data dir without one
// yet, or an address that does not parse (profile.Agent says why), is
// left to the rest.
func checkVerifierName(dataDir, verifier string) error {
	host, _, err := net.SplitHostPort(verifier)
	if err != nil || host == "" {
		return nil
	}
	cert, err := readCert(dataDir, ca.TLSCertFile)
	if err != nil {
		return nil
	}
	if cert.VerifyHostname(host) == nil {
		return nil
	}
	names := append([]string(nil), cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		names = append(names, ip.String())
	}
	return cli.Usagef("--verifier %q: the verifier's certificate (%s) is for %s, not %s, so every Mac would refuse to connect; give one of those names, or serve with a --public-url naming %s (its certificate is issued again for it)",
		verifier, filepath.Join(dataDir, ca.TLSCertFile), strings.Join(names, ", "), host, host)
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

// checkProfileSecret refuses an enroll secret the verifier would refuse:
// a profile carrying it goes to every Mac, and each would be turned away.
// A secret that expires is accepted with a note of when.
func (a *app) checkProfileSecret(ctx context.Context, cfg *config.Config, secret string) error {
	// Reading must not change the database: opening it migrates, which
	// would give a data dir whose SQLite file is gone, or a PostgreSQL
	// database no verifier has opened, an empty schema (and the message
	// would blame the secret), or move an older verifier's schema on
	// under it. So the schema is read first, and checked only when it is
	// this binary's.
	unchecked := " (--unchecked-secret writes the profile without checking it)"
	db := cfg.Database
	if cfg.DataDir != "" {
		var err error
		if db, err = datadir.Database(cfg.DataDir, cfg.Database); err != nil {
			return fmt.Errorf("checking the enroll secret: %w%s", err, unchecked)
		}
	} else if db == "" {
		return fmt.Errorf("checking the enroll secret: --data-dir is required%s", unchecked)
	}
	where := "the PostgreSQL database"
	if db == "" {
		where = cfg.DataDir
	}
	current, latest, err := server.DatabaseSchema(ctx, cfg.DataDir, db)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("checking the enroll secret: %s has no database to check it in; is it the data dir serve uses?%s", cfg.DataDir, unchecked)
	case err != nil:
		return fmt.Errorf("checking the enroll secret: %w%s", err, unchecked)
	case current == 0:
		return fmt.Errorf("checking the enroll secret: %s holds no verifier's tables: no serve has used it; is it the database serve uses?%s", where, unchecked)
	case current < latest:
		return fmt.Errorf("checking the enroll secret: %s's schema is version %d, older than this clearance-verifier's %d: an older verifier serves it, and checking would migrate it under that one; run the clearance-verifier of the version serve runs%s", where, current, latest, unchecked)
	case current > latest:
		return fmt.Errorf("checking the enroll secret: %w%s", sqlstore.NewerSchema(current, latest), unchecked)
	}
	store, err := openDatabase(ctx, cfg)
	if err != nil {
		return fmt.Errorf("checking the enroll secret: %w%s", err, unchecked)
	}
	defer store.Close()
	rec, err := enroll.CheckSecret(ctx, store, secret, a.now())
	why := ""
	switch {
	case errors.Is(err, enroll.ErrSecretInvalid):
		why = "is not one this verifier's database holds (mistyped, or another verifier's)"
	case errors.Is(err, enroll.ErrSecretRevoked):
		why = "has been revoked"
	case errors.Is(err, enroll.ErrSecretExpired):
		why = "expired at " + rec.ExpiresAt.UTC().Format(time.RFC3339)
	case errors.Is(err, enroll.ErrSecretExhausted):
		why = fmt.Sprintf("has been used as many times as it may (%d, its --max-uses)", rec.MaxUses)
	case err != nil:
		return fmt.Errorf("checking the enroll secret: %w%s", err, unchecked)
	}
	if why != "" {
		// Never the secret itself: its id is enough to find it.
		return fmt.Errorf("the enroll secret %s: every Mac would be refused; make one with 'secret create' (see 'secret list')", why)
	}
	if !rec.ExpiresAt.IsZero() {
		fmt.Fprintf(a.stderr, "note: enroll secret %s expires at %s; before then make a new one and push a new profile\n", rec.ID, rec.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return nil
}

// enrollSecretEnv gives profile agent its enroll secret without a command
// line, where ps shows it; the agent reads the same variable.
const enrollSecretEnv = "CLEARANCE_ENROLL_SECRET"

// profileAgent writes the agent's device-scope profile.
func (a *app) profileAgent(fs *cli.FlagSet) cli.Action {
	b := config.Bind(fs, "data-dir", "database", "max-posture-age")
	fs.Lookup("max-posture-age").Usage = "serve's setting: an --interval longer than it leaves every Mac's posture stale between runs, which the command warns of"
	fs.Group("Profile")
	verifier := fs.String("verifier", "", "where Macs reach the verifier's gRPC listener, `host:port`")
	secret := fs.String("enroll-secret", "", "enroll `secret` from 'secret create' (env CLEARANCE_ENROLL_SECRET, which keeps it off the command line)")
	unchecked := fs.Bool("unchecked-secret", false, "write the profile without asking the verifier's database whether the enroll secret works (a database this host cannot reach)")
	org := fs.String("organization", "", "organization shown in System Settings as the profile's publisher (required)")
	interval := fs.Duration("interval", 0, "run every policy this often instead of at its own interval")
	runBudget := fs.Duration("run-budget", 0, "longest one run of the policies may take on the Mac ("+agentprefs.MinRunBudget.String()+" to "+agentprefs.MaxRunBudget.String()+"; unset, the agent's "+agentprefs.DefaultRunBudget.String()+"); the policies not reached by then are reported as ERROR")
	fs.Group("osquery")
	socket := fs.String("osquery-socket", profile.DefaultOsquerySocket, "the extensions socket (`path`) of the osqueryd the agent attaches to: osquery's own daemon, or Fleet's orbit ('' with --osqueryd)")
	osqueryd := fs.String("osqueryd", "", "instead, an osqueryd binary (`path`) the agent runs and supervises itself")
	fs.Group("Output")
	out := fs.String("out", "", "write the profile (0600) to this `path` instead of stdout ('-': stdout)")
	sf := addSignFlags(fs)
	return func(ctx context.Context, _ []string) error {
		if err := needOrganization(*org); err != nil {
			return err
		}
		if *osqueryd != "" && *socket == profile.DefaultOsquerySocket {
			// --osqueryd alone means spawn: the default socket gives way.
			*socket = ""
		}
		if !fs.Given("enroll-secret") {
			*secret = a.getenv(enrollSecretEnv)
		}
		cfg, err := b.Resolve(a.getenv)
		if err != nil {
			return err
		}
		if cfg.DataDir == "" {
			return cli.Usagef("--data-dir is required")
		}
		root, err := readCert(cfg.DataDir, ca.RootCertFile)
		if err != nil {
			return err
		}
		if err := checkVerifierName(cfg.DataDir, *verifier); err != nil {
			return err
		}
		doc, err := profile.Agent(profile.AgentOptions{
			Organization: *org, VerifierAddress: *verifier, EnrollSecret: *secret, CACert: root,
			Interval: *interval, RunBudget: *runBudget,
			OsquerySocket: *socket, OsquerydPath: *osqueryd,
		})
		if err != nil {
			return err
		}
		if !*unchecked {
			if err := a.checkProfileSecret(ctx, cfg, *secret); err != nil {
				return err
			}
		}
		if *interval > 0 && *interval < profile.MinFleetInterval {
			fmt.Fprintf(a.stderr, "note: --interval %s: every Mac the profile reaches runs every policy that often; %s or more suits a fleet\n", interval, profile.MinFleetInterval)
		}
		if *interval > cfg.MaxPostureAge {
			fmt.Fprintf(a.stderr, "note: --interval %s is longer than the verifier's --max-posture-age %s: between runs a Mac's posture is too old to sign in with, and each sign-in waits for a live check (or is denied as stale_posture when it cannot run)\n",
				interval, cfg.MaxPostureAge)
		}
		if doc, err = sf.sign(doc); err != nil {
			return err
		}
		// The profile carries the enroll secret: keep it private.
		return writeProfile(*out, doc, a.stdout, a.stderr, "upload it to your MDM as a device-scope custom profile")
	}
}

// needOrganization is a usage error unless --organization names one: every
// profile shows its publisher in System Settings.
func needOrganization(org string) error {
	if strings.TrimSpace(org) == "" {
		return cli.Usagef("--organization is required (shown to users in System Settings as the profile's publisher)")
	}
	return nil
}

// profileLoginItem writes the profile that makes the agent's daemon a
// managed login item.
func (a *app) profileLoginItem(fs *cli.FlagSet) cli.Action {
	fs.Group("Profile")
	org := fs.String("organization", "", "organization shown in System Settings as the profile's publisher (required)")
	osq := fs.String("osquery-label", profile.DefaultOsqueryLabel, "launchd `label` of the osqueryd the agent checks through, kept running too: "+
		profile.OrbitLabel+" for Fleet's orbit, '' for none (an agent with --osqueryd)")
	fs.Group("Output")
	out := fs.String("out", "", "write the profile (0600) to this `path` instead of stdout ('-': stdout)")
	sf := addSignFlags(fs)
	return func(context.Context, []string) error {
		if err := needOrganization(*org); err != nil {
			return err
		}
		doc, err := profile.LoginItem(profile.LoginItemOptions{Organization: *org, OsqueryLabel: *osq})
		if err != nil {
			return err
		}
		if doc, err = sf.sign(doc); err != nil {
			return err
		}
		return writeProfile(*out, doc, a.stdout, a.stderr, "upload it to your MDM as a device-scope custom profile, beside the agent profile")
	}
}

// profileUserScope writes the user-scope profile that enrolls the browser's
// device certificate. It reads the settings serve derives the SCEP and SSO
// URLs from, by the same rules.
func (a *app) profileUserScope(fs *cli.FlagSet) cli.Action {
	b := config.Bind(fs, "data-dir", "public-url", "sso-listen", "sso-public-url", "scep-challenge")
	fs.Group("Profile")
	challenge := fs.String("challenge", "", "SCEP challenge to put in the profile, e.g. a one-time one from 'scep challenge' (default: the scep-challenge setting)")
	org := fs.String("organization", "", "organization shown in System Settings as the profile's publisher (required)")
	uuidVar := fs.String("hardware-uuid-variable", profile.DefaultHardwareUUIDVariable, "variable the SAN carries for the Mac's hardware UUID, when the MDM substitutes its own (e.g. Jamf's $UDID)")
	fs.Group("Output")
	out := fs.String("out", "", "write the profile (0600) to this `path` instead of stdout ('-': stdout)")
	sf := addSignFlags(fs)
	return func(context.Context, []string) error {
		if err := needOrganization(*org); err != nil {
			return err
		}
		cfg, err := a.resolveDataDir(b)
		if err != nil {
			return err
		}
		return userScope(cfg, *challenge, *org, *uuidVar, *out, sf, a.stdout, a.stderr)
	}
}

func userScope(cfg *config.Config, challenge, org, uuidVar, out string, sf signFlags, stdout, stderr io.Writer) error {
	c := challenge
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
		Organization:         org,
		SCEPURL:              cfg.SCEPURL(),
		Challenge:            c,
		SSOURL:               cfg.SSOURL(),
		CACert:               root,
		IssuerCN:             deviceCA.Subject.CommonName,
		HardwareUUIDVariable: uuidVar,
	})
	if err != nil {
		return err
	}
	if doc, err = sf.sign(doc); err != nil {
		return err
	}
	// The profile carries the SCEP challenge: keep it private.
	return writeProfile(out, doc, stdout, stderr, "upload it to your MDM as a user-scope custom profile (after the agent's device-scope profile)")
}
