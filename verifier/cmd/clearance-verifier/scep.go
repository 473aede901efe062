package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/clearance/clearance/verifier/enroll"
)

// scepCmd makes one-time SCEP challenges by writing to the database
// directly, so it works whether or not the server is running.
func scepCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "challenge" {
		return errors.New("scep needs a subcommand: challenge")
	}
	fs := flag.NewFlagSet("scep challenge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := storeFlags(fs)
	ttl := fs.Duration("ttl", enroll.DefaultChallengeTTL, "how long the challenge can be used (1m to 720h)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	store, err := db.open(ctx)
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
