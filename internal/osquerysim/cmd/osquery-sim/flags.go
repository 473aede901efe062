package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// config is what the command line asks for.
type config struct {
	socket  string // --socket or --extensions_socket
	fixture string // built-in name or path
	pidfile string
	verbose bool
	help    bool
	version bool
	// osqueryd holds every flag given, osqueryd-style, by name without
	// dashes; the simulator reports them from options().
	osqueryd map[string]string
	// ignored lists the flags that mean nothing to the simulator, for the log.
	ignored []string
}

const (
	defaultSocket   = "/var/osquery/osquery.em" // osqueryd's default --extensions_socket
	defaultFixture  = "compliant-mac"
	maxFlagfile     = 1 << 20
	maxFlagfileNest = 4
)

// Flags the simulator acts on; every other flag is accepted and ignored, so
// an agent that spawns osqueryd can spawn the simulator with the same
// command line.
var (
	stringFlags = map[string]bool{"socket": true, "extensions_socket": true, "fixture": true, "pidfile": true, "flagfile": true}
	boolFlags   = map[string]bool{"verbose": true, "help": true, "h": true, "version": true}
	// osqueryd's boolean flags, which never take the next argument as a value.
	osquerydBools = map[string]bool{
		"D": true, "S": true, "daemonize": true, "disable_watchdog": true, "disable_events": true,
		"disable_extensions": true, "disable_logging": true, "disable_distributed": true,
		"disable_database": true, "disable_audit": true, "disable_carver": true,
		"disable_enrollment": true, "disable_reenrollment": true, "enroll_always": true,
		"ephemeral": true, "force": true, "utc": true, "install": true, "uninstall": true,
		"allow_unsafe": true, "config_check": true, "config_dump": true, "database_dump": true,
		"enable_foreign": true, "tls_dump": true, "ignore_registry_exceptions": true,
	}
)

// parseArgs reads gflags-style arguments as osqueryd does: -name or --name,
// with =value or the next argument as the value; a boolean flag takes
// "=false" or a "no" prefix. --flagfile names a file with one flag a line.
func parseArgs(args []string) (*config, error) {
	cfg := &config{socket: defaultSocket, fixture: defaultFixture, osqueryd: map[string]string{}}
	if err := cfg.parse(args, 0); err != nil {
		return nil, err
	}
	if cfg.socket == "" {
		return nil, errors.New("--socket must not be empty")
	}
	if cfg.fixture == "" {
		return nil, errors.New("--fixture must not be empty")
	}
	return cfg, nil
}

func (cfg *config) parse(args []string, depth int) error {
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if !strings.HasPrefix(arg, "-") || arg == "-" || arg == "--" {
			return fmt.Errorf("unexpected argument %q (flags are --name=value)", arg)
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		if name == "" {
			return fmt.Errorf("malformed flag %q", arg)
		}
		isBool := boolFlags[name] || osquerydBools[name]
		if !hasValue && !isBool && strings.HasPrefix(name, "no") && (boolFlags[name[2:]] || osquerydBools[name[2:]]) {
			name, value, hasValue, isBool = name[2:], "false", true, true
		}
		if !hasValue {
			switch {
			case isBool:
				value = "true"
			case stringFlags[name] || i+1 < len(args) && !strings.HasPrefix(args[i+1], "-"):
				if i+1 >= len(args) {
					return fmt.Errorf("flag --%s needs a value", name)
				}
				i++
				value = args[i]
			default:
				value = "true" // an osqueryd flag we do not know, given as a switch
			}
		}
		if err := cfg.set(name, value, isBool, depth); err != nil {
			return err
		}
	}
	return nil
}

func (cfg *config) set(name, value string, isBool bool, depth int) error {
	if isBool {
		switch strings.ToLower(value) {
		case "true", "1", "yes", "t", "y":
			value = "true"
		case "false", "0", "no", "f", "n":
			value = "false"
		default:
			return fmt.Errorf("flag --%s takes true or false, not %q", name, value)
		}
	}
	switch name {
	case "socket", "extensions_socket":
		cfg.socket = value
		cfg.osqueryd["extensions_socket"] = value
		return nil
	case "fixture":
		cfg.fixture = value
		return nil
	case "pidfile":
		cfg.pidfile = value
	case "flagfile":
		if depth >= maxFlagfileNest {
			return fmt.Errorf("--flagfile nested more than %d deep", maxFlagfileNest)
		}
		lines, err := readFlagfile(value)
		if err != nil {
			return err
		}
		if err := cfg.parse(lines, depth+1); err != nil {
			return fmt.Errorf("flagfile %s: %w", value, err)
		}
		return nil
	case "verbose":
		cfg.verbose = value == "true"
	case "help", "h":
		cfg.help = value == "true"
		return nil
	case "version":
		cfg.version = value == "true"
		return nil
	default:
		cfg.ignored = append(cfg.ignored, name)
	}
	cfg.osqueryd[name] = value
	return nil
}

// readFlagfile returns the flags in an osqueryd flagfile: one a line, blank
// lines and # comments skipped.
func readFlagfile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening flagfile: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFlagfile+1))
	if err != nil {
		return nil, fmt.Errorf("reading flagfile: %w", err)
	}
	if len(data) > maxFlagfile {
		return nil, fmt.Errorf("flagfile %s is larger than %d bytes", path, maxFlagfile)
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxFlagfile)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, line)
	}
	return out, sc.Err()
}

const usage = `osquery-sim: an osqueryd stand-in serving osquery's extensions API from a fixture.

Usage:
  osquery-sim [--socket=PATH] [--fixture=NAME|PATH] [--pidfile=PATH] [--verbose]

  --socket, --extensions_socket  unix socket to serve (default /var/osquery/osquery.em)
  --fixture                      built-in fixture (%s) or a fixture file (default compliant-mac)
  --pidfile                      write the process id here; removed on exit
  --flagfile                     read more flags from a file, one a line
  --verbose                      log every query

Other osqueryd flags (--database_path, --config_path, --disable_events, …) are
accepted and ignored, so the simulator can run in osqueryd's place. A fixture
file is re-read when it changes and on SIGHUP; a bad one keeps the old state.
`
