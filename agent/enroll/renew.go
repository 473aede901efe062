package enroll

import (
	"context"
	"time"

	"google.golang.org/grpc/status"

	retrypkg "github.com/clearance/clearance/agent/retry"
	"github.com/clearance/clearance/pkg/logsample"
)

// Renewal retry bounds: soon enough to renew before expiry after a network
// outage, rare enough not to hammer a verifier that refuses.
const (
	renewMinRetry = 30 * time.Second
	renewMaxRetry = 30 * time.Minute
)

// Execute renews the certificate at two thirds of its life, retrying with
// backoff, until Interrupt. It is the renewal actor.
func (m *Manager) Execute() error {
	m.init()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // owned: ends with Execute
		select {
		case <-m.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	// A change before Execute started is already in Identity.
	select {
	case <-m.changed:
	default:
	}
	retry := time.Duration(0)
	// early backs off renewals that brought a certificate already due
	// for renewal: a verifier issuing only those (a compromised or broken
	// one) would otherwise have the agent renew in a loop, each a CSR
	// signed by the device key and three synced writes.
	early := time.Duration(0)
	for {
		id := m.Identity()
		var wake <-chan time.Time
		if id != nil {
			wait := id.RenewAt().Sub(m.now())
			if retry > 0 {
				wait = retry
			}
			wake = m.after(max(wait, 0))
		}
		select {
		case <-m.stop:
			return nil
		case <-m.changed:
			retry = 0
			continue
		case <-wake:
		}
		if _, err := m.Renew(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			code := status.Code(err)
			switch retrypkg.Of(retrypkg.Renew, err) {
			case retrypkg.Reenroll:
				// The verifier no longer takes this certificate: the stream
				// enrolls again when it next connects.
				m.Forget(logsample.ClipMessage(err.Error()))
				retry = renewMinRetry
			case retrypkg.Stop:
				retry = renewMaxRetry
				m.log().Error("certificate renewal refused; not retrying soon", "code", code.String(), "err", logsample.ClipMessage(err.Error()), "retry_in", retry)
				continue
			default:
				// Sooner than the verifier says (RetryInfo) would be
				// refused again.
				retry = min(max(retry*2, renewMinRetry, retrypkg.After(err)), renewMaxRetry)
			}
			m.log().Warn("certificate renewal failed", "code", code.String(), "err", logsample.ClipMessage(err.Error()), "retry_in", retry)
			continue
		}
		retry = 0
		// The change this renewal made is taken in here, not as news.
		select {
		case <-m.changed:
		default:
		}
		if id := m.Identity(); id != nil && id.RenewAt().Before(m.now().Add(renewMinRetry)) {
			early = min(max(early*2, renewMinRetry), renewMaxRetry)
			retry = early
			m.log().Warn("the verifier issued a certificate already due for renewal; renewing again later",
				"renew_at", id.RenewAt().UTC().Format(time.RFC3339), "retry_in", retry)
			continue
		}
		early = 0
	}
}

// Interrupt stops Execute.
func (m *Manager) Interrupt(error) {
	m.init()
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
}
