// Package cloudflare owns Clearance's side of Cloudflare Zero Trust's
// custom device posture integration (custom_s2s): Cloudflare POSTs the
// devices it wants scored, behind an Access application whose application
// token the verifier checks, and gets back, for every device, the
// Clearance device it matched and a 0-100 score its posture rules compare.
// The score comes from the same decision a sign-in through Okta gets.
package cloudflare

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/clearance/clearance/pkg/logsample"
	"github.com/clearance/clearance/verifier/access"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/metrics"
	"github.com/clearance/clearance/verifier/reason"
	"github.com/clearance/clearance/verifier/storage"
)

// Path is where Cloudflare posts (its api_url).
const Path = "/cloudflare/v1/posture"

// Refusals of a request past its token, as counted.
const (
	RefusedBodyTooLarge = "body_too_large"
	RefusedTooMany      = "too_many_devices"
	RefusedBadRequest   = "malformed_request"
	RefusedStorage      = "storage_unavailable"
	Answered            = "answered"
)

// Store is what the handler reads and writes.
type Store interface {
	storage.DeviceFinder
	storage.DecisionStore
}

// Decider is the sign-in decision; *access.Gate implements it.
type Decider interface {
	Decide(ctx context.Context, q access.Query, mode access.Mode) (decision.Decision, error)
}

var _ Decider = (*access.Gate)(nil)

// GraceRecorder keeps the grace state of a decision; *rollout.Source
// implements it.
type GraceRecorder interface {
	Record(ctx context.Context, d decision.Decision) error
}

// Verifier checks the Access application token; *TokenVerifier implements it.
type Verifier interface {
	Verify(ctx context.Context, token string) (*Claims, error)
}

var _ Verifier = (*TokenVerifier)(nil)

// Handler answers Cloudflare's posture requests.
type Handler struct {
	Tokens Verifier
	Store  Store
	Decide Decider
	Scores Scores
	// MatchHostname matches a device Cloudflare names by no known serial
	// number by its hostname, when exactly one enrolled device has it.
	MatchHostname bool
	// Grace, when set, keeps the grace periods a device's decision starts
	// and ends, as a sign-in does: else a grace period would start again at
	// every request, and a Mac that only Cloudflare asks about would be
	// let through on a grace that never ends.
	Grace   GraceRecorder
	Metrics *metrics.Cloudflare
	Log     *slog.Logger
	Now     func() time.Time

	// refusedLog samples the log lines of refused tokens, by reason:
	// anyone who can reach the listener can send them.
	refusedLog logsample.Samples
}

// maxLoggedErr bounds a refusal's error in the log: it may quote the
// token's sender-chosen header fields.
const maxLoggedErr = 256

func clipErr(err error) string {
	s := err.Error()
	if len(s) > maxLoggedErr {
		s = strings.ToValidUTF8(s[:maxLoggedErr], "") + "…"
	}
	return s
}

// refusedLogEvery is how often a refused token is logged at warn, per
// reason; the others are logged at debug and counted in the next warn line
// (and all in clearance_cloudflare_requests_total).
const refusedLogEvery = 10 * time.Second

// Result is one device's answer.
type Result struct {
	S2SID string `json:"s2s_id"`
	Score int    `json:"score"`
}

// Response is the body Cloudflare reads.
type Response struct {
	Result map[string]Result `json:"result"`
}

// decideWorkers bounds the devices decided at once in a batch.
const decideWorkers = 4

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := h.now()
	log := h.Log.With("component", "cloudflare", "remote", r.RemoteAddr)

	// 1. Access's application token, before anything else is read.
	claims, err := h.Tokens.Verify(r.Context(), r.Header.Get(Header))
	if err != nil {
		outcome, status := RefusedMalformed, http.StatusForbidden
		var te *TokenError
		if errors.As(err, &te) {
			outcome = te.Reason
		}
		if outcome == RefusedNoToken {
			status = http.StatusUnauthorized
		}
		h.Metrics.Request(outcome)
		const msg = "cloudflare_refused: the Access application token was refused"
		attrs := []any{"reason", outcome, "err", clipErr(err)}
		if ok, skipped := h.refusedLog.Take(outcome, refusedLogEvery, h.now()); ok {
			log.Warn(msg, append(attrs, "others_not_logged", skipped)...)
		} else {
			log.Debug(msg, attrs...)
		}
		http.Error(w, http.StatusText(status), status)
		return
	}

	// 2. The devices asked about.
	devices, err := DecodeRequest(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		outcome, status := RefusedBadRequest, http.StatusBadRequest
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			outcome, status = RefusedBodyTooLarge, http.StatusRequestEntityTooLarge
		case errors.Is(err, ErrTooManyDevices):
			outcome, status = RefusedTooMany, http.StatusRequestEntityTooLarge
		}
		h.Metrics.Request(outcome)
		log.Warn("cloudflare_refused: the posture request was refused", "reason", outcome, "service_token", claims.CommonName, "err", err)
		http.Error(w, http.StatusText(status), status)
		return
	}

	// 3. Match, decide, score.
	evals, err := h.evaluate(r.Context(), devices, log)
	if err != nil {
		h.Metrics.Request(RefusedStorage)
		log.Error("cloudflare_failed: matching devices failed; nothing was answered", "err", err)
		http.Error(w, http.StatusText(http.StatusServiceUnavailable), http.StatusServiceUnavailable)
		return
	}

	// 4. The decision log first: no answer goes out that it lacks.
	latency := h.now().Sub(start)
	if err := h.record(r.Context(), evals, start, latency); err != nil {
		h.Metrics.Request(RefusedStorage)
		log.Error("cloudflare_failed: recording the evaluations failed; nothing was answered", "devices", len(evals), "err", err)
		http.Error(w, http.StatusText(http.StatusServiceUnavailable), http.StatusServiceUnavailable)
		return
	}

	// 5. Every device asked about, answered.
	resp := Response{Result: make(map[string]Result, len(evals))}
	counts := map[string]int{}
	for _, e := range evals {
		resp.Result[e.asked.ID] = Result{S2SID: e.dev.ID, Score: e.score}
		counts[e.verdict]++
		h.Metrics.Evaluation(e.verdict)
	}
	h.Metrics.Request(Answered)
	h.Metrics.Batch(len(evals), h.now().Sub(start))
	attrs := []any{"devices", len(evals), "service_token", claims.CommonName, "duration", h.now().Sub(start)}
	for _, v := range slices.Sorted(maps.Keys(counts)) {
		attrs = append(attrs, v, counts[v])
	}
	log.Info("cloudflare_posture_answered", attrs...)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(resp)
}

// evaluation is one device's answer and what it came from.
type evaluation struct {
	asked   Device
	dev     storage.Device // zero when unmatched
	d       decision.Decision
	score   int
	verdict string
	// serialShared: several unrevoked devices have the serial number
	// asked about; scored as unknown, and not matched by hostname either.
	serialShared bool
}

// evaluate matches each device and decides those it matched.
func (h *Handler) evaluate(ctx context.Context, devices []Device, log *slog.Logger) ([]evaluation, error) {
	evals := make([]evaluation, len(devices))
	for i, d := range devices {
		evals[i].asked = d
	}
	if err := h.match(ctx, evals, log); err != nil {
		return nil, err
	}

	// Decide the matched devices a few at a time; the unmatched are
	// decided as unknown, as a sign-in from no device is.
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(decideWorkers, len(evals)) {
		wg.Go(func() {
			for i := range next {
				h.decide(ctx, &evals[i], log)
			}
		})
	}
	for i := range evals {
		next <- i
	}
	close(next)
	wg.Wait()
	return evals, nil
}

// decide fills e's decision, score and verdict. A failure to read the
// device's report fails closed: score 0, reason storage_unavailable.
func (h *Handler) decide(ctx context.Context, e *evaluation, log *slog.Logger) {
	if e.dev.ID == "" {
		// No enrolled device: decided as a sign-in from an unknown device
		// is, without a read that could only find nothing.
		e.d = decision.Decide(decision.Input{Username: e.asked.Email, Now: h.now()})
		e.score, e.verdict = h.Scores.For(e.d)
		return
	}
	q := access.Query{DeviceID: e.dev.ID, Username: e.asked.Email, Device: &e.dev}
	d, err := h.Decide.Decide(ctx, q, access.StoredOnly)
	if err == nil && h.Grace != nil {
		// A grace period that cannot be recorded would start again at the
		// next request and never end: fail closed.
		err = h.Grace.Record(ctx, d)
	}
	if err != nil {
		log.Error("cloudflare evaluation failed; scored 0", "device_id", e.dev.ID, "err", err)
		d = decision.Decision{Reason: reason.Storage, DeviceID: e.dev.ID, Username: e.asked.Email}
	}
	e.d = d
	e.score, e.verdict = h.Scores.For(d)
}

// match finds the Clearance device of each evaluation: by serial number,
// then, when configured, by a hostname exactly one device has.
func (h *Handler) match(ctx context.Context, evals []evaluation, log *slog.Logger) error {
	bySerial := map[string][]storage.Device{}
	var serials []string
	for _, e := range evals {
		if s := storage.CanonicalSerial(e.asked.Serial); s != "" {
			if _, ok := bySerial[s]; !ok {
				bySerial[s] = nil
				serials = append(serials, s)
			}
		}
	}
	if len(serials) > 0 {
		found, err := h.Store.DevicesBySerial(ctx, serials)
		if err != nil {
			return err
		}
		for _, d := range found {
			s := storage.CanonicalSerial(d.SerialNumber)
			bySerial[s] = append(bySerial[s], d)
		}
	}
	var sharedSerials []shared
	logged := map[string]bool{}
	for i := range evals {
		s := storage.CanonicalSerial(evals[i].asked.Serial)
		ds := bySerial[s]
		if len(ds) == 0 {
			continue
		}
		// Anyone with an enroll secret can enroll a made-up hardware
		// UUID that claims another Mac's serial number: when two unrevoked
		// devices have it, neither is trusted to speak for it.
		if n := unrevoked(ds); n > 1 {
			evals[i].serialShared = true
			if !logged[s] {
				logged[s] = true
				sharedSerials = append(sharedSerials, shared{s, n})
			}
			continue
		}
		evals[i].dev = best(ds)
	}
	logShared(log, serialSharedMsg, "serial", sharedSerials)
	if !h.MatchHostname {
		return nil
	}

	byName := map[string][]storage.Device{}
	var names []string
	for _, e := range evals {
		if e.dev.ID != "" || e.serialShared {
			continue
		}
		for _, n := range hostnames(e.asked.Hostname) {
			if _, ok := byName[n]; !ok {
				byName[n] = nil
				names = append(names, n)
			}
		}
	}
	if len(names) == 0 {
		return nil
	}
	found, err := h.Store.DevicesByHostname(ctx, names)
	if err != nil {
		return err
	}
	for _, d := range found {
		n := storage.HostnameKey(d.Hostname)
		byName[n] = append(byName[n], d)
	}
	var sharedNames []shared
	for i := range evals {
		if evals[i].dev.ID != "" || evals[i].serialShared {
			continue
		}
		seen := map[string]storage.Device{}
		for _, n := range hostnames(evals[i].asked.Hostname) {
			for _, d := range byName[n] {
				seen[d.ID] = d
			}
		}
		switch len(seen) {
		case 0:
		case 1:
			for _, d := range seen {
				// A serial number Cloudflare gave that is not the one the
				// hostname's Mac enrolled with says it is another machine
				// of the same name (anyone may name theirs after a
				// colleague's): no match. Only a Mac that enrolled with no
				// serial number, or a device Cloudflare names by none, is
				// matched by hostname alone.
				// Any serial number counts, one that is not letters and
				// digits too ("VMware-56 4d …"): it is not the Mac's.
				if strings.TrimSpace(evals[i].asked.Serial) != "" && strings.TrimSpace(d.SerialNumber) != "" {
					continue
				}
				evals[i].dev = d
			}
		default:
			// Hostnames are not unique: guessing could score one Mac by
			// another's posture.
			if n := hostnames(evals[i].asked.Hostname)[0]; !logged[n] {
				logged[n] = true
				sharedNames = append(sharedNames, shared{evals[i].asked.Hostname, len(seen)})
			}
		}
	}
	logShared(log, hostnameSharedMsg, "hostname", sharedNames)
	return nil
}

// hostnames are the keys (storage.HostnameKey) a Mac may be known by: as
// given, and with or without macOS's ".local".
func hostnames(h string) []string {
	h = storage.HostnameKey(strings.TrimSpace(h))
	if h == "" || strings.ContainsFunc(h, control) {
		// No Mac's hostname has a control character.
		return nil
	}
	if base, ok := strings.CutSuffix(h, ".local"); ok && base != "" {
		return []string{h, base}
	}
	return []string{h, h + ".local"}
}

// shared is a serial number or hostname that more than one device has
// (unrevoked devices, for a serial number), so none is matched.
type shared struct {
	value   string
	devices int
}

// The log lines of shared serial numbers and hostnames.
const (
	serialSharedMsg   = "cloudflare_serial_shared: several unrevoked devices have this serial number; it is scored as an unknown device until those that are not this Mac are revoked"
	hostnameSharedMsg = "cloudflare_hostname_shared: several devices have this hostname; it is scored as an unknown device"
)

// logShared warns of the first serial number or hostname (key) of a
// request that several devices share, and names the others at debug: a
// request asks about up to 1,000 devices, and whoever holds an enroll
// secret can make every one of their serial numbers or hostnames shared,
// so a line per device would let them write 1,000 warn lines a poll. One a
// request is no more than the line every answered request already logs.
// The values are the sender's, and clipped.
func logShared(log *slog.Logger, msg, key string, ss []shared) {
	for i, s := range ss {
		attrs := []any{key, logsample.Clip(s.value), "devices", s.devices}
		if i == 0 {
			log.Warn(msg, append(attrs, "others_not_logged", len(ss)-1)...)
			continue
		}
		log.Debug(msg, attrs...)
	}
}

// unrevoked counts the devices of ds that are not revoked.
func unrevoked(ds []storage.Device) int {
	n := 0
	for _, d := range ds {
		if !d.Revoked() {
			n++
		}
	}
	return n
}

// best is the device a serial number means when enrolled devices have it
// and at most one of them is unrevoked (match scores more as unknown): the
// unrevoked one, else the revoked one seen last, which denies.
func best(ds []storage.Device) storage.Device {
	return slices.MinFunc(ds, func(a, b storage.Device) int {
		if a.Revoked() != b.Revoked() {
			if a.Revoked() {
				return 1
			}
			return -1
		}
		if c := b.LastSeen.Compare(a.LastSeen); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// record appends one decision per device, in one commit when the store can.
func (h *Handler) record(ctx context.Context, evals []evaluation, at time.Time, latency time.Duration) error {
	recs := make([]storage.DecisionRecord, len(evals))
	for i, e := range evals {
		recs[i] = storage.DecisionRecord{
			At:       at,
			Username: e.asked.Email,
			DeviceID: e.dev.ID,
			// Allowed is what Cloudflare can let through: a score above
			// 0. A Mac in warn mode is let through with the warning
			// score (no Continue to press), so its record is allowed
			// with the policy reason and mode warn.
			Allow:            e.score > 0,
			Reason:           string(e.d.Reason),
			Mode:             string(e.d.Mode),
			Results:          e.d.StoredResults(),
			PolicySetVersion: e.d.PolicySetVersion,
			ReportSeq:        e.d.ReportSeq,
			LiveCheck:        e.d.LiveCheck.String(),
			Latency:          latency,
			Source:           storage.SourceCloudflare,
			RequestID:        e.asked.ID,
			Score:            e.score,
		}
	}
	if b, ok := h.Store.(storage.DecisionBatcher); ok {
		return b.AppendDecisions(ctx, recs)
	}
	for _, rec := range recs {
		if _, err := h.Store.AppendDecision(ctx, rec); err != nil {
			return err
		}
	}
	return nil
}
