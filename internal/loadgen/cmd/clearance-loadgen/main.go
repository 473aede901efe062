// Command clearance-loadgen puts load on a clearance-verifier on this
// machine: simulated agents holding mTLS Connect streams and sending signed
// reports, browsers signing in through its SAML IdP, and live checks; and
// prints what that costs. It starts the verifier itself (--start) or
// targets one already running on loopback. See docs/performance.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/clearance/clearance/internal/loadgen"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "clearance-loadgen:", err)
		}
		os.Exit(1)
	}
}

// steadyConns bounds the connections one browser opens.
const steadyConns = 4

func run(args []string) error {
	fs := flag.NewFlagSet("clearance-loadgen", flag.ContinueOnError)
	var (
		start     = fs.Bool("start", false, "start clearance-verifier from --bin on free loopback ports with a temporary data dir")
		bin       = fs.String("bin", "bin/clearance-verifier", "the verifier binary for --start")
		policies  = fs.String("policies", "examples/policies.yaml", "policy file for --start")
		database  = fs.String("database", "", "the --database for --start (a postgres:// URL; default: SQLite in the data dir)")
		verifier  = fs.String("verifier", "", "gRPC address (HOST:PORT, loopback) of a running verifier")
		sso       = fs.String("sso", "", "a running verifier's --sso-public-url, or its SSO listener's HOST:PORT")
		ssoDial   = fs.String("sso-dial", "", "where to connect for --sso when its host is a name (default: the URL's host:port)")
		dataDir   = fs.String("data-dir", "", "the running verifier's data dir: ca.pem and admin.token are read from it")
		secret    = fs.String("enroll-secret", "", "enroll secret (default: one made through the admin API)")
		pid       = fs.Int("verifier-pid", 0, "the running verifier's pid, for its RSS")
		audience  = fs.String("okta-audience", loadgen.SimAudience, "the running verifier's --okta-audience")
		acs       = fs.String("okta-acs-url", loadgen.SimACSURL, "the running verifier's --okta-acs-url")
		agents    = fs.Int("agents", 500, "simulated agents (each its own key, certificate and connection)")
		failShare = fs.Float64("failing", 0.25, "share of agents reporting failing policies (their sign-ins are denied)")
		srcs      = fs.Int("source-addrs", loadgen.MaxSourceAddrs, "loopback source addresses to spread connections over (127.0.0.1 up)")
		workers   = fs.Int("ramp-workers", 32, "agents enrolled and connected at once")
		rampMax   = fs.Duration("ramp-timeout", 10*time.Minute, "bound on ramp-up")
		interval  = fs.Duration("report-interval", 30*time.Second, "between one agent's reports (sso and steady phases)")
		duration  = fs.Duration("duration", 30*time.Second, "all phases together, split evenly; loadgen stops by itself")
		phases    = fs.String("phases", "ingest,sso,steady", "phases to run, in order; or hostile, alone (the attacks, against the verifier's limits)")
		ingestN   = fs.Int("ingest-concurrency", 1000, "agents sending back to back in the ingest phase")
		client    = fs.String("agent-client", loadgen.ClientLean, "how each agent holds its Connect stream: lean (loadgen's own HTTP/2 frames, for less of the shared cores) or grpc (grpc-go's client, as clearance-agent runs it)")
		signins   = fs.Int("signins", 4, "concurrent browsers signing in from passing Macs, and as many from failing ones")
		rate      = fs.Float64("signin-rate", 0, "sign-ins/s in the steady phase, allowed and denied alike (0: half the sso phase's allow rate)")
		checks    = fs.Float64("check-rate", 5, "live checks/s in the steady phase")
		httpAddr  = fs.String("http", "", "a running verifier's --http-listen HOST:PORT (the hostile phase asks /metrics)")
		hRate     = fs.Float64("hostile-rate", 1000, "hostile: sign-in requests/s of each flood")
		hConns    = fs.Int("hostile-stream-conns", 50, "hostile: connections of the health Watch flood")
		hStreams  = fs.Int("hostile-streams-per-conn", 1000, "hostile: Watch streams opened on each")
		hHeld     = fs.Int("hostile-held-sources", 12, "hostile: addresses each holding 16 connections of 8 calls open without their message")
		hSignins  = fs.Float64("hostile-signin-rate", 10, "hostile: real sign-ins/s meanwhile")
		kv        = fs.Bool("kv", false, "print \"key value\" lines instead of a table")
		verbose   = fs.Bool("v", false, "log progress to stderr")
		debug     = fs.Bool("debug", false, "log each failure too")
		cpuProf   = fs.String("cpuprofile", "", "write loadgen's own CPU profile (the load client's cost, not the verifier's) to this file")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("component", "loadgen")

	if *cpuProf != "" {
		f, err := os.Create(*cpuProf)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Each agent holds one connection, enrolling briefly opens another,
	// browsers and the admin API a few more; the verifier needs as many.
	want := uint64(*agents) + 2*steadyConns*uint64(*signins) + 1024
	if got, err := loadgen.RaiseFileLimit(want); err != nil {
		// The verifier holds one descriptor per agent too, plus its own.
		fmt.Fprintf(os.Stderr, "clearance-loadgen: open files limited to %d, %d wanted (%v): expect fewer than %d agents to connect, and sign-ins to fail if the verifier runs out\n", got, want, err, got)
	}

	var target *loadgen.Target
	if *start {
		if *verifier != "" || *sso != "" || *dataDir != "" {
			return errors.New("--start starts its own verifier: drop --verifier, --sso and --data-dir")
		}
		// Reports at the interval must stay fresh enough that sign-ins are
		// decided from them rather than from a live check.
		hostile := *phases == "hostile"
		p, err := loadgen.Start(ctx, loadgen.StartOptions{Binary: *bin, Policies: *policies, LiveCheckAfter: max(30*time.Second, 3**interval), Database: *database, Hostile: hostile})
		if err != nil {
			return err
		}
		defer func() {
			if err := p.Stop(); err != nil {
				log.Warn("verifier stop", "err", err)
			}
		}()
		target = &p.Target
	} else {
		if *verifier == "" {
			return errors.New("give --start, or --verifier HOST:PORT of a running verifier")
		}
		target = &loadgen.Target{GRPCAddr: *verifier, PID: *pid, OktaAudience: *audience, OktaACSURL: *acs, HTTPAddr: *httpAddr}
		if *dataDir == "" {
			return errors.New("--data-dir of the running verifier is needed for its CA and admin token")
		}
		if err := target.ReadDataDir(*dataDir); err != nil {
			return err
		}
		if *sso != "" {
			u := *sso
			if !strings.Contains(u, "://") {
				u = "https://" + u
			}
			pu, err := url.Parse(u)
			if err != nil || pu.Host == "" {
				return fmt.Errorf("--sso %q is not a URL or HOST:PORT", *sso)
			}
			target.SSOURL = strings.TrimSuffix(u, "/")
			target.SSODial = pu.Host
			if pu.Port() == "" {
				target.SSODial = pu.Hostname() + ":443"
			}
			if *ssoDial != "" {
				target.SSODial = *ssoDial
			}
		} else {
			*signins = 0
		}
	}

	res, err := loadgen.Run(ctx, loadgen.Config{
		Target: target, EnrollSecret: *secret,
		Agents: *agents, FailingShare: *failShare, SourceAddrs: *srcs, RampWorkers: *workers, RampTimeout: *rampMax,
		ReportInterval: *interval, Duration: *duration, Phases: strings.Split(*phases, ","),
		IngestConcurrency: *ingestN, AgentClient: *client, Signins: *signins, SigninRate: *rate, CheckRate: *checks, Log: log,
		Hostile: loadgen.HostileConfig{Rate: *hRate, StreamConns: *hConns, StreamsPerConn: *hStreams, StreamSources: 5,
			HeldSources: *hHeld, SigninRate: *hSignins},
	})
	if res != nil {
		if *kv {
			res.WriteKV(os.Stdout)
		} else {
			res.WriteTable(os.Stdout)
		}
	}
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	return nil
}
