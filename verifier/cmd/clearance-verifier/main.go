// Command clearance-verifier enrolls agents, verifies and stores their signed
// posture reports, and answers the security team's questions about devices.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/clearance/clearance/pkg/run"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/enroll"
	"github.com/clearance/clearance/verifier/server"
	"github.com/clearance/clearance/verifier/storage"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `clearance-verifier: keeps Macs that fail security policies out of Okta-protected apps.

Usage:
  clearance-verifier serve --data-dir DIR --policies FILE [flags]
  clearance-verifier secret create --data-dir DIR [--description TEXT]
  clearance-verifier secret list   --data-dir DIR
  clearance-verifier secret revoke --data-dir DIR ID
  clearance-verifier scep challenge --data-dir DIR [--ttl 24h]
  clearance-verifier profile agent --data-dir DIR --verifier HOST:PORT --enroll-secret S \
                                   --organization NAME [--out FILE] [--sign-cert FILE --sign-key FILE]
  clearance-verifier profile user-scope --data-dir DIR --organization NAME [--challenge C] \
                                   [--out FILE] [--sign-cert FILE --sign-key FILE] [serve's flags]
  clearance-verifier okta setup    --data-dir DIR [--sso-public-url URL] [--terraform]
  clearance-verifier version

Run 'clearance-verifier serve -h' for every server flag. With PostgreSQL
(serve --database postgres://...), give secret and scep the same --database.
`

func main() {
	if err := runMain(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "clearance-verifier:", err)
		}
		os.Exit(2)
	}
}

func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stderr)
	case "secret":
		return secret(ctx, args[1:], stdout, stderr)
	case "scep":
		return scepCmd(ctx, args[1:], stdout, stderr)
	case "profile":
		return profileCmd(args[1:], stdout, stderr)
	case "okta":
		return oktaCmd(args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, version)
		return nil
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg, err := config.Load(fs, args, os.Getenv)
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	slog.SetDefault(log)
	srv, err := server.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer srv.Close()

	var g run.Group
	g.Logger = log
	if err := srv.Actors(&g); err != nil {
		return err
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	stop := make(chan struct{})
	g.Add("signals", func() error {
		select {
		case sig := <-sigs:
			log.Info("shutting down", "component", "main", "signal", sig.String())
		case <-stop:
		}
		return nil
	}, func(error) { signal.Stop(sigs); close(stop) })
	log.Info("clearance-verifier started", "component", "main", "version", version, "data_dir", cfg.DataDir, "public_url", cfg.PublicURL)
	return g.Run()
}

// dbFlags are the flags of the commands that write to the verifier's
// database directly (so they work whether or not the server runs).
type dbFlags struct{ dataDir, database *string }

func storeFlags(fs *flag.FlagSet) dbFlags {
	return dbFlags{
		dataDir:  fs.String("data-dir", os.Getenv("CLEARANCE_DATA_DIR"), "the verifier's data directory (env CLEARANCE_DATA_DIR)"),
		database: fs.String("database", os.Getenv("CLEARANCE_DATABASE"), "the verifier's --database, when it is PostgreSQL (env CLEARANCE_DATABASE)"),
	}
}

// open opens the database the flags name: PostgreSQL, or the data dir's SQLite.
func (f dbFlags) open(ctx context.Context) (storage.Store, error) {
	if *f.database == "" {
		if *f.dataDir == "" {
			return nil, errors.New("--data-dir is required")
		}
		if _, err := os.Stat(*f.dataDir); err != nil {
			return nil, fmt.Errorf("data dir: %w (start 'clearance-verifier serve' once to create it)", err)
		}
	}
	return server.OpenDatabase(ctx, *f.dataDir, *f.database)
}

// secret manages enroll secrets by writing to the database directly, so it
// works whether or not the server is running.
func secret(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("secret needs a subcommand: create, list or revoke")
	}
	sub := args[0]
	fs := flag.NewFlagSet("secret "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := storeFlags(fs)
	desc := ""
	if sub == "create" {
		fs.StringVar(&desc, "description", "", "what the secret is for, e.g. 'Jamf, engineering Macs'")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	store, err := db.open(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	switch sub {
	case "create":
		if fs.NArg() != 0 {
			return fmt.Errorf("unexpected argument %q", fs.Arg(0))
		}
		rec, value, err := enroll.CreateSecret(ctx, store, desc, "cli", time.Now())
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "Created enroll secret %s. It is shown only once:\n", rec.ID)
		fmt.Fprintln(stdout, value)
		return nil
	case "list":
		recs, err := store.ListEnrollSecrets(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tCREATED\tUSES\tSTATE\tDESCRIPTION")
		for _, r := range recs {
			state := "active"
			if r.Revoked() {
				state = "revoked " + r.RevokedAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", r.ID, r.CreatedAt.UTC().Format(time.RFC3339), r.Uses, state, r.Description)
		}
		return tw.Flush()
	case "revoke":
		if fs.NArg() != 1 {
			return errors.New("secret revoke needs exactly one secret ID (see 'secret list')")
		}
		now := time.Now()
		rec, err := store.RevokeEnrollSecret(ctx, fs.Arg(0), now,
			storage.AuditEvent{At: now, Actor: "cli", Action: "secret.revoke", Detail: "enroll secret " + fs.Arg(0) + " revoked"})
		if errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("no enroll secret %q (see 'secret list')", fs.Arg(0))
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked %s\n", rec.ID)
		return nil
	default:
		return fmt.Errorf("unknown secret subcommand %q: use create, list or revoke", sub)
	}
}
