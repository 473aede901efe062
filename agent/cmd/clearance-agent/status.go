package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/clearance/clearance/agent/config"
	"github.com/clearance/clearance/agent/devicekey"
	"github.com/clearance/clearance/agent/policy"
	"github.com/clearance/clearance/agent/service"
	"github.com/clearance/clearance/agent/state"
	"github.com/clearance/clearance/agent/stream"
	"github.com/clearance/clearance/agent/version"
	"github.com/clearance/clearance/pkg/agentprefs"
	"github.com/clearance/clearance/pkg/cli"
	"github.com/clearance/clearance/pkg/printable"
)

// standing is what status's exit code says of the Mac, for scripts and
// MDM extension attributes: in good standing (0), or the first of these
// that holds. 1 (status could not tell: the error says why) and 2 (a usage
// error) are every command's.
type standing struct {
	code int
	// word is the JSON's "standing".
	word string
}

var (
	standingGood = standing{0, "good"}
	// Not enrolled, waiting for the security team's approval, or refused
	// by the verifier: sign-ins from this Mac fail.
	standingNotEnrolled = standing{3, "not_enrolled"}
	// The agent does not run, or the verifier has not stored a report
	// from it for longer than its policies' schedule allows.
	standingNotReporting = standing{4, "not_reporting"}
	// The files' settings do not read, or the agent rejected them and
	// runs on others.
	standingSettingsRejected = standing{5, "settings_rejected"}
)

// statusHelp is what status's help says of its exit codes and --json.
const statusHelp = "Shows the settings, and what the agent wrote in its state dir: whether it runs and with which " +
	"settings, its enrollment (and the enroll secret's id, as 'clearance-verifier secret list' shows it), its " +
	"last connection and the last report the verifier stored, and last the Mac's standing.\n\n" +
	"The exit code is the standing, for scripts and MDM extension attributes: 0 enrolled, running and " +
	"reporting (its last report stored within its policies' schedule); 3 not enrolled, pending approval or " +
	"refused by the verifier; 4 the agent not running or not reporting; 5 the settings do not read, or the " +
	"agent rejected them and runs on others. The first that holds is given. 1 means status could not tell " +
	"(the settings do not read and no agent ran with the state dir), 2 a usage error.\n\n" +
	"--json prints the same facts as one JSON object (see docs/agent.md for its fields)."

// statusFacts are what status says, as --json prints them. The names are
// stable: scripts, Jamf extension attributes, Kandji audits and Fleet read
// them. Times are RFC 3339, UTC; a fact status does not know is left out.
type statusFacts struct {
	Standing       string `json:"standing"`
	StandingReason string `json:"standing_reason"`
	ExitCode       int    `json:"exit_code"`
	Version        string `json:"version"`
	// Verifier is the settings', else the one the Mac enrolled with.
	Verifier    string   `json:"verifier,omitempty"`
	StateDir    string   `json:"state_dir"`
	Osquery     string   `json:"osquery,omitempty"`
	IgnoredKeys []string `json:"ignored_keys,omitempty"`
	Service     string   `json:"service"`

	AgentRunning   bool      `json:"agent_running"`
	AgentPID       int       `json:"agent_pid,omitempty"`
	AgentVersion   string    `json:"agent_version,omitempty"`
	AgentStartedAt time.Time `json:"agent_started_at,omitzero"`

	// Settings: in_use, changed, rejected or unread; left out when no
	// agent ran with the state dir.
	Settings             string            `json:"settings,omitempty"`
	SettingsError        string            `json:"settings_error,omitempty"`
	SettingsChangedKeys  []string          `json:"settings_changed_keys,omitempty"`
	SettingsPinned       map[string]string `json:"settings_pinned,omitempty"`
	SettingsRejectedAt   time.Time         `json:"settings_rejected_at,omitzero"`
	SettingsRejected     string            `json:"settings_rejected,omitempty"`
	SettingsRejectedKeys []string          `json:"settings_rejected_keys,omitempty"`
	LastSettingsRanAt    time.Time         `json:"last_settings_ran_at,omitzero"`

	// Enrollment: enrolled, not_enrolled, pending_approval or refused.
	Enrollment          string    `json:"enrollment"`
	DeviceID            string    `json:"device_id,omitempty"`
	EnrollSecretID      string    `json:"enroll_secret_id,omitempty"`
	CertExpiresAt       time.Time `json:"cert_expires_at,omitzero"`
	CertExpired         bool      `json:"cert_expired,omitempty"`
	RenewsAt            time.Time `json:"renews_at,omitzero"`
	PendingRequestID    string    `json:"pending_request_id,omitempty"`
	PendingReason       string    `json:"pending_reason,omitempty"`
	PendingSince        time.Time `json:"pending_since,omitzero"`
	RefusedAt           time.Time `json:"refused_at,omitzero"`
	RefusedCode         string    `json:"refused_code,omitempty"`
	RefusedMessage      string    `json:"refused_message,omitempty"`
	RefusedRetryAt      time.Time `json:"refused_retry_at,omitzero"`
	DeviceKeyStorage    string    `json:"device_key_storage"`
	DeviceKeyFP         string    `json:"device_key_fingerprint,omitempty"`
	KeyRotationUnderWay bool      `json:"key_rotation_under_way,omitempty"`

	LastSeq            uint64    `json:"last_seq"`
	ConnectedAt        time.Time `json:"connected_at,omitzero"`
	ConnectedTo        string    `json:"connected_to,omitempty"`
	LastReportStoredAt time.Time `json:"last_report_stored_at,omitzero"`
	LastReportSeq      uint64    `json:"last_report_seq,omitempty"`
	ReportDueSeconds   float64   `json:"report_due_seconds,omitempty"`
	NotConnectedAt     time.Time `json:"not_connected_at,omitzero"`
	NotConnectedReason string    `json:"not_connected_reason,omitempty"`
	PolicySetVersion   string    `json:"policy_set_version,omitempty"`
	Policies           int       `json:"policies"`
	RunBudgetSeconds   float64   `json:"run_budget_seconds,omitempty"`
	RunBudgetSource    string    `json:"run_budget_source,omitempty"`
	statusNow          time.Time // when status looked
}

// cmdStatus shows the settings and what the agent wrote in its state dir,
// as rows or (asJSON) one JSON object, and exits with the Mac's standing
// (see standing). Settings that do not read (a misspelt key, a file that
// is no plist) still show all the state dir says when an agent has run
// with it: a running agent keeps the settings it had, and the rows say
// what it does. With no agent run there, the settings' error is all there
// is to say (exit 1).
func cmdStatus(flags *config.Flags, asJSON bool, stdout io.Writer) error {
	f := &statusFacts{Version: version.Version, statusNow: time.Now()}
	cfg, unread := loadConfig(flags)
	if unread != nil {
		path, source, err := config.StateDir(flags.Inputs())
		if err != nil {
			return statusFailed(f, unread, asJSON, stdout)
		}
		if r, err := (&state.Dir{Path: path}).LoadRunning(); err != nil || r == nil {
			f.StateDir = path
			return statusFailed(f, unread, asJSON, stdout) // no agent has run here: there is nothing else to say
		}
		cfg = &config.Config{StateDir: path, Sources: map[string]string{agentprefs.KeyStateDir: source}}
		f.Settings, f.SettingsError = "unread", unread.Error()
	}
	var out io.Writer = stdout
	if asJSON {
		out = io.Discard
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	// Values come from the verifier (the device id, a pending request's
	// reason, the policy set's version) and from files: each is shown
	// escaped (pkg/printable), on one line.
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, printable.Line(v)) }
	row("version", version.Version)
	// What the settings do not say when they do not read.
	const notRead = "the settings do not read"
	verifier := cfg.Verifier
	f.Verifier = cfg.Verifier
	if verifier == "" {
		// The settings this command read (a plist, flags) name none, or
		// do not read: the state dir says which verifier the Mac enrolled
		// with.
		why := "these settings name none"
		verifier = "not configured"
		if unread != nil {
			why, verifier = notRead, "unknown: "+notRead
		}
		if id, err := (&state.Dir{Path: cfg.StateDir}).LoadIdentity(); err == nil && id.Verifier != "" {
			verifier = id.Verifier + " (enrolled with; " + why + ")"
			f.Verifier = id.Verifier
		}
	}
	row("verifier", verifier)
	f.StateDir = cfg.StateDir
	if unread != nil {
		row("state dir", cfg.StateDir+" ("+cfg.Sources[agentprefs.KeyStateDir]+")")
	} else {
		row("state dir", cfg.StateDir)
	}
	switch {
	case unread != nil:
		row("osquery", "unknown: "+notRead)
	case cfg.OsquerySocket != "":
		f.Osquery = "attach " + cfg.OsquerySocket
		row("osquery", f.Osquery)
	case cfg.OsquerydPath != "":
		f.Osquery = "spawn " + cfg.OsquerydPath
		row("osquery", f.Osquery)
	default:
		row("osquery", "not configured")
	}
	if len(cfg.Ignored) > 0 {
		f.IgnoredKeys = cfg.Ignored
		row("ignored keys", strings.Join(cfg.Ignored, "; ")+" (unknown to this agent version)")
	}
	if svc, err := service.New(); err == nil {
		f.Service = service.Status(svc)
	} else {
		f.Service = "unknown (" + err.Error() + ")"
	}
	row("service", f.Service)
	dir := &state.Dir{Path: cfg.StateDir}
	// The files' settings, all of them: what the daemon reads, for
	// comparing with the running agent's and for the reports' schedule.
	var all *config.Config
	if r, err := dir.LoadRunning(); err == nil && r != nil {
		// Whether it runs is the lock's to say: the recorded process id
		// may be another process's by now.
		alive, lerr := dir.AgentRunning()
		if lerr != nil {
			row("agent", "unknown: "+lerr.Error())
		}
		// Compared with every setting the daemon reads, from the same
		// files, not only those this command shows.
		in := flags.Inputs()
		in.Only = nil
		var aerr error
		if all, aerr = config.Load(in); aerr != nil {
			row("settings", "the files' settings do not read: "+aerr.Error())
			all = nil
			f.Settings, f.SettingsError = "unread", aerr.Error()
		}
		for _, kv := range runningRows(r, all, f.statusNow, alive, f) {
			row(kv[0], kv[1])
		}
	}
	storage, keyURI, kerr := devicekey.Describe(dir)
	switch {
	case kerr == nil && storage == devicekey.SecureEnclave:
		f.DeviceKeyStorage = "secure_enclave"
		row("device key", "Secure Enclave")
	case kerr == nil:
		f.DeviceKeyStorage = "key_file"
		// The file key.uri names: a rotation's key has a name of its own.
		why := "key file " + strings.TrimPrefix(keyURI, "softkms:path=")
		if serr := devicekey.SecureEnclaveSupport(); serr != nil {
			why += "; Secure Enclave unavailable: " + serr.Error()
		} else {
			why += "; Secure Enclave key creation failed at enrollment (see the log)"
		}
		row("device key", why)
	case errors.Is(kerr, os.ErrNotExist):
		f.DeviceKeyStorage = "none"
		row("device key", "none yet")
	default:
		f.DeviceKeyStorage = "unreadable"
		row("device key", "unreadable: "+kerr.Error())
	}
	if k, err := devicekey.LoadRecorded(context.Background(), dir); err == nil {
		if fp, err := devicekey.Fingerprint(k.Public()); err == nil {
			// What `clearance-verifier devices pending` shows, to compare
			// before approving.
			f.DeviceKeyFP = fp
			row("device key fingerprint", fp)
		}
	}
	p, _ := dir.LoadPending() // nil when unreadable, as when none
	if _, err := os.Stat(dir.File(state.PreviousKeyURIFile)); err == nil {
		f.KeyRotationUnderWay = true
		what := "under way: the next enrollment proves the new key with the previous one"
		if p != nil {
			// The verifier held the proven enrollment (a revoked Mac's
			// previous key proves nothing): approval decides.
			what = "under way, waiting for the security team's approval (below)"
		}
		row("key rotation", what)
	}
	refusal, _ := dir.LoadRefusal()
	// Each answer clears the other's record; should both be left (an
	// agent that kept the wait past a rejection), the later one says
	// where the Mac is.
	if p != nil && refusal != nil {
		if refusal.At.Before(p.LastAsked) {
			refusal = nil
		} else {
			p = nil
		}
	}
	if p != nil {
		f.PendingRequestID, f.PendingReason, f.PendingSince = p.RequestID, p.Reason, p.RequestedAt.UTC()
		row("enrollment", fmt.Sprintf("PENDING APPROVAL by the security team (request %s, %s, since %s); the agent asks again until it is approved",
			p.RequestID, p.Reason, p.RequestedAt.UTC().Format(time.RFC3339)))
	}
	if r := refusal; r != nil {
		f.RefusedAt, f.RefusedCode, f.RefusedMessage, f.RefusedRetryAt = r.At.UTC(), r.Code, r.Message, r.RetryAt.UTC()
		row("REFUSED", fmt.Sprintf("by the verifier at %s (%s): %s; the agent asks again at %s",
			r.At.UTC().Format(time.RFC3339), r.Code, printable.Line(r.Message), r.RetryAt.UTC().Format(time.RFC3339)))
	}
	id, err := dir.LoadIdentity()
	switch {
	case errors.Is(err, state.ErrNotEnrolled) && p != nil:
		row("enrolled", "no (pending approval)")
	case errors.Is(err, state.ErrNotEnrolled):
		row("enrolled", "no")
	case err != nil:
		row("enrolled", "unknown: "+err.Error())
	default:
		row("enrolled", "yes")
		row("device id", id.DeviceID)
		f.DeviceID = id.DeviceID
		if id.EnrollSecretID != "" {
			// The id the verifier's `secret list` shows, never the secret.
			f.EnrollSecretID = id.EnrollSecretID
			row("enroll secret", id.EnrollSecretID+" (the one this Mac enrolled with)")
		}
		exp := id.Cert.NotAfter.UTC().Format(time.RFC3339)
		f.CertExpiresAt, f.RenewsAt = id.Cert.NotAfter.UTC(), id.RenewAt().UTC()
		if f.statusNow.After(id.Cert.NotAfter) {
			exp += " (EXPIRED)"
			f.CertExpired = true
		}
		row("cert expires", exp)
		row("renews at", id.RenewAt().UTC().Format(time.RFC3339))
	}
	switch {
	case refusal != nil:
		f.Enrollment = "refused"
	case p != nil:
		f.Enrollment = "pending_approval"
	case err == nil:
		f.Enrollment = "enrolled"
	default:
		f.Enrollment = "not_enrolled"
	}
	if seq, err := dir.LastSeq(); err == nil {
		f.LastSeq = seq
		row("last seq", fmt.Sprint(seq))
	}
	if c, err := dir.LoadContact(); err == nil && c != nil {
		// What the running agent last wrote down: times say how current.
		when := func(t time.Time) string {
			return fmt.Sprintf("%s (%s ago)", t.UTC().Format(time.RFC3339), f.statusNow.Sub(t).Round(time.Second))
		}
		if !c.ConnectedAt.IsZero() {
			f.ConnectedAt, f.ConnectedTo = c.ConnectedAt.UTC(), c.Verifier
			row("connected", when(c.ConnectedAt)+" to "+c.Verifier)
		}
		if !c.AckedAt.IsZero() {
			f.LastReportStoredAt, f.LastReportSeq = c.AckedAt.UTC(), c.AckedSeq
			row("last report stored", fmt.Sprintf("%s, seq %d", when(c.AckedAt), c.AckedSeq))
		}
		if !c.FailedAt.IsZero() && c.FailedAt.After(c.ConnectedAt) {
			f.NotConnectedAt, f.NotConnectedReason = c.FailedAt.UTC(), c.Failure
			row("NOT CONNECTED", "the last attempt, at "+when(c.FailedAt)+": "+printable.Line(c.Failure))
		}
	}
	ps, _ := dir.LoadPolicySet()
	if ps != nil {
		f.PolicySetVersion, f.Policies = ps.GetVersion(), len(ps.GetPolicies())
		row("policy set", fmt.Sprintf("%s (%d policies)", ps.GetVersion(), len(ps.GetPolicies())))
	}
	budget := agentprefs.DefaultRunBudget
	if unread != nil {
		row("run budget", "unknown: "+notRead)
	} else {
		from := cfg.Sources[agentprefs.KeyRunBudget]
		if from == "" {
			from = config.SourceDefault
		}
		budget = cfg.RunBudget
		f.RunBudgetSeconds, f.RunBudgetSource = cfg.RunBudget.Seconds(), from
		row("run budget", fmt.Sprintf("%s (%s)", cfg.RunBudget, from))
	}
	var interval time.Duration
	if all != nil {
		interval = all.Interval
	}
	if due := stream.ReportDue(ps, policy.Platform(), interval, budget); due > 0 {
		f.ReportDueSeconds = due.Seconds()
	}
	st, why := f.standing()
	f.Standing, f.StandingReason, f.ExitCode = st.word, why, st.code
	if st == standingGood {
		row("standing", "good: "+why)
	} else {
		row("standing", fmt.Sprintf("%s (exit %d): %s", strings.ToUpper(strings.ReplaceAll(st.word, "_", " ")), st.code, why))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if asJSON {
		if err := writeJSON(stdout, f); err != nil {
			return err
		}
	}
	if st.code != 0 {
		return cli.ExitCode(st.code)
	}
	return nil
}

// statusFailed is status when it can say nothing but err: the JSON says
// so too, for a script that reads only that.
func statusFailed(f *statusFacts, err error, asJSON bool, stdout io.Writer) error {
	if asJSON {
		f.Standing, f.StandingReason, f.ExitCode = "unknown", err.Error(), cli.ExitFail
		f.Settings, f.SettingsError, f.Enrollment, f.DeviceKeyStorage = "unread", err.Error(), "unknown", "unknown"
		if werr := writeJSON(stdout, f); werr != nil {
			return werr
		}
	}
	return err
}

func writeJSON(w io.Writer, f *statusFacts) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(f)
}

// standing is the Mac's standing from the facts, and why, in words.
func (f *statusFacts) standing() (standing, string) {
	switch f.Enrollment {
	case "refused":
		return standingNotEnrolled, "refused by the verifier (" + f.RefusedCode + ")"
	case "pending_approval":
		return standingNotEnrolled, "waiting for the security team's approval (request " + f.PendingRequestID + ")"
	case "not_enrolled":
		return standingNotEnrolled, "not enrolled"
	}
	switch {
	case !f.AgentRunning:
		return standingNotReporting, "the agent is not running"
	case f.ReportDueSeconds > 0 && f.LastReportStoredAt.IsZero():
		return standingNotReporting, "the verifier has stored no report from this Mac"
	case f.ReportDueSeconds > 0:
		age, due := f.statusNow.Sub(f.LastReportStoredAt), time.Duration(f.ReportDueSeconds*float64(time.Second))
		if age > due {
			return standingNotReporting, fmt.Sprintf("the last report stored is %s old; its policies' schedule has one stored every %s at most",
				age.Round(time.Second), due)
		}
	case f.ConnectedAt.IsZero() || !f.NotConnectedAt.IsZero():
		// No policy runs on a schedule: the stream says whether the
		// verifier can ask.
		return standingNotReporting, "not connected to the verifier"
	}
	switch f.Settings {
	case "unread":
		return standingSettingsRejected, "the settings do not read; the agent runs on with others"
	case "rejected":
		return standingSettingsRejected, "the agent rejected the new settings; it runs on with others"
	}
	if f.ReportDueSeconds > 0 {
		return standingGood, fmt.Sprintf("enrolled, running, and its last report stored %s ago", f.statusNow.Sub(f.LastReportStoredAt).Round(time.Second))
	}
	return standingGood, "enrolled, running and connected (no policy runs on a schedule)"
}

// runningRows says what the running agent uses, from its record: whether
// it runs, since when and which version, and whether the settings files
// say the same (cfg): changed since it started (it takes them within
// settingsPoll), or rejected (it runs on with those it has). cfg is nil
// when the files do not read. f, when set, gets the same facts.
func runningRows(r *state.Running, cfg *config.Config, now time.Time, alive bool, f *statusFacts) [][2]string {
	if f == nil {
		f = new(statusFacts)
	}
	f.AgentRunning, f.AgentPID, f.AgentVersion, f.AgentStartedAt = alive, r.PID, r.Version, r.StartedAt.UTC()
	since := fmt.Sprintf("%s (%s ago)", r.StartedAt.UTC().Format(time.RFC3339), now.Sub(r.StartedAt).Round(time.Second))
	if !alive {
		return [][2]string{{"agent", fmt.Sprintf("not running (last started %s, version %s, process %d)", since, r.Version, r.PID)}}
	}
	rows := [][2]string{{"agent", fmt.Sprintf("running since %s, version %s, process %d", since, r.Version, r.PID)}}
	// A key the agent's flags or environment pin is no change of the
	// files' that it will take: say which pins it instead.
	var changed []string
	pins := ""
	if cfg != nil {
		for _, k := range config.ChangedFrom(r.Settings, cfg) {
			if src, ok := r.Pinned[k]; ok {
				pins += fmt.Sprintf("; the agent's %s sets %s, over the files", src, k)
			} else {
				changed = append(changed, k)
			}
		}
	}
	if len(r.Pinned) > 0 {
		f.SettingsPinned = r.Pinned
	}
	switch {
	case !r.RejectedAt.IsZero():
		with := "the agent runs on with the settings it had"
		if !r.LastRanAt.IsZero() {
			with = "the agent started with the last settings that ran (recorded " + r.LastRanAt.UTC().Format(time.RFC3339) + ")"
			f.LastSettingsRanAt = r.LastRanAt.UTC()
		}
		msg := fmt.Sprintf("at %s: %s; %s", r.RejectedAt.UTC().Format(time.RFC3339), r.Rejected, with)
		// Settings that did not read name no keys, and give no rows.
		if len(r.RejectedKeys) > 0 {
			msg += " (the new ones changed " + strings.Join(r.RejectedKeys, ", ") + ")"
		}
		if cfg != nil {
			msg += "; the rows above are the files' new settings"
		}
		rows = append(rows, [2]string{"NEW SETTINGS REJECTED", msg})
		f.SettingsRejectedAt, f.SettingsRejected, f.SettingsRejectedKeys = r.RejectedAt.UTC(), r.Rejected, r.RejectedKeys
		if cfg != nil {
			f.Settings = "rejected"
		}
	case cfg == nil:
	case len(changed) > 0:
		f.Settings, f.SettingsChangedKeys = "changed", changed
		rows = append(rows, [2]string{"settings", fmt.Sprintf("the files changed %s since the agent started; it takes them within %s (at once on SIGHUP)%s",
			strings.Join(changed, ", "), settingsPoll, pins)})
	default:
		f.Settings = "in_use"
		rows = append(rows, [2]string{"settings", "in use as the files say" + pins})
	}
	return rows
}
