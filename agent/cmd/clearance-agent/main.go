// Command clearance-agent reports this device's security posture to the
// Clearance verifier. `run` is the daemon; the other subcommands install and
// control it, and inspect the device.
package main

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/clearance/clearance/agent/clock"
	"github.com/clearance/clearance/agent/config"
	"github.com/clearance/clearance/agent/devicekey"
	"github.com/clearance/clearance/agent/enroll"
	"github.com/clearance/clearance/agent/logfile"
	"github.com/clearance/clearance/agent/osquery"
	"github.com/clearance/clearance/agent/policy"
	"github.com/clearance/clearance/agent/presence"
	"github.com/clearance/clearance/agent/service"
	"github.com/clearance/clearance/agent/state"
	"github.com/clearance/clearance/agent/stream"
	"github.com/clearance/clearance/agent/version"
	"github.com/clearance/clearance/pkg/agentprefs"
	"github.com/clearance/clearance/pkg/cli"
	policyfile "github.com/clearance/clearance/pkg/policy"
	"github.com/clearance/clearance/pkg/printable"
	"github.com/clearance/clearance/pkg/run"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	kservice "github.com/kardianos/service"
)

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// errFailed means a command already explained its failure.
var errFailed = cli.ErrReported

// realMain runs args and returns the exit code: 0, 1 when a command
// fails, 2 for a usage error; status exits with the Mac's standing (3 to
// 5, see standing).
func realMain(args []string, stdout, stderr io.Writer) int {
	return program(stdout, stderr).Run(context.Background(), args)
}

// osquerySettings and logSettings are the flags (by name) of the commands
// that run queries and log.
var (
	osquerySettings = []string{"osquery-socket", "osqueryd", "state-dir"}
	logSettings     = []string{"log-level", "log-format"}
)

func program(stdout, stderr io.Writer) *cli.Program {
	return &cli.Program{
		Name: "clearance-agent",
		Summary: "clearance-agent reports this Mac's security posture to the Clearance verifier: it runs " +
			"osquery policy queries and streams signed posture reports, and proves to the verifier that a " +
			"sign-in comes from this Mac.",
		Version: cli.ReadBuild(version.Version).Line("clearance-agent"),
		Stdout:  stdout,
		Stderr:  stderr,
		Commands: []*cli.Command{
			{
				Name:    "run",
				Summary: "run in the foreground (what the launchd daemon runs)",
				Doc: "Runs the agent in the foreground: enrolls with the enroll secret if it has no identity yet, " +
					"keeps a stream to the verifier, runs the policies it pushes and sends signed reports. " +
					"On a Mac, launchd runs this with the settings MDM delivers.\n\n" +
					"  CLEARANCE_ENROLL_SECRET=\"$SECRET\" clearance-agent run \\\n" +
					"    --verifier clearance.example.com:8443 --ca-file ca.pem \\\n" +
					"    --osquery-socket /var/osquery/osquery.em --state-dir /var/db/clearance\n\n" +
					"The enroll secret goes in the environment or the profile, not on the command line, " +
					"where every local user can read it with ps.",
				Footer: config.Footer,
				Flags: func(fs *cli.FlagSet) cli.Action {
					flags := config.Bind(fs)
					return func(context.Context, []string) error { return cmdRun(flags, stderr) }
				},
			},
			{
				Name:    "check",
				Summary: "run the policies once and print PASS, FAIL or ERROR for each",
				Doc: "Runs the policies once through osquery and prints each one's result. It exits 1 when a " +
					"required policy does not pass. Without --policies it runs the policy set the daemon last " +
					"received from the verifier; it never connects to the verifier itself. It runs every policy " +
					"whatever the time; those that finished after the run budget, which the daemon would report " +
					"as ERROR, are marked, fail the check when required, and the run's time is said.",
				Footer: config.Footer,
				Flags: func(fs *cli.FlagSet) cli.Action {
					flags := config.Bind(fs, append(append(osquerySettings, "run-budget"), logSettings...)...)
					fs.Group(config.GroupPolicies)
					policies := fs.String("policies", "", "policies YAML file (`path`) to run instead of the set the daemon last received")
					return func(context.Context, []string) error { return cmdCheck(flags, *policies, stdout, stderr) }
				},
			},
			{
				Name:    "status",
				Summary: "show enrollment, device key, service and configuration; exit with the Mac's standing",
				Doc:     statusHelp,
				Footer:  config.Footer,
				Flags: func(fs *cli.FlagSet) cli.Action {
					flags := config.Bind(fs, append([]string{"verifier", "run-budget"}, osquerySettings...)...)
					fs.Group("Output")
					asJSON := fs.Bool("json", false, "print the same facts as one JSON object")
					return func(context.Context, []string) error { return cmdStatus(flags, *asJSON, stdout) }
				},
			},
			{
				Name:    "rotate-key",
				Summary: "move the device to a new key, proven by the current one",
				Doc: "Creates a new device key and keeps the current one until the verifier accepts the new key: " +
					"the agent's next enrollment carries the current key's signature over the new key's request, " +
					"so no approval is needed. The certificate of the current key is set aside. Stop the agent " +
					"first (it refuses while the agent runs with the state dir): it takes the new key when it starts.\n\n" +
					"  sudo /usr/local/clearance/bin/clearance-agent stop\n  sudo /usr/local/clearance/bin/clearance-agent rotate-key\n  sudo /usr/local/clearance/bin/clearance-agent start",
				Footer: config.Footer,
				Flags: func(fs *cli.FlagSet) cli.Action {
					flags := config.Bind(fs)
					return func(ctx context.Context, _ []string) error { return cmdRotateKey(ctx, flags, stdout, stderr) }
				},
			},
			serviceCmd("install", "install the launchd daemon (macOS) or systemd unit (Linux)", service.New, stdout),
			serviceCmd("uninstall", "remove the installed service", service.New, stdout),
			serviceCmd("start", "start the installed service", service.New, stdout),
			serviceCmd("stop", "stop the installed service", service.New, stdout),
		},
	}
}

// loadConfig resolves the configuration of the settings flags bound.
func loadConfig(flags *config.Flags) (*config.Config, error) {
	return config.Load(flags.Inputs())
}

func newLogger(w io.Writer, level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == agentprefs.LogJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
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
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	signalsOn(g, ch, func() { signal.Stop(ch) })
}

// signalsOn is the actor that ends the group on a signal from ch, which
// its caller registered (for every run of the agent at once: a signal
// between two runs waits for the next); done, when set, runs as it ends.
func signalsOn(g *run.Group, ch <-chan os.Signal, done func()) {
	stop := make(chan struct{})
	g.Add("signals", func() error {
		if done != nil {
			defer done()
		}
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

// settingsPoll is how often a running agent reads its settings again: a
// profile an MDM replaced (a new enroll secret, a verifier that moved, a
// CA rotated) takes effect within it, or at once on SIGHUP.
const settingsPoll = 30 * time.Second

// errSettingsChanged ends a run whose settings changed under it: the agent
// starts again with them.
var errSettingsChanged = errors.New("settings changed")

// settingsWatch is the actor that reads the settings again every
// settingsPoll and on SIGHUP, and ends the group with errSettingsChanged
// when one differs from running's. Settings that no longer read are
// logged (once until they change) and change nothing.
// rej, when set, are the newer settings the run started without: when
// they failed to start a run (rej.cfg), the same again start nothing;
// when they did not read or would not run at the agent's start, the same
// error is not logged again. The settings to start with are left in
// *next. hup delivers SIGHUP, registered by the caller for every run at
// once; on SIGHUP even the rejected settings are tried again (what failed
// them, a directory's mode, say, may have been fixed).
// rec, when set, records what the watcher finds for `status`.
func settingsWatch(g *run.Group, flags *config.Flags, running *config.Config, rej *rejection, next **config.Config, hup <-chan os.Signal, log *slog.Logger, rec *runningRecord) {
	stop := make(chan struct{})
	var once sync.Once
	var rejected *config.Config
	lastErr := ""
	if rej != nil {
		rejected = rej.cfg
		if rej.cfg == nil {
			lastErr = rej.why // said at the start
		}
	}
	g.Add("settings", func() error {
		tick := time.NewTicker(settingsPoll)
		defer tick.Stop()
		for {
			asked := false
			select {
			case <-stop:
				return nil
			case <-tick.C:
			case <-hup:
				asked = true
			}
			cfg, err := loadConfig(flags)
			if err == nil {
				// What the run would check at its start: a profile half
				// replaced, or one that names no CA its pin matches, must
				// not stop an agent that runs.
				err = runnable(cfg)
			}
			if err != nil {
				if err.Error() != lastErr {
					log.Error("new settings would not run; the agent keeps running with those it has", "component", "main", "err", err)
					lastErr = err.Error()
					var keys []string
					if cfg != nil {
						keys = config.Changed(running, cfg)
					}
					rec.reject(rejectedWhy(err, running, cfg), reportedWhy(err), keys)
				}
				continue
			}
			lastErr = ""
			if rejected != nil && !asked && len(config.Changed(rejected, cfg)) == 0 {
				continue // they did not start; said when they did not
			}
			if changed := config.Changed(running, cfg); len(changed) > 0 {
				log.Info("settings changed; the agent starts again with them", "component", "main", "changed", changed)
				*next = cfg
				return errSettingsChanged
			}
			// The files say what runs again: no rejection stands.
			rec.clear()
		}
	}, func(error) { once.Do(func() { close(stop) }) })
}

// runningRecord keeps the state dir's record of the running agent
// (state.Running) for `status`: the settings a run started with, and the
// last new settings it would not take. A record that cannot be written is
// logged once; the agent runs on.
type runningRecord struct {
	dir *state.Dir
	log *slog.Logger
	// mu guards rec: the settings watcher writes it, the stream reads
	// the rejection for every report (rejected).
	mu     sync.Mutex
	rec    state.Running
	failed bool
}

// rejection is newer settings a run starts without: why, and the keys
// they changed (none when they did not read). cfg, when set, are those
// settings: they passed runnable, and failed to start a run.
type rejection struct {
	cfg        *config.Config
	why, brief string // brief: reportedWhy
	keys       []string
}

// startRecord records a run starting with cfg (newRecord).
func startRecord(dir *state.Dir, cfg *config.Config, rej *rejection, log *slog.Logger) *runningRecord {
	r := newRecord(dir, cfg, rej, log)
	r.save()
	return r
}

// newRecord is the record of a run starting with cfg, not written yet;
// rej, when set, are the newer settings it starts without. Settings from
// the record of the last settings that ran are recorded as such, with
// when they ran.
func newRecord(dir *state.Dir, cfg *config.Config, rej *rejection, log *slog.Logger) *runningRecord {
	r := &runningRecord{dir: dir, log: log, rec: state.Running{
		PID: os.Getpid(), Version: version.Version, StartedAt: time.Now(), Settings: config.Fingerprints(cfg), Pinned: config.Pinned(cfg),
		LastRanAt: cfg.RecordedAt(),
	}}
	if rej != nil {
		r.rec.RejectedAt, r.rec.Rejected, r.rec.RejectedKeys, r.rec.RejectedBrief = time.Now(), rej.why, rej.keys, rej.brief
	}
	return r
}

// recordLastRan keeps the settings a run started with as the last
// settings that ran, for a start where the files' would not run. Those
// that came from that record are kept as they are. A record that cannot
// be written is logged; the agent runs on.
func recordLastRan(dir *state.Dir, cfg *config.Config, log *slog.Logger) {
	if !cfg.RecordedAt().IsZero() {
		return
	}
	raw, err := json.Marshal(cfg.Record(time.Now()))
	if err == nil {
		err = dir.SaveLastSettings(append(raw, '\n'))
	}
	if err != nil {
		log.Warn("the settings that ran were not recorded; a later start whose settings would not run cannot fall back to them", "component", "main", "err", err)
	}
}

func (r *runningRecord) save() {
	if err := r.dir.SaveRunning(r.rec); err != nil && !r.failed {
		r.failed = true
		r.log.Warn("the record of the settings in use was not written; 'status' will not show them", "component", "main", "err", err)
	}
}

// reject records new settings that would not run.
func (r *runningRecord) reject(why, brief string, keys []string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rec.RejectedAt, r.rec.Rejected, r.rec.RejectedKeys, r.rec.RejectedBrief = time.Now(), why, keys, brief
	r.save()
}

// clear records that the files say what runs again.
func (r *runningRecord) clear() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rec.RejectedAt.IsZero() {
		return
	}
	r.rec.RejectedAt, r.rec.Rejected, r.rec.RejectedKeys, r.rec.RejectedBrief = time.Time{}, "", nil, ""
	r.save()
}

// rejected is what the agent's reports say of its settings
// (stream.Options.SettingsRejected): when it rejected the settings it
// was given, and why without a value (reportedWhy), with the keys they
// changed; zero when it runs on them.
func (r *runningRecord) rejected() (time.Time, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rec.RejectedAt.IsZero() {
		return time.Time{}, ""
	}
	why := r.rec.RejectedBrief
	if why == "" {
		why = reportedWhy(nil)
	}
	if len(r.rec.RejectedKeys) > 0 {
		why += " (the new ones changed " + strings.Join(r.rec.RejectedKeys, ", ") + ")"
	}
	return r.rec.RejectedAt, why + "; 'clearance-agent status' on the Mac says why"
}

// reportedWhy is a rejection as the agent's reports tell the verifier:
// the refused setting by its key, or the known key an unknown one looks
// like, and never a value from the settings: a value an admin put under
// the wrong key may be a new enroll secret, and whoever may read the
// verifier's devices would read it. status on the Mac says all of it.
func reportedWhy(err error) string {
	var se *config.SettingError
	var uk *agentprefs.UnknownKeyError
	switch {
	case errors.As(err, &se):
		return "the new settings' " + se.Key + " was refused"
	case errors.As(err, &uk) && uk.Meant != "":
		return "the new settings have an unknown key (did you mean " + uk.Meant + "?)"
	case errors.As(err, &uk):
		return "the new settings have an unknown key"
	}
	return "the new settings do not read or would not run"
}

// rejectedWhy is err as a rejection records it: a value the settings'
// checks quote (a path, an address) is never the enroll secret of the
// settings that run or of the rejected ones (known: those that read),
// which would otherwise reach status, the state dir and the verifier.
func rejectedWhy(err error, cfgs ...*config.Config) string {
	why := err.Error()
	for _, c := range cfgs {
		if c != nil && c.EnrollSecret != "" {
			why = strings.ReplaceAll(why, c.EnrollSecret, "(the enroll secret)")
		}
	}
	return why
}

// runSignals are the signals cmdRun registered for all its runs.
type runSignals struct{ term, hup <-chan os.Signal }

// runnable checks what a run checks of its settings before it starts.
func runnable(cfg *config.Config) error {
	if err := cfg.RequireVerifier(); err != nil {
		return err
	}
	if _, _, err := cfg.CAPool(); err != nil {
		return err
	}
	return cfg.RequireOsquery()
}

// cmdRun runs the agent, again from its settings each time they change
// (agentLoop), until SIGINT or SIGTERM.
func cmdRun(flags *config.Flags, stderr io.Writer) error {
	// Once for every run: between two runs a signal waits for the next,
	// where its default would end the process (and leave osqueryd).
	term, hup := make(chan os.Signal, 1), make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGINT, syscall.SIGTERM)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(term)
	defer signal.Stop(hup)
	return agentLoop(flags, runSignals{term: term, hup: hup}, stderr)
}

// agentLoop runs the agent, again from its settings each time they change.
// New settings that fail to start a run (a state dir others may write, a
// browser list for another platform: whatever the watcher's checks did not
// catch) give way to the settings that ran, until the settings change
// again. At the agent's start, the settings that ran are those it
// recorded last (startSettings): a profile that does not read or would
// not run, or whose settings fail to start, does not stop an agent that
// ran before.
func agentLoop(flags *config.Flags, sig runSignals, stderr io.Writer) error {
	cfg, rej, err := startSettings(flags, stderr)
	if err != nil {
		return err
	}
	// Under launchd, standard output and error are the agent's log:
	// follow it when newsyslog rotates it.
	logCtx, stopLog := context.WithCancel(context.Background())
	defer stopLog()
	logPath, logEvery := logfile.Followed(service.LogPath)
	go logfile.Follow(logPath, 1, 2).Run(logCtx, logEvery, newLogger(stderr, cfg.LogLevel, cfg.LogFormat))
	var ran *config.Config
	// Whether the first run's settings have had the record's: once, and
	// not when they are the record's already.
	tried := !cfg.RecordedAt().IsZero()
	for {
		next, started, err := runOnce(flags, cfg, rej, sig, stderr)
		switch {
		case errors.Is(err, errSettingsChanged):
			ran, cfg, rej = cfg, next, nil
		case !started && ran != nil:
			newLogger(stderr, ran.LogLevel, ran.LogFormat).Error("new settings would not start; the agent runs again with those that ran", "component", "main", "err", err)
			rej = &rejection{cfg: cfg, why: rejectedWhy(err, ran, cfg), brief: reportedWhy(err), keys: config.Changed(ran, cfg)}
			cfg, ran = ran, nil
		case !started && !tried:
			tried = true
			last, lerr := lastRan(flags, cfg)
			if lerr != nil || last == nil || len(config.Changed(last, cfg)) == 0 {
				return err // nothing else to run: as on a first start
			}
			newLogger(stderr, last.LogLevel, last.LogFormat).Error("settings would not start; the agent runs with the last settings that ran", "component", "main",
				"err", err, "recorded_at", last.RecordedAt(), "changed", config.Changed(last, cfg))
			rej = &rejection{cfg: cfg, why: rejectedWhy(err, last, cfg), brief: reportedWhy(err), keys: config.Changed(last, cfg)}
			cfg = last
		default:
			return err
		}
	}
}

// startSettings are the settings the agent starts with: the files' (and
// the command line's and environment's), or, when those do not read or
// would not run (a misspelt key, a profile half pushed or removed), the
// last settings that ran, said once at ERROR and recorded for status with
// why. With none recorded (a first start), the files' error is the
// agent's.
func startSettings(flags *config.Flags, stderr io.Writer) (*config.Config, *rejection, error) {
	cfg, err := loadConfig(flags)
	if err == nil {
		if err = runnable(cfg); err == nil {
			return cfg, nil, nil
		}
	}
	last, lerr := lastRan(flags, cfg)
	switch {
	case lerr != nil:
		return nil, nil, fmt.Errorf("%w (and the last settings that ran do not read: %v)", err, lerr)
	case last == nil:
		return nil, nil, err
	}
	if rerr := runnable(last); rerr != nil {
		return nil, nil, fmt.Errorf("%w (and the last settings that ran would not run either: %v)", err, rerr)
	}
	var keys []string
	if cfg != nil {
		keys = config.Changed(last, cfg)
	}
	newLogger(stderr, last.LogLevel, last.LogFormat).Error("settings would not run; the agent runs with the last settings that ran", "component", "main",
		"err", err, "recorded_at", last.RecordedAt(), "changed", keys)
	return last, &rejection{why: rejectedWhy(err, last, cfg), brief: reportedWhy(err), keys: keys}, nil
}

// lastRan returns the last settings that ran, as the state dir records
// them, with this start's command line and environment over them; nil
// when none are recorded. The state dir is the one cfg names, or, when
// the settings do not read (cfg nil), the one config.StateDir finds. A
// state dir that does not exist is not made.
func lastRan(flags *config.Flags, cfg *config.Config) (*config.Config, error) {
	in := flags.Inputs()
	var path string
	if cfg != nil {
		path = cfg.StateDir
	} else {
		var err error
		if path, _, err = config.StateDir(in); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	dir, err := state.Open(path)
	if err != nil {
		return nil, err
	}
	raw, err := dir.LoadLastSettings()
	if err != nil || raw == nil {
		return nil, err
	}
	var rec config.Recorded
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("%s: %w", dir.File(state.LastSettingsFile), err)
	}
	in.Recorded = &rec
	return config.Load(in)
}

// runOnce runs the agent with cfg until it is stopped or its settings
// change (errSettingsChanged, with next the new ones); started says
// whether it got as far as running. rej is as settingsWatch's. Settings
// that get as far as running are recorded as the last that ran.
func runOnce(flags *config.Flags, cfg *config.Config, rej *rejection, sig runSignals, stderr io.Writer) (next *config.Config, started bool, err error) {
	log := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	if err := cfg.RequireVerifier(); err != nil {
		return nil, false, err
	}
	roots, _, err := cfg.CAPool()
	if err != nil {
		return nil, false, err
	}
	dir, err := state.Open(cfg.StateDir)
	if err != nil {
		return nil, false, err
	}
	// One agent at a time with a state dir: two would share its key and
	// report sequence, and status could not tell which one runs.
	release, err := dir.LockRunning()
	if err != nil {
		return nil, false, err
	}
	defer release()
	log.Info("starting", "component", "main", "version", version.Version, "config", cfg)
	if len(cfg.Ignored) > 0 {
		// A profile made for a newer agent, or a key no agent knows.
		log.Warn("settings keys this agent version does not know are ignored", "component", "main", "keys", cfg.Ignored)
	}

	key, err := devicekey.Open(context.Background(), dir, devicekey.Options{
		PreferSecureEnclave: devicekey.SecureEnclaveSupport() == nil,
		Logger:              log,
	})
	if err != nil {
		return nil, false, err
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

	// A rotation under way (clearance-agent rotate-key): the previous key
	// proves the new one at the next enrollment.
	previous, err := devicekey.OpenPrevious(context.Background(), dir)
	if err != nil {
		return nil, false, fmt.Errorf("the key a rotation replaced: %w", err)
	}

	oq, err := newRunner(cfg, dir, log)
	if err != nil {
		return nil, false, err
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
		OnRotated:    func(ctx context.Context) error { return devicekey.ForgetPrevious(ctx, dir) },
		Logger:       log,
	}
	if previous != nil {
		ids.Previous = previous
	}
	// What runs, for status and the reports: written once it runs.
	rec := newRecord(dir, cfg, rej, log)
	client := stream.New(stream.Options{
		Clock:     clk,
		Verifier:  cfg.Verifier,
		Roots:     roots,
		Identity:  ids,
		Signer:    key,
		Dir:       dir,
		Querier:   oq,
		Interval:  cfg.Interval,
		RunBudget: cfg.RunBudget,
		// 0 (the default) except in test builds (clock.MaxBackoff).
		MaxBackoff:       clock.MaxBackoff(),
		SettingsRejected: rec.rejected,
		Logger:           log,
	})

	var g run.Group
	g.Logger = log
	g.Add("osquery", oq.Execute, oq.Interrupt)
	g.Add("renew", ids.Execute, ids.Interrupt)
	g.Add("stream", client.Execute, client.Interrupt)
	if cfg.PresenceListen != agentprefs.PresenceOff {
		p, err := newPresenceActor(cfg, ids, key, client, clk.Now, log)
		if err != nil {
			return nil, false, err
		}
		g.Add("presence", p.Execute, p.Interrupt)
	}
	signalsOn(&g, sig.term, nil)
	rec.save() // before the group runs: no lock is needed yet
	recordLastRan(dir, cfg, log)
	settingsWatch(&g, flags, cfg, rej, &next, sig.hup, log, rec)
	err = g.Run()
	if errors.Is(err, errSettingsChanged) {
		return next, true, err
	}
	log.Info("stopped", "component", "main", "reason", err)
	return nil, true, nil
}

// presenceRetry is how long the agent waits before trying again to listen
// for proofs of presence when the address is taken.
const presenceRetry = 30 * time.Second

// presenceActor serves the loopback endpoint where the Mac's browser gets
// this Mac's proof of presence at sign-in. A taken port does not stop the
// agent's posture reports: the endpoint is retried until it can listen, and
// each failure is logged.
type presenceActor struct {
	open func() (*presence.Server, error)
	// browserCheck says whether only allowed browsers get proofs.
	browserCheck bool
	log          *slog.Logger
	stop         chan struct{}
	once         sync.Once
}

func newPresenceActor(cfg *config.Config, ids *enroll.Manager, key crypto.Signer, client *stream.Client, now func() time.Time, log *slog.Logger) (*presenceActor, error) {
	opts, err := presenceOptions(cfg, ids, key, client, now, log)
	if err != nil {
		return nil, err // a bad browser list is a configuration error
	}
	return &presenceActor{
		open:         func() (*presence.Server, error) { return presence.New(opts) },
		browserCheck: opts.Peer != nil, log: log.With("component", "main"), stop: make(chan struct{}),
	}, nil
}

// Execute listens (retrying while the address is taken) and serves until
// Interrupt.
func (p *presenceActor) Execute() error {
	for {
		srv, err := p.open()
		if err == nil {
			p.log.Info("presence endpoint listening", "addr", srv.Addr().String(), "browser_check", p.browserCheck)
			done := make(chan error, 1)
			go func() { done <- srv.Execute() }() // owned: ended by Interrupt below
			select {
			case err := <-done:
				return err
			case <-p.stop:
				srv.Interrupt(nil)
				return <-done
			}
		}
		p.log.Error("presence endpoint unavailable; sign-ins from this Mac cannot be proven until it listens", "err", err, "retry_in", presenceRetry)
		select {
		case <-time.After(presenceRetry):
		case <-p.stop:
			return nil
		}
	}
}

// Interrupt stops Execute.
func (p *presenceActor) Interrupt(error) { p.once.Do(func() { close(p.stop) }) }

// presenceOptions configure the endpoint: proofs for the presence URL the
// verifier names over the stream, signed with the device key, for the
// browsers the settings allow.
// Statements carry the time in the verifier's clock (now), as reports do.
func presenceOptions(cfg *config.Config, ids *enroll.Manager, key crypto.Signer, client *stream.Client, now func() time.Time, log *slog.Logger) (presence.Options, error) {
	var peer presence.PeerCheck
	if presence.BrowserCheckDefault || len(cfg.PresenceBrowsers) > 0 {
		var b presence.Browsers
		for _, e := range cfg.PresenceBrowsers {
			if strings.HasPrefix(e, "/") {
				b.Executables = append(b.Executables, e)
			} else {
				b.TeamIDs = append(b.TeamIDs, e)
			}
		}
		var err error
		if peer, err = presence.NewBrowserCheck(b); err != nil {
			return presence.Options{}, fmt.Errorf("--presence-browsers: %w", err)
		}
	}
	return presence.Options{
		Listen:      cfg.PresenceListen,
		PresenceURL: client.PresenceURL,
		Device: func() (string, crypto.Signer) {
			id := ids.Identity()
			if id == nil || id.DeviceID == "" {
				return "", nil
			}
			return id.DeviceID, key
		},
		Peer:   peer,
		Now:    now,
		Logger: log,
	}, nil
}

func cmdCheck(flags *config.Flags, policiesFile string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(flags)
	if err != nil {
		return err
	}
	log := newLogger(stderr, max(cfg.LogLevel, slog.LevelWarn), cfg.LogFormat)
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
	var platform string
	var took, listed time.Duration
	// late are the policies that finished after the run budget: the
	// daemon would have stopped or not run them, and reported ERROR.
	late := map[string]bool{}
	skipped := 0
	known := false // osquery said which platform it observes
	ctx, cancel := context.WithCancel(context.Background())
	var g run.Group
	g.Logger = log
	g.Add("osquery", oq.Execute, oq.Interrupt)
	g.Add("check", func() error {
		platform, known = policy.HostPlatform(ctx, oq)
		applies := policy.Filter(ps, platform)
		skipped = len(ps.GetPolicies()) - len(applies)
		start := time.Now()
		for _, p := range applies {
			results = append(results, policy.Run(ctx, oq, p, nil))
			if time.Since(start) > cfg.RunBudget {
				late[p.GetId()] = true
			}
		}
		took = time.Since(start)
		// The daemon's report adds two listings after the policies,
		// outside the run budget; they are timed too (failures aside:
		// the daemon reports none then).
		start = time.Now()
		_, _ = osquery.LocalAccounts(ctx, oq)
		if id, err := dir.LoadIdentity(); err == nil && len(id.DeviceCAKeyID()) > 0 {
			_, _ = osquery.KeychainCertificates(ctx, oq, id.DeviceCAKeyID())
		}
		listed = time.Since(start)
		return nil
	}, func(error) { cancel() })
	signals(&g)
	if err := g.Run(); err != nil {
		return err
	}
	err = printResults(stdout, ps, results, late, cfg.RunBudget)
	// Without this, a file of policies for other platforms prints only the
	// table's header and passes, as if there were nothing to check.
	if skipped > 0 {
		noun := "policies"
		if skipped == 1 {
			noun = "policy"
		}
		fmt.Fprintf(stderr, "%d %s skipped: not for platform %s\n", skipped, noun, platform)
	}
	overBudget(stderr, took, listed, cfg.RunBudget)
	if !known && err == nil {
		// Whatever ran, osquery did not answer: a check that skipped
		// every policy for another platform would otherwise pass.
		err = fmt.Errorf("osquery did not say which platform it observes (is it running? see above); the policies were chosen for %s, this agent's own", platform)
	}
	return err
}

// overBudget says, when a check's policies took longer than budget, what
// the daemon would have made of it, and when the whole run (the policies
// and the report's listings) took more than half of it, what that does to
// the Mac's posture on the verifier.
func overBudget(w io.Writer, policies, listings, budget time.Duration) {
	whole := policies + listings
	switch {
	case policies > budget:
		fmt.Fprintf(w, "this run's policies took %s, longer than the run budget of %s: the daemon reports the policy running when it is spent, and those after it, as ERROR (marked in the table; raise RunBudget, or make the slow queries faster)\n",
			policies.Round(time.Millisecond), budget)
	case whole > budget/2:
		than := "more than half"
		if whole > budget {
			than = "longer than" // the listings are not bounded by it
		}
		fmt.Fprintf(w, "this run took %s (the policies %s, the report's certificate and account listings %s), %s the run budget of %s: between reports the verifier's posture for this Mac gets up to twice that plus the policies' interval old (keep that under its --max-posture-age), and live checks, which need a whole run within its --live-check-timeout, may go unanswered\n",
			whole.Round(time.Millisecond), policies.Round(time.Millisecond), listings.Round(time.Millisecond), than, budget)
	}
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

// A policy in late finished after budget: it is shown as ERROR, as the
// daemon would report it, its message says what it gave here, and it fails
// the check if required.
func printResults(w io.Writer, ps *agentv1.PolicySet, results []*agentv1.PolicyResult, late map[string]bool, budget time.Duration) error {
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
		word := policy.StatusWord(r.GetStatus())
		if late[r.GetPolicyId()] {
			// As the daemon reports it; what it gave here follows.
			msg = fmt.Sprintf("finished after the run budget (%s), the daemon reports it as ERROR; here: %s", budget, word)
			word = policy.StatusWord(agentv1.PolicyStatus_POLICY_STATUS_ERROR)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", oneLine(r.GetPolicyId()), word, oneLine(p.GetName()), oneLine(msg))
		if p.GetRequired() && (r.GetStatus() != agentv1.PolicyStatus_POLICY_STATUS_PASS || late[r.GetPolicyId()]) {
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

// oneLine makes text from the verifier (a policy's id, name, resolution)
// or osquery (an error message) fit one cell of the table: line breaks and
// tabs become spaces, every other control or invisible character is
// escaped (pkg/printable), so a policy cannot clear the screen or fake a
// row, and at most 120 characters are shown.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		return r
	}, s)
	out := []rune(printable.Line(s))
	if len(out) > 120 {
		out = append(out[:119], '…')
	}
	return string(out)
}

// rotateWait is how long rotate-key waits for an agent that is stopping.
const rotateWait = 5 * time.Second

// cmdRotateKey starts a key rotation in the state dir (devicekey.Rotate).
func cmdRotateKey(ctx context.Context, flags *config.Flags, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(flags)
	if err != nil {
		return err
	}
	dir, err := state.Open(cfg.StateDir)
	if err != nil {
		return err
	}
	// The running agent keeps reporting with the key it started with, and
	// status would show a key it does not use: stop it first. The running
	// lock is held until the rotation is done, so that no agent starts
	// with the old key meanwhile; a service manager told to stop the agent
	// may return before it has exited, so a few seconds are waited out.
	var release func()
	for deadline := time.Now().Add(rotateWait); ; {
		release, err = dir.LockRunning()
		if err == nil {
			break
		}
		if !errors.Is(err, state.ErrAgentRunning) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the agent runs with state dir %s: stop it first (clearance-agent stop), rotate the key, then start it", cfg.StateDir)
		}
	}
	defer release()
	// The command says what it made; only a warning (no Secure Enclave,
	// a key file instead) is worth a line of the key's own.
	warnings := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	k, err := devicekey.Rotate(ctx, dir, devicekey.Options{PreferSecureEnclave: devicekey.SecureEnclaveSupport() == nil, Logger: warnings})
	if err != nil {
		return err
	}
	// The certificate names the old key; the next start enrolls the new one.
	if err := dir.DiscardCertificate(); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	fp, err := devicekey.Fingerprint(k.Public())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "new device key %s (%s); it is enrolled, proven by the current key, when the agent next starts\n", fp, k.Storage)
	return nil
}

// forgetLastSettings removes the record of the last settings that ran
// from the state dir in names (config.StateDir), as uninstall does: it
// holds the enroll secret, and no agent is left to run it. The rest of
// the state dir stays, so that a reinstall comes back with its key.
func forgetLastSettings(in config.Inputs) error {
	path, _, err := config.StateDir(in)
	if err != nil {
		return err
	}
	return (&state.Dir{Path: path}).RemoveLastSettings()
}

// uninstall removes the service, its log's newsyslog entry and the record
// of the last settings that ran (forgetLastSettings), each whatever the
// others did: a service already gone (kardianos fails when the launchd
// plist or init script is missing) must not keep the record, which holds
// the enroll secret. The steps' errors are all returned. The service goes
// first: a running agent records the settings again when it restarts.
func uninstall(svc kservice.Service, in config.Inputs) error {
	serr := svc.Uninstall()
	nerr := service.RemoveNewsyslog()
	ferr := forgetLastSettings(in)
	if ferr != nil {
		ferr = fmt.Errorf("removing the last settings that ran: %w", ferr)
	}
	return errors.Join(serr, nerr, ferr)
}

// serviceCmd installs or controls the agent's service, as newService
// (service.New) gives it.
func serviceCmd(action, summary string, newService func() (kservice.Service, error), stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:    action,
		Summary: summary,
		Flags: func(*cli.FlagSet) cli.Action {
			return func(context.Context, []string) error {
				svc, err := newService()
				if err != nil {
					return err
				}
				switch action {
				case "install":
					if err = svc.Install(); err == nil {
						err = service.InstallNewsyslog()
					}
				case "uninstall":
					err = uninstall(svc, config.Inputs{})
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
		},
	}
}
