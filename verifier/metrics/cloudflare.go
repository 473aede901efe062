package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Cloudflare are the metrics of Cloudflare's device posture integration.
// Every method is safe on a nil *Cloudflare.
type Cloudflare struct {
	requests     *prometheus.CounterVec
	evaluations  *prometheus.CounterVec
	batchSeconds prometheus.Histogram
	batchDevices prometheus.Histogram
	jwksFetches  *prometheus.CounterVec
}

// NewCloudflare registers the Cloudflare metrics in m's registry; call it
// once, when the integration is configured. nil m gives nil.
func (m *Metrics) NewCloudflare() *Cloudflare {
	if m == nil {
		return nil
	}
	c := &Cloudflare{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clearance_cloudflare_requests_total",
			Help: "Posture requests from Cloudflare, by outcome (answered, or why refused: no_token, bad_signature, wrong_audience, jwks_unavailable, body_too_large, malformed, …).",
		}, []string{"outcome"}),
		evaluations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clearance_cloudflare_evaluations_total",
			Help: "Devices scored for Cloudflare, by verdict (compliant, warning, or the decision reason that scored 0).",
		}, []string{"verdict"}),
		batchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "clearance_cloudflare_batch_duration_seconds",
			Help:    "Time to answer one answered posture request, token check, lookups, decisions and decision log included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		batchDevices: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "clearance_cloudflare_batch_devices",
			Help:    "Devices asked about per answered posture request.",
			Buckets: []float64{1, 10, 50, 100, 250, 500, 1000},
		}),
		jwksFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clearance_cloudflare_jwks_fetches_total",
			Help: "Fetches of Cloudflare Access's signing keys, by outcome (ok, failed).",
		}, []string{"outcome"}),
	}
	m.Registry.MustRegister(c.requests, c.evaluations, c.batchSeconds, c.batchDevices, c.jwksFetches)
	return c
}

// Request counts a posture request's outcome.
func (c *Cloudflare) Request(outcome string) {
	if c == nil {
		return
	}
	c.requests.WithLabelValues(outcome).Inc()
}

// Batch records an answered request: its size and how long it took.
func (c *Cloudflare) Batch(devices int, d time.Duration) {
	if c == nil {
		return
	}
	c.batchDevices.Observe(float64(devices))
	c.batchSeconds.Observe(d.Seconds())
}

// Evaluation counts one device's verdict.
func (c *Cloudflare) Evaluation(verdict string) {
	if c == nil {
		return
	}
	c.evaluations.WithLabelValues(verdict).Inc()
}

// JWKSFetch counts a fetch of the signing keys.
func (c *Cloudflare) JWKSFetch(ok bool) {
	if c == nil {
		return
	}
	outcome := "failed"
	if ok {
		outcome = "ok"
	}
	c.jwksFetches.WithLabelValues(outcome).Inc()
}
