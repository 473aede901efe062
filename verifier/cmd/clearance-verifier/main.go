// Command clearance-verifier enrolls agents, verifies and stores their signed
// posture reports, and answers the security team's questions about devices.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/clearance/clearance/pkg/cli"
	"github.com/clearance/clearance/pkg/run"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/datadir"
	"github.com/clearance/clearance/verifier/server"
	"github.com/clearance/clearance/verifier/storage"
)

// version is set at build time with -ldflags "-X main.version=…" (make build does).
var version = "dev"

// app is one run of the command: where it writes, what environment it
// reads, and its clock. Tests make their own.
type app struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	// lookupenv tells a variable set empty from one unset; nil: getenv
	// only (tests).
	lookupenv func(string) (string, bool)
	now       func() time.Time
	// termWidth is stdout's width in columns when it is a terminal, else
	// 0; nil: not a terminal (tests).
	termWidth func() int
	// oktaHTTP, when set, reaches Okta (tests: a fake org's certificate).
	oktaHTTP *http.Client
}

func main() {
	a := &app{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, lookupenv: os.LookupEnv, now: time.Now, termWidth: stdoutWidth}
	os.Exit(a.program().Run(context.Background(), os.Args[1:]))
}

// runMain runs args with the process environment and returns the command's
// error unprinted (help and the version print and return nil).
func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	a := &app{stdout: stdout, stderr: stderr, getenv: os.Getenv, lookupenv: os.LookupEnv, now: time.Now}
	return a.program().Execute(ctx, args)
}

func (a *app) program() *cli.Program {
	return &cli.Program{
		Name: "clearance-verifier",
		Summary: "clearance-verifier keeps Macs that fail your security policies out of Okta-protected apps: " +
			"it enrolls agents, verifies their signed posture reports, and is the identity provider Okta asks at every sign-in.",
		Version: cli.ReadBuild(version).Line("clearance-verifier"),
		Stdout:  a.stdout,
		Stderr:  a.stderr,
		Commands: []*cli.Command{
			a.serveCmd(),
			a.devicesCmd(),
			a.decisionsCmd(),
			a.policiesCmd(),
			a.explainCmd(),
			a.auditCmd(),
			a.peopleCmd(),
			a.secretCmd(),
			a.exemptionCmd(),
			a.scimCmd(),
			a.adminTokenCmd(),
			a.scepCmd(),
			a.profileCmd(),
			a.oktaCmd(),
			a.cloudflareCmd(),
			a.backupCmd(), a.restoreCmd(),
		},
	}
}

func (a *app) serveCmd() *cli.Command {
	return &cli.Command{
		Name:    "serve",
		Summary: "run the verifier: agents, the admin API, sign-ins, SCEP, health and metrics",
		Doc: "Runs the verifier. On its first start with an empty data dir it creates the CAs (ca.pem is what " +
			"agents and browsers trust), the admin token, the SAML signing certificate and the SQLite database, " +
			"and records in the data dir which database it uses, so the other commands act on the same one. " +
			"SIGHUP reloads the policy file and applies a change to enforcement in the settings file; " +
			"any other setting changed there is logged and needs a restart.\n\n" +
			"  clearance-verifier serve --data-dir /var/lib/clearance \\\n    --policies policies.yaml",
		Footer: config.Footer,
		Flags: func(fs *cli.FlagSet) cli.Action {
			b := config.Bind(fs)
			return func(ctx context.Context, _ []string) error {
				cfg, err := a.resolveDataDir(b)
				if err != nil {
					return err
				}
				return a.serve(ctx, b, cfg)
			}
		},
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

func (a *app) serve(ctx context.Context, b *config.Binding, cfg *config.Config) error {
	log := newLogger(a.stderr, cfg.LogLevel, cfg.LogFormat)
	slog.SetDefault(log)
	// SIGHUP reads the settings file again, with the same flags and
	// environment.
	srv, err := server.New(ctx, cfg, log, server.WithSettingsReread(func() (*config.Config, error) { return b.Resolve(a.getenv) }))
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
	err = g.Run()
	if err != nil {
		log.Error("clearance-verifier stopped", "component", "main", "err", err)
	} else {
		log.Info("clearance-verifier stopped", "component", "main")
	}
	return err
}

// resolveDataDir resolves b's settings, which must name a data dir.
func (a *app) resolveDataDir(b *config.Binding) (*config.Config, error) {
	cfg, err := b.Resolve(a.getenv)
	if err != nil {
		return nil, err
	}
	if cfg.DataDir == "" {
		return nil, cli.Usagef("%v", config.ErrNoDataDir)
	}
	return cfg, nil
}

// announce prints what a command made: what it is on stderr, and value
// alone as the last line of stdout, where scripts read it.
func (a *app) announce(value any, format string, args ...any) {
	fmt.Fprintf(a.stderr, format, args...)
	fmt.Fprintln(a.stdout, value)
}

// doc is a document a command prints (a setup guide, Terraform), built in
// memory and written in one go.
type doc struct{ b strings.Builder }

func (d *doc) p(format string, args ...any) { fmt.Fprintf(&d.b, format, args...) }

func (d *doc) writeTo(w io.Writer) error {
	_, err := io.WriteString(w, d.b.String())
	return err
}

// databaseSettings are what the commands that write to the verifier's
// database directly bind: they work whether or not the server runs.
var databaseSettings = []string{"data-dir", "database"}

// openDatabase opens the database the verifier serving cfg.DataDir uses
// (datadir.Database), or, with no data dir, the PostgreSQL database
// --database names (one that several replicas share).
func openDatabase(ctx context.Context, cfg *config.Config) (storage.Store, error) {
	switch {
	case cfg.DataDir != "":
		db, err := datadir.Database(cfg.DataDir, cfg.Database)
		if err != nil {
			return nil, err
		}
		return server.OpenDatabase(ctx, cfg.DataDir, db)
	case cfg.Database != "":
		return server.OpenDatabase(ctx, "", cfg.Database)
	}
	return nil, cli.Usagef("--data-dir is required (or CLEARANCE_DATA_DIR, or data_dir in the config file; " +
		"with PostgreSQL, --database alone will do)")
}
