package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/enroll"
	"github.com/clearance/clearance/verifier/server"
	"github.com/clearance/clearance/verifier/storage/storagetest"
)

// TestSCEPChallenge: the CLI prints a one-time challenge as its last line,
// stores only its hash, and it is usable until its lifetime ends.
func TestSCEPChallenge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := newDataDir(t)

	var out, errOut bytes.Buffer
	if err := runMain(ctx, []string{"scep", "challenge", "--data-dir", dir, "--ttl", "2h"}, &out, &errOut); err != nil {
		t.Fatalf("%v: %s", err, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	challenge := lines[len(lines)-1]
	if len(challenge) < 32 || strings.Contains(errOut.String(), challenge) {
		t.Fatalf("challenge %q; stderr %q", challenge, errOut.String())
	}
	store, err := server.OpenStore(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for at, want := range map[time.Time]bool{time.Now(): true, time.Now().Add(3 * time.Hour): false} {
		ok, err := store.SCEPChallengeUsable(ctx, enroll.ChallengeHash(challenge), at)
		if err != nil || ok != want {
			t.Errorf("usable at %s: %v %v, want %v", at, ok, err, want)
		}
	}
	dump, err := storagetest.Dump(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(dump, challenge) {
		t.Error("the challenge itself is stored")
	}
	data, _ := os.ReadFile(filepath.Join(dir, server.DBFile))
	if bytes.Contains(data, []byte(challenge)) {
		t.Error("the challenge is in the database file")
	}

	for _, args := range [][]string{
		{"scep"}, {"scep", "other"}, {"scep", "challenge"},
		{"scep", "challenge", "--data-dir", dir, "--ttl", "10s"},
		{"scep", "challenge", "--data-dir", filepath.Join(dir, "nope")},
	} {
		if err := runMain(ctx, args, &out, &errOut); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}
