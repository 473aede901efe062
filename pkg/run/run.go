// Package run runs a program's long-lived actors as one group: when any
// actor returns, every other is interrupted, and Run returns the first error.
// Each actor has a name (for logs), a recovered panic becomes its error, and
// interrupted actors get a bounded time to finish.
package run

import (
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"
)

// Actor is one long-running component. Execute blocks until the actor is
// done; Interrupt makes Execute return soon. Interrupt may be called more
// than once and before Execute starts.
type Actor struct {
	Name      string
	Execute   func() error
	Interrupt func(error)
}

// Group is a set of actors that live and die together.
type Group struct {
	actors []Actor
	// ShutdownTimeout bounds how long Run waits for actors after the first
	// one returns (default 15s). Actors still running then are abandoned,
	// and their names are logged.
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
}

// Add adds an actor.
func (g *Group) Add(name string, execute func() error, interrupt func(error)) {
	g.actors = append(g.actors, Actor{Name: name, Execute: execute, Interrupt: interrupt})
}

type result struct {
	name string
	err  error
}

// Run starts every actor and returns the error of the first to return
// (nil if it returned nil).
func (g *Group) Run() error {
	if len(g.actors) == 0 {
		return nil
	}
	logger := g.Logger
	if logger == nil {
		logger = slog.Default()
	}
	timeout := g.ShutdownTimeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	results := make(chan result, len(g.actors))
	for _, a := range g.actors {
		go func(a Actor) {
			results <- result{a.Name, execute(a)}
		}(a)
	}
	first := <-results
	if first.err != nil {
		logger.Info("actor stopped", "component", "run", "actor", first.name, "err", first.err)
	} else {
		logger.Debug("actor stopped", "component", "run", "actor", first.name)
	}
	for _, a := range g.actors {
		a.Interrupt(first.err)
	}
	running := make(map[string]int, len(g.actors))
	for _, a := range g.actors {
		running[a.Name]++
	}
	running[first.name]--
	deadline := time.After(timeout)
	for i := 1; i < len(g.actors); i++ {
		select {
		case r := <-results:
			running[r.name]--
		case <-deadline:
			var left []string
			for name, n := range running {
				if n > 0 {
					left = append(left, name)
				}
			}
			logger.Warn("actors did not stop in time", "component", "run", "actors", left, "timeout", timeout)
			return first.err
		}
	}
	return first.err
}

func execute(a Actor) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s panicked: %v\n%s", a.Name, p, debug.Stack())
		}
	}()
	return a.Execute()
}
