// Command clearance-agent reports this device's security posture to the
// Clearance verifier. `run` is the daemon; the other subcommands install and
// control it, and inspect the device.
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

	"github.com/clearance/clearance/agent/clock"
	"github.com/clearance/clearance/agent/config"
	"github.com/clearance/clearance/agent/devicekey"
	"github.com/clearance/clearance/agent/enroll"
	"github.com/clearance/clearance/agent/osquery"
	"github.com/clearance/clearance/agent/policy"
	"github.com/clearance/clearance/agent/service"
	"github.com/clearance/clearance/agent/state"
	"github.com/clearance/clearance/agent/stream"
	"github.com/clearance/clearance/agent/version"
	policyfile "github.com/clearance/clearance/pkg/policy"
	"github.com/clearance/clearance/pkg/run"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

const usage = `usage: clearance-agent <command> [flags]

commands:
  run        run in the foreground (what the launchd daemon runs)
  check      run the policies once and print the results
  status     show enrollment, device key and service state
  install    install the launchd daemon (macOS) or systemd unit (Linux)
  uninstall  remove it
  start      start the installed service
  stop       stop it
  version    print the version

Run 'clearance-agent <command> -h' for the command's flags.
`

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// errFailed means a command already explained its failure.
var errFailed = errors.New("failed")

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	var err error
	switch cmd {
	case "run":
		err = cmdRun(args, stderr)
	case "check":
		err = cmdCheck(args, stdout, stderr)
	case "status":
		err = cmdStatus(args, stdout, stderr)
	case "install", "uninstall", "start", "stop":
		err = cmdService(cmd, args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, version.Version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "clearance-agent: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errFailed):
		return 1
	default:
		fmt.Fprintf(stderr, "clearance-agent %s: %v\n", cmd, err)
		return 1
	}
}

// loadConfig parses the command's flags and resolves the configuration.
func loadConfig(name string, args []string, stderr io.Writer, extra func(*flag.FlagSet)) (*config.Config, error) {
	fs := flag.NewFlagSet("clearance-agent "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	flags := config.BindFlags(fs)
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return config.Load(config.Inputs{Flags: flags.Given(), ManagedPlist: *flags.ManagedPlist})
}

func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

func newRunner(cfg *config.Config, dir *state.Dir, log *slog.Logger) (*osquery.Runner, error) {
	if err := cfg.RequireOsquery(); err != nil {
		return nil, err
	}
	return osquery.New(osquery.Options{
		Socket:   cfg.OsquerySocket,
		Osqueryd: cfg.OsquerydPath,
		Dir:      dir.File(state.OsqueryDir),
		// A query waits briefly for osqueryd to come back, then reports
		// ERROR instead of holding the whole report up.
		ConnectWait: 5 * time.Second,
		Logger:      log,
	})
}

// signals is the actor that ends the group on SIGINT or SIGTERM.
func signals(g *run.Group) {
	ch := make(chan os.Signal, 1)
	stop := make(chan struct{})
	g.Add("signals", func() error {
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
		defer signal.Stop(ch)
		select {
		case s := <-ch:
			return fmt.Errorf("received %s", s)
		case <-stop:
			return nil
		}
	}, func(error) {
		select {
		case <-stop:
		default:
			close(stop)
		}
	})
}

func cmdRun(args []string, stderr io.Writer) error {
	cfg, err := loadConfig("run", args, stderr, nil)
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel)
	if err := cfg.RequireVerifier(); err != nil {
		return err
	}
	roots, _, err := cfg.CAPool()
	if err != nil {
		return err
	}
	dir, err := state.Open(cfg.StateDir)
	if err != nil {
		return err
	}
	log.Info("starting", "component", "main", "version", version.Version, "config", cfg)

	key, err := devicekey.Open(context.Background(), dir, devicekey.Options{
		PreferSecureEnclave: devicekey.SecureEnclaveSupport() == nil,
		Logger:              log,
	})
	if err != nil {
		return err
	}
	if key.Storage != devicekey.SecureEnclave {
		reason := key.Fallback
		if reason == "" {
			if serr := devicekey.SecureEnclaveSupport(); serr != nil {
				reason = serr.Error()
			}
		}
		log.Warn("device key is a key file, not in the Secure Enclave", "component", "main", "reason", reason)
	}

	oq, err := newRunner(cfg, dir, log)
	if err != nil {
		return err
	}
	// One sense of the verifier's time for enrollment, renewal and reports.
	clk := clock.New(clock.System(), log)
	ids := &enroll.Manager{
		Clock:        clk,
		Dir:          dir,
		Signer:       key,
		Verifier:     cfg.Verifier,
		Roots:        roots,
		EnrollSecret: cfg.EnrollSecret,
		Facts:        func(ctx context.Context) (*agentv1.DeviceFacts, error) { return osquery.Facts(ctx, oq) },
		Logger:       log,
	}
	client := stream.New(stream.Options{
		Clock:    clk,
		Verifier: cfg.Verifier,
		Roots:    roots,
		Identity: ids,
		Signer:   key,
		Dir:      dir,
		Querier:  oq,
		Interval: cfg.Interval,
		Logger:   log,
	})

	var g run.Group
	g.Logger = log
	g.Add("osquery", oq.Execute, oq.Interrupt)
	g.Add("renew", ids.Execute, ids.Interrupt)
	g.Add("stream", client.Execute, client.Interrupt)
	signals(&g)
	err = g.Run()
	log.Info("stopped", "component", "main", "reason", err)
	return nil
}

func cmdCheck(args []string, stdout, stderr io.Writer) error {
	var policiesFile string
	cfg, err := loadConfig("check", args, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&policiesFile, "policies", "", "policies YAML `FILE` (default: the policy set the running agent last received)")
	})
	if err != nil {
		return err
	}
	log := newLogger(stderr, max(cfg.LogLevel, slog.LevelWarn))
	dir, err := state.Open(cfg.StateDir)
	if err != nil {
		return err
	}
	ps, err := checkPolicies(policiesFile, dir)
	if err != nil {
		return err
	}
	oq, err := newRunner(cfg, dir, log)
	if err != nil {
		return err
	}
	var results []*agentv1.PolicyResult
	ctx, cancel := context.WithCancel(context.Background())
	var g run.Group
	g.Logger = log
	g.Add("osquery", oq.Execute, oq.Interrupt)
	g.Add("check", func() error {
		platform, _ := policy.HostPlatform(ctx, oq)
		for _, p := range policy.Filter(ps, platform) {
			results = append(results, policy.Run(ctx, oq, p, nil))
		}
		return nil
	}, func(error) { cancel() })
	signals(&g)
	if err := g.Run(); err != nil {
		return err
	}
	return printResults(stdout, ps, results)
}

// checkPolicies is the policy set check runs: the file's, read by the
// verifier's own rules (pkg/policy), or else the one the daemon last received.
// check never opens its own Connect stream: the verifier keeps one session
// per device, and a second would replace the daemon's.
func checkPolicies(file string, dir *state.Dir) (*agentv1.PolicySet, error) {
	if file != "" {
		set, err := policyfile.Load(file)
		if err != nil {
			return nil, fmt.Errorf("loading policies: %w", err)
		}
		return set.Proto(), nil
	}
	ps, err := dir.LoadPolicySet()
	if err != nil {
		return nil, err
	}
	if ps == nil {
		return nil, fmt.Errorf("no policies: pass --policies FILE, or let `clearance-agent run` receive the policy set from the verifier first (cached in %s)", dir.File(state.PolicySetFile))
	}
	return ps, nil
}

func printResults(w io.Writer, ps *agentv1.PolicySet, results []*agentv1.PolicyResult) error {
	byID := map[string]*agentv1.Policy{}
	for _, p := range ps.GetPolicies() {
		byID[p.GetId()] = p
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tNAME\tMESSAGE")
	failed := false
	for _, r := range results {
		p := byID[r.GetPolicyId()]
		msg := r.GetMessage()
		if r.GetStatus() == agentv1.PolicyStatus_POLICY_STATUS_FAIL {
			msg = p.GetResolution()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.GetPolicyId(), policy.StatusWord(r.GetStatus()), p.GetName(), oneLine(msg))
		if p.GetRequired() && r.GetStatus() != agentv1.PolicyStatus_POLICY_STATUS_PASS {
			failed = true
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if failed {
		return errFailed
	}
	return nil
}

func oneLine(s string) string {
	out := make([]rune, 0, len(s))
	for _, r := range s {
		if r == '\n' || r == '\r' || r == '\t' {
			r = ' '
		}
		out = append(out, r)
	}
	if len(out) > 120 {
		out = append(out[:119], '…')
	}
	return string(out)
}

func cmdStatus(args []string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig("status", args, stderr, nil)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	defer tw.Flush()
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("version", version.Version)
	row("verifier", orNone(cfg.Verifier))
	row("state dir", cfg.StateDir)
	switch {
	case cfg.OsquerySocket != "":
		row("osquery", "attach "+cfg.OsquerySocket)
	case cfg.OsquerydPath != "":
		row("osquery", "spawn "+cfg.OsquerydPath)
	default:
		row("osquery", "not configured")
	}
	if svc, err := service.New(); err == nil {
		row("service", service.Status(svc))
	} else {
		row("service", "unknown ("+err.Error()+")")
	}
	dir := &state.Dir{Path: cfg.StateDir}
	storage, _, kerr := devicekey.Describe(dir)
	switch {
	case kerr == nil && storage == devicekey.SecureEnclave:
		row("device key", "Secure Enclave")
	case kerr == nil:
		why := "key file " + dir.File(state.KeyFile)
		if serr := devicekey.SecureEnclaveSupport(); serr != nil {
			why += "; Secure Enclave unavailable: " + serr.Error()
		} else {
			why += "; Secure Enclave key creation failed at enrollment (see the log)"
		}
		row("device key", why)
	case errors.Is(kerr, os.ErrNotExist):
		row("device key", "none yet")
	default:
		row("device key", "unreadable: "+kerr.Error())
	}
	id, err := dir.LoadIdentity()
	switch {
	case errors.Is(err, state.ErrNotEnrolled):
		row("enrolled", "no")
	case err != nil:
		row("enrolled", "unknown: "+err.Error())
	default:
		row("enrolled", "yes")
		row("device id", id.DeviceID)
		exp := id.Cert.NotAfter.UTC().Format(time.RFC3339)
		if time.Now().After(id.Cert.NotAfter) {
			exp += " (EXPIRED)"
		}
		row("cert expires", exp)
		row("renews at", id.RenewAt().UTC().Format(time.RFC3339))
	}
	if seq, err := dir.LastSeq(); err == nil {
		row("last seq", fmt.Sprint(seq))
	}
	if ps, err := dir.LoadPolicySet(); err == nil && ps != nil {
		row("policy set", fmt.Sprintf("%s (%d policies)", ps.GetVersion(), len(ps.GetPolicies())))
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "not configured"
	}
	return s
}

func cmdService(action string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("clearance-agent "+action, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	svc, err := service.New()
	if err != nil {
		return err
	}
	switch action {
	case "install":
		err = svc.Install()
	case "uninstall":
		err = svc.Uninstall()
	case "start":
		err = svc.Start()
	case "stop":
		err = svc.Stop()
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: done\n", action)
	return nil
}
