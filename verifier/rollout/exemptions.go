package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/clearance/clearance/pkg/policy"
	"github.com/clearance/clearance/pkg/printable"
	"github.com/clearance/clearance/verifier/storage"
)

// Limits of an exemption grant.
const (
	// MaxExemption is how far ahead an exemption may expire: a longer one
	// is a policy change, which belongs in the policy file.
	MaxExemption = 366 * 24 * time.Hour
	// MaxReason bounds an exemption's reason, in bytes.
	MaxReason = 1000
	// MaxUsername bounds a username, in bytes (Okta's own limit is 100
	// characters).
	MaxUsername = 256
)

// Grant is an exemption the security team asks for.
type Grant struct {
	DeviceID  string
	Username  string
	PolicyIDs []string
	ExpiresAt time.Time
	Reason    string
}

// GrantError is a grant refused for what it asks: its message is for the
// person asking.
type GrantError struct{ Msg string }

func (e *GrantError) Error() string { return e.Msg }

func refuse(format string, args ...any) error { return &GrantError{Msg: fmt.Sprintf(format, args...)} }

// Check validates g at now.
// White space around the username is not part of it (GrantExemption
// trims it): a grant for "bob@example.com " would cover nobody.
func (g Grant) Check(now time.Time) error {
	user := strings.TrimSpace(g.Username)
	switch {
	case (g.DeviceID == "") == (user == ""):
		return refuse("name exactly one of a device and a user")
	case len(g.DeviceID) > storage.MaxTextLen || !utf8.ValidString(g.DeviceID) || strings.ContainsAny(g.DeviceID, "\x00 \t\r\n"):
		return refuse("device id is not one a device can have")
	case len(user) > MaxUsername || !utf8.ValidString(user) || strings.ContainsFunc(user, unprintable):
		return refuse("username is longer than %d bytes or holds characters a username cannot (control, invisible, or a space other than ASCII's)", MaxUsername)
	case printable.Deceptive(user) || lookAlike(user):
		// It would be listed, and audited, as the name it passes for.
		return refuse("username %s can pass for another (look-alike letters, mixed scripts): grant the exemption to the device instead", printable.Identifier(user))
	case strings.TrimSpace(g.Reason) == "":
		return refuse("give a reason: it is kept with the exemption and in the audit log")
	case len(g.Reason) > MaxReason || !utf8.ValidString(g.Reason) || strings.IndexByte(g.Reason, 0) >= 0:
		return refuse("the reason is longer than %d bytes or is not text", MaxReason)
	case !g.ExpiresAt.After(now):
		return refuse("the expiry must be in the future")
	case g.ExpiresAt.Sub(now) > MaxExemption:
		return refuse("the expiry must be within %d days; for longer, change the policy itself", int(MaxExemption/(24*time.Hour)))
	case len(g.PolicyIDs) > storage.MaxExemptionPolicies:
		return refuse("at most %d policies", storage.MaxExemptionPolicies)
	}
	seen := map[string]bool{}
	for _, id := range g.PolicyIDs {
		if !policy.ValidID(id) {
			return refuse("%q is not a policy id", clip(id))
		}
		if seen[id] {
			return refuse("policy %q is named twice", id)
		}
		seen[id] = true
	}
	return nil
}

// CheckPolicies refuses a grant that names a policy not among ids, the
// policies of the set described by where ("the policy set in force",
// "policy file …"): a mistyped id would exempt from nothing, and the
// person granting it would not know. A grant for every policy (no ids)
// needs no set.
func (g Grant) CheckPolicies(ids []string, where string) error {
	known := make(map[string]bool, len(ids))
	for _, id := range ids {
		known[id] = true
	}
	var unknown []string
	for _, id := range g.PolicyIDs {
		if !known[id] {
			unknown = append(unknown, fmt.Sprintf("%q", id))
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	have := "it has no policies"
	if len(ids) > 0 {
		have = "its policies: " + strings.Join(ids[:min(len(ids), shownPolicies)], ", ")
		if len(ids) > shownPolicies {
			have += fmt.Sprintf(" and %d more", len(ids)-shownPolicies)
		}
	}
	noun := "policy"
	if len(unknown) > 1 {
		noun = "policies"
	}
	return refuse("no %s %s in %s; %s", noun, strings.Join(unknown, ", "), where, have)
}

// shownPolicies is how many of a set's policy ids a refusal lists.
const shownPolicies = 20

// SetDescription names a policy set with its version for CheckPolicies,
// e.g. `the policy set in force (version "v7")`; the version is quoted and
// clipped, since the file's author wrote it.
func SetDescription(what, version string) string {
	if version == "" {
		return what
	}
	return fmt.Sprintf("%s (version %q)", what, clip(version))
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// ExemptionStore is what granting and revoking need.
type ExemptionStore interface {
	GetDevice(ctx context.Context, id string) (storage.Device, error)
	ListDevices(ctx context.Context, afterID string, limit int) ([]storage.Device, error)
	CreateExemption(ctx context.Context, e storage.Exemption, audit storage.AuditEvent) (int64, error)
	GetExemption(ctx context.Context, id int64) (storage.Exemption, error)
	RevokeExemption(ctx context.Context, id int64, at time.Time, by string, audit storage.AuditEvent) error
	// GetUserByName names the person a user exemption covers in its
	// audit events.
	GetUserByName(ctx context.Context, userName string) (storage.User, error)
}

// ErrNoDevice is a device grant naming no enrolled device: it would
// exempt nothing, and the listing would still show it in force.
var ErrNoDevice = errors.New("no enrolled device has that id")

// noDevice is ErrNoDevice with the id asked for.
type noDevice struct{ id string }

func (e noDevice) Error() string {
	return fmt.Sprintf("no enrolled device's id is or starts with %q (see 'clearance-verifier devices --wide')", clip(e.id))
}

func (noDevice) Is(target error) bool { return target == ErrNoDevice }

// GrantExemption checks g and stores it, with its audit event, as granted
// by actor ("cli", "admin-api") at now. A device grant must name an
// enrolled device (revoked or not): by its whole id, or by the start of
// one that no other device's id starts with (as the tables show ids), which
// is stored whole. Otherwise the error wraps ErrNoDevice, or is a
// GrantError for a start more than one id has.
func GrantExemption(ctx context.Context, s ExemptionStore, g Grant, actor string, now time.Time) (storage.Exemption, error) {
	g.Username = strings.TrimSpace(g.Username)
	if err := g.Check(now); err != nil {
		return storage.Exemption{}, err
	}
	if g.DeviceID != "" {
		id, err := deviceID(ctx, s, g.DeviceID)
		if err != nil {
			return storage.Exemption{}, err
		}
		g.DeviceID = id
	}
	e := storage.Exemption{
		DeviceID: g.DeviceID, Username: g.Username, PolicyIDs: g.PolicyIDs, Reason: strings.TrimSpace(g.Reason),
		CreatedBy: actor, CreatedAt: now, ExpiresAt: g.ExpiresAt,
	}
	subjects, err := exemptionSubjects(ctx, s, e)
	if err != nil {
		return storage.Exemption{}, err
	}
	id, err := s.CreateExemption(ctx, e, storage.AuditEvent{At: now, Actor: actor, Action: "exemption.grant", DeviceID: g.DeviceID,
		Detail: Describe(e), Subjects: subjects})
	if err != nil {
		return storage.Exemption{}, err
	}
	return s.GetExemption(ctx, id)
}

// unprintable reports the runes no username holds: control characters,
// those drawn as nothing, and spaces other than ASCII's (a zero-width
// space or a no-break space would make a grant that matches nobody while
// reading like one that does).
func unprintable(r rune) bool { return printable.Invisible(r) || unicode.IsSpace(r) && r != ' ' }

// lookAlike reports what printable.Deceptive lets through in a name
// meant to be read beside ASCII ones: a combining mark that is not part of
// a letter of another script than ASCII's (one at the start, or after '.',
// '@' or an ASCII letter, draws on what precedes it; after such a letter,
// its spacing vowel signs and other marks, as Devanagari and Thai write
// them, it is the name's own), a modifier letter or symbol (˗, ˍ: drawn as
// punctuation) other than the apostrophes ʼ and ʻ between two letters (as
// Ukrainian writes them; among ASCII letters, where they read as an ASCII
// quote, printable.Deceptive refuses them), or, in a name that has ASCII letters,
// a letter that looks like an ASCII one (the Cyrillic ѕ of "ѕрасех", a
// Latin alpha, a dotless j). A name in one script of its own passes.
func lookAlike(user string) bool {
	hasASCIILetter := strings.ContainsFunc(user, func(r rune) bool { return r < utf8.RuneSelf && unicode.IsLetter(r) })
	rs := []rune(user)
	letter := func(i int) bool { return i >= 0 && i < len(rs) && unicode.IsLetter(rs[i]) }
	markOK := false // a mark here belongs to a letter outside ASCII
	for i, r := range rs {
		switch {
		case unicode.In(r, unicode.Mn, unicode.Me):
			if !markOK {
				return true
			}
		case (r == '\u02bc' || r == '\u02bb') && letter(i-1) && letter(i+1):
			// An apostrophe written as a letter, between two.
		case unicode.Is(unicode.Sk, r) || unicode.Is(unicode.Lm, r) && r >= 0x02b0 && r <= 0x02ff:
			return true
		case hasASCIILetter && r >= utf8.RuneSelf && unicode.IsLetter(r) && (printable.LooksASCII(string(r)) || r == 'ȷ'):
			// (The dotless j reads as j; the confusables table has no
			// skeleton for it.)
			return true
		}
		switch {
		case r >= utf8.RuneSelf && unicode.IsLetter(r):
			markOK = true
		case unicode.In(r, unicode.Mn, unicode.Me, unicode.Mc):
			// Marks and spacing vowel signs keep the letter's.
		default:
			markOK = false
		}
	}
	return false
}

// UsernameStore is what KnownUsername reads.
type UsernameStore interface {
	GetUserByName(ctx context.Context, userName string) (storage.User, error)
	ListDecisions(ctx context.Context, f storage.DecisionFilter) ([]storage.DecisionRecord, error)
}

// KnownUsername reports whether name (in any case of its ASCII letters) is
// a user SCIM or the Okta sync provisioned, or has a sign-in on record. A
// user grant for a name that is neither still stands (Okta may not
// provision users, and the person may never have signed in), but may be
// mistyped: it would cover nobody.
func KnownUsername(ctx context.Context, s UsernameStore, name string) (bool, error) {
	_, err := s.GetUserByName(ctx, name)
	switch {
	case err == nil:
		return true, nil
	case !errors.Is(err, storage.ErrNotFound):
		return false, err
	}
	ds, err := s.ListDecisions(ctx, storage.DecisionFilter{Username: name, Limit: 1})
	if err != nil {
		return false, err
	}
	return len(ds) > 0, nil
}

// deviceID is the whole id of the device named by id or by its start.
func deviceID(ctx context.Context, s ExemptionStore, id string) (string, error) {
	whole, err := storage.ResolveDeviceID(ctx, s, id)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return "", noDevice{id}
	case errors.Is(err, storage.ErrAmbiguousDevice):
		return "", refuse("more than one device's id starts with %q; give more of it", clip(id))
	}
	return whole, err
}

// RevokeExemption ends exemption id at now, audited.
func RevokeExemption(ctx context.Context, s ExemptionStore, id int64, actor string, now time.Time) (storage.Exemption, error) {
	e, err := s.GetExemption(ctx, id)
	if err != nil {
		return storage.Exemption{}, err
	}
	subjects, err := exemptionSubjects(ctx, s, e)
	if err != nil {
		return storage.Exemption{}, err
	}
	audit := storage.AuditEvent{At: now, Actor: actor, Action: "exemption.revoke", DeviceID: e.DeviceID,
		Detail: fmt.Sprintf("exemption %d revoked: %s", id, Describe(e)), Subjects: subjects}
	if err := s.RevokeExemption(ctx, id, now, actor, audit); err != nil {
		return storage.Exemption{}, err
	}
	return s.GetExemption(ctx, id)
}

// exemptionSubjects names the person a user exemption covers, for its
// audit events: the directory user with its username (in any case of
// its ASCII letters) when there is one, else the username alone, so that
// the audit log's user filter finds the grant by that name. A device
// exemption is about the device.
func exemptionSubjects(ctx context.Context, s ExemptionStore, e storage.Exemption) ([]storage.AuditSubject, error) {
	if e.Username == "" {
		return nil, nil
	}
	u, err := s.GetUserByName(ctx, e.Username)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return []storage.AuditSubject{{UserName: e.Username}}, nil
	case err != nil:
		return nil, fmt.Errorf("looking up the exemption's user: %w", err)
	}
	return []storage.AuditSubject{{UserID: u.ID, UserName: u.UserName}}, nil
}

// ErrRevoked is what RevokeExemption's caller sees for an exemption
// revoked already (storage.ErrAlreadyExists).
var ErrRevoked = storage.ErrAlreadyExists

// Describe says whom e covers, for what, until when and why, in one line.
func Describe(e storage.Exemption) string {
	who := "device " + e.DeviceID
	if e.Username != "" {
		who = "user " + ShownUsername(e.Username)
	}
	what := "all policies"
	if len(e.PolicyIDs) > 0 {
		what = "policies " + strings.Join(e.PolicyIDs, ",")
	}
	return fmt.Sprintf("%s, %s, until %s: %s", who, what, e.ExpiresAt.UTC().Format(time.RFC3339), e.Reason)
}

// ShownUsername is an exemption's username as listings and the audit log
// show it: escaped as an identifier, quoted when it holds a space, a comma
// (which would read as the description that follows it) or a quote, and marked
// when it is not ASCII, so that one granted before look-alikes were
// refused does not read as the name it passes for.
func ShownUsername(u string) string {
	shown := printable.Identifier(u)
	if strings.ContainsAny(shown, ` ,"`) {
		// Quoted, with the quotes and backslashes inside escaped, so
		// that where the name ends is never in doubt.
		shown = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(shown) + `"`
	}
	for i := 0; i < len(u); i++ {
		if u[i] >= utf8.RuneSelf {
			// Before the name, where a narrow table does not cut it.
			return "(not ASCII) " + shown
		}
	}
	return shown
}

// IsGrantError reports whether err is a refused grant.
func IsGrantError(err error) bool {
	var ge *GrantError
	return errors.As(err, &ge)
}
