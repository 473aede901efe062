package osquery

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

type paths struct {
	socket, database, pidfile, config string
}

// spawnPaths lays out the spawned osqueryd's files. The socket name stays
// short: unix socket paths are limited to about 100 bytes.
func spawnPaths(dir string) paths {
	return paths{
		socket:   filepath.Join(dir, "osquery.em"),
		database: filepath.Join(dir, "osquery.db"),
		pidfile:  filepath.Join(dir, "osquery.pid"),
		config:   filepath.Join(dir, "osquery.conf"),
	}
}

// Flags returns the command line for a spawned osqueryd: a quiet worker with
// no schedule, no event publishers and no result logging. The agent only
// sends it queries over its own extensions socket.
func Flags(dir string) []string {
	p := spawnPaths(dir)
	return []string{
		"--extensions_socket=" + p.socket,
		"--database_path=" + p.database,
		"--pidfile=" + p.pidfile,
		"--force=true", // a stale pidfile from a crashed child must not block the restart
		"--config_plugin=filesystem",
		"--config_path=" + p.config,
		"--disable_extensions=false",
		"--extensions_autoload=/dev/null",
		"--disable_events=true",
		"--disable_logging=true",
		"--logger_plugin=filesystem",
		"--host_identifier=uuid",
		"--utc=true",
	}
}

// stopGrace is how long osqueryd gets between SIGTERM and SIGKILL.
const stopGrace = 5 * time.Second

// healthFailures is how many failed pings in a row mean osqueryd is hung.
const healthFailures = 3

// stableAfter is how long a child must stay healthy for the restart backoff
// to start over.
const stableAfter = time.Minute

// supervise runs osqueryd until Interrupt, restarting it with capped
// exponential backoff whenever it exits or stops answering.
func (r *Runner) supervise() error {
	if err := os.MkdirAll(r.opts.Dir, 0o700); err != nil {
		return fmt.Errorf("creating osquery dir: %w", err)
	}
	p := spawnPaths(r.opts.Dir)
	if err := os.WriteFile(p.config, []byte("{}\n"), 0o600); err != nil {
		return fmt.Errorf("writing osquery config: %w", err)
	}
	b := newBackoff(r.opts.MinBackoff, r.opts.MaxBackoff)
	for {
		started := time.Now()
		err := r.runChild(p)
		r.drop()
		if r.ctx.Err() != nil {
			return nil
		}
		if time.Since(started) > stableAfter {
			b.reset()
		}
		wait := b.next()
		r.log.Warn("osqueryd stopped, restarting", "err", err, "restart_in", wait)
		select {
		case <-r.ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// runChild starts one osqueryd and returns when it exits, hangs or the
// runner is interrupted.
func (r *Runner) runChild(p paths) error {
	// A socket left by a dead child would be taken for the new one.
	if err := os.Remove(p.socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing stale socket: %w", err)
	}
	program, err := checkOsqueryd(r.opts.Osqueryd)
	if err != nil {
		return err
	}
	args := append(Flags(r.opts.Dir), r.opts.ExtraFlags...)
	cmd := exec.Command(program, args...)
	cmd.Stdout = nil
	cmd.Stderr = nil
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", r.opts.Osqueryd, err)
	}
	r.setPID(cmd.Process.Pid)
	defer r.setPID(0)
	log := r.log.With("pid", cmd.Process.Pid)
	log.Info("osqueryd started", "path", r.opts.Osqueryd, "socket", p.socket)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // owned: always received below

	stop := func(reason string) error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			return err
		case <-time.After(stopGrace):
			log.Warn("osqueryd ignored SIGTERM, killing", "reason", reason)
			_ = cmd.Process.Kill()
			return <-exited
		}
	}

	// 1. Wait for the socket to answer.
	startCtx, cancel := context.WithTimeout(r.ctx, r.opts.StartTimeout)
	err = r.waitUp(startCtx, exited)
	cancel()
	switch {
	case errors.Is(err, errExited):
		return fmt.Errorf("osqueryd exited during startup: %v", <-exited)
	case r.ctx.Err() != nil:
		stop("shutdown")
		return nil
	case err != nil:
		stop("startup timeout")
		return fmt.Errorf("osqueryd did not open its socket within %s: %w", r.opts.StartTimeout, err)
	}
	log.Info("osqueryd ready")
	r.setUp(true)
	defer r.setUp(false)

	// 2. Health-check until it exits, hangs or we stop.
	t := time.NewTicker(r.opts.HealthInterval)
	defer t.Stop()
	failures := 0
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("osqueryd exited: %v", err)
		case <-r.ctx.Done():
			stop("shutdown")
			log.Info("osqueryd stopped")
			return nil
		case <-t.C:
			if err := r.Ping(r.ctx); err != nil {
				failures++
				log.Warn("osqueryd health check failed", "failures", failures, "err", err)
				if failures >= healthFailures {
					return fmt.Errorf("osqueryd not answering: %w", errors.Join(err, stop("health check")))
				}
				continue
			}
			failures = 0
		}
	}
}

var errExited = errors.New("osqueryd exited")

// waitUp pings with backoff until osqueryd answers, it exits, or ctx ends.
func (r *Runner) waitUp(ctx context.Context, exited chan error) error {
	b := newBackoff(r.opts.MinBackoff, min(r.opts.MaxBackoff, 2*time.Second))
	for {
		if _, err := os.Stat(r.socket); err == nil {
			if err := r.Ping(ctx); err == nil {
				return nil
			}
		}
		select {
		case err := <-exited:
			exited <- err // give it back to the caller
			return errExited
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(b.next()):
		}
	}
}

func (r *Runner) setPID(pid int) {
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	r.pid = pid
}

// PID is the spawned osqueryd's process id (0 when none is running).
func (r *Runner) PID() int {
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	return r.pid
}

func (r *Runner) setUp(up bool) {
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	if r.up == up {
		return
	}
	r.up = up
	if up {
		close(r.upCh)
	} else {
		r.upCh = make(chan struct{})
	}
}

// Ready returns a channel closed while a spawned osqueryd is answering (in
// attach mode it is never closed; query instead).
func (r *Runner) Ready() <-chan struct{} {
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	return r.upCh
}
