// Command osquery-sim stands in for osqueryd: it serves osquery's
// extension-manager API on a unix socket and answers policy SQL from a host
// fixture (see package osquerysim). The fixture file is re-read when it
// changes and on SIGHUP, so a demo can break or fix the "Mac" while an
// agent is connected.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/clearance/clearance/internal/osquerysim"
	"github.com/clearance/clearance/pkg/run"
)

// pollInterval is how often the fixture file is checked for changes.
const pollInterval = 200 * time.Millisecond

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	code := runMain(ctx, os.Args[1:], hup, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// runMain runs the simulator until ctx ends or a client calls shutdown(),
// and returns the exit code. Each value on hup reloads the fixture.
func runMain(ctx context.Context, args []string, hup <-chan os.Signal, stdout, stderr io.Writer) int {
	cfg, err := parseArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "osquery-sim: %v\nRun osquery-sim --help for usage.\n", err)
		return 2
	}
	if cfg.help {
		fmt.Fprintf(stdout, usage, strings.Join(osquerysim.Fixtures(), ", "))
		return 0
	}
	if cfg.version {
		fmt.Fprintf(stdout, "osquery-sim (osqueryd %s extensions API)\n", osquerysim.OsqueryVersion)
		return 0
	}
	level := slog.LevelInfo
	if cfg.verbose {
		level = slog.LevelDebug
	}
	base := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	log := base.With("component", "osquery-sim")
	if len(cfg.ignored) > 0 {
		log.Debug("ignoring osqueryd flags", "flags", cfg.ignored)
	}
	if err := serve(ctx, cfg, hup, base); err != nil {
		log.Error("osquery-sim failed", "err", err)
		return 1
	}
	return 0
}

// serve runs the simulator; base is the logger without a component, which
// the simulator adds its own to.
func serve(ctx context.Context, cfg *config, hup <-chan os.Signal, base *slog.Logger) error {
	log := base.With("component", "osquery-sim")
	// 1. Host state. The file's stamp is taken first so a change made
	// while it loads is not missed.
	w := &watcher{spec: cfg.fixture, hup: hup, log: log}
	w.stamp = statFixture(cfg.fixture)
	fixture, err := osquerysim.LoadFixture(cfg.fixture)
	if err != nil {
		return err
	}
	sim, err := osquerysim.New(fixture, osquerysim.WithLogger(base), osquerysim.WithFlags(cfg.osqueryd))
	if err != nil {
		return err
	}
	defer sim.Close()
	w.sim = sim

	// 2. The socket, then the pid file, so whoever waits on either finds
	// the simulator ready.
	ln, err := osquerysim.Listen(cfg.socket)
	if err != nil {
		return err
	}
	if cfg.pidfile != "" {
		if err := writePidfile(cfg.pidfile); err != nil {
			ln.Close()
			return err
		}
		defer removePidfile(cfg.pidfile, log)
	}

	// 3. Serve and watch until a signal or a shutdown() call.
	var g run.Group
	g.Logger = base
	serveCtx, stopServe := context.WithCancel(ctx)
	defer stopServe()
	g.Add("extensions-api", func() error { return sim.ServeListener(serveCtx, ln) }, func(error) { stopServe() })
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	g.Add("fixture-watcher", func() error { return w.run(watchCtx) }, func(error) { stopWatch() })
	return g.Run()
}

// watcher reloads the fixture when its file changes or on SIGHUP. A fixture
// that fails to load is logged and the state already served stays.
type watcher struct {
	spec  string
	sim   *osquerysim.Sim
	hup   <-chan os.Signal
	log   *slog.Logger
	stamp fileStamp
}

type fileStamp struct {
	exists  bool
	modTime time.Time
	size    int64
}

// statFixture stamps a fixture file; built-in fixtures never change.
func statFixture(spec string) fileStamp {
	if slices.Contains(osquerysim.Fixtures(), spec) {
		return fileStamp{}
	}
	fi, err := os.Stat(spec)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{exists: true, modTime: fi.ModTime(), size: fi.Size()}
}

func (w *watcher) run(ctx context.Context) error {
	builtin := slices.Contains(osquerysim.Fixtures(), w.spec)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.hup:
			w.stamp = statFixture(w.spec)
			w.reload("sighup")
		case <-tick.C:
			if builtin {
				continue
			}
			if st := statFixture(w.spec); st != w.stamp {
				w.stamp = st
				w.reload("file_changed")
			}
		}
	}
}

func (w *watcher) reload(reason string) {
	if err := w.sim.LoadFixture(w.spec); err != nil {
		w.log.Error("fixture reload failed; keeping the previous state", "fixture", w.spec, "reason", reason, "err", err)
		return
	}
	w.log.Info("fixture reloaded", "fixture", w.spec, "reason", reason)
}

func writePidfile(path string) error {
	if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("writing pidfile: %w", err)
	}
	return nil
}

// removePidfile removes the pid file if it is still ours.
func removePidfile(path string, log *slog.Logger) {
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	if strings.TrimSpace(string(data)) != strconv.Itoa(os.Getpid()) {
		return
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.Warn("removing pidfile failed", "pidfile", path, "err", err)
	}
}
