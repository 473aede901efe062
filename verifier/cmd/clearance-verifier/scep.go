package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/clearance/clearance/verifier/enroll"
	"github.com/clearance/clearance/verifier/server"
)

// scepCmd makes one-time SCEP challenges by writing to the database
// directly, so it works whether or not the server is running.
func scepCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "challenge" {
		return errors.New("scep needs a subcommand: challenge")
	}
	fs := flag.NewFlagSet("scep challenge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", os.Getenv("CLEARANCE_DATA_DIR"), "the verifier's data directory (env CLEARANCE_DATA_DIR)")
	database := fs.String("database", os.Getenv("CLEARANCE_DATABASE"), "the verifier's --database, when it is PostgreSQL (env CLEARANCE_DATABASE)")
	ttl := fs.Duration("ttl", enroll.DefaultChallengeTTL, "how long the challenge can be used (1m to 720h)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *database == "" {
		if *dataDir == "" {
			return errors.New("--data-dir is required")
		}
		if _, err := os.Stat(*dataDir); err != nil {
			return fmt.Errorf("data dir: %w (start 'clearance-verifier serve' once to create it)", err)
		}
	}
	store, err := server.OpenDatabase(ctx, *dataDir, *database)
	if err != nil {
		return err
	}
	defer store.Close()
	challenge, expires, err := enroll.CreateChallenge(ctx, store, *ttl, "cli", time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "Created a one-time SCEP challenge, usable until %s. It is shown only once:\n", expires.UTC().Format(time.RFC3339))
	fmt.Fprintln(stdout, challenge)
	return nil
}
