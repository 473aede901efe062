package loadgen

import (
	"slices"
	"sync"
	"time"
)

// Recorder collects latencies from many goroutines.
type Recorder struct {
	mu sync.Mutex
	ds []time.Duration
}

// Add records one latency.
func (r *Recorder) Add(d time.Duration) {
	r.mu.Lock()
	r.ds = append(r.ds, d)
	r.mu.Unlock()
}

// Summary is what a phase reports about one kind of operation.
type Summary struct {
	Count    int
	Seconds  float64 // the phase's length
	P50, P99 time.Duration
}

// Rate is Count per second of the phase.
func (s Summary) Rate() float64 {
	if s.Seconds <= 0 {
		return 0
	}
	return float64(s.Count) / s.Seconds
}

// Summary sorts what was recorded and summarises it over elapsed.
func (r *Recorder) Summary(elapsed time.Duration) Summary {
	r.mu.Lock()
	ds := slices.Clone(r.ds)
	r.mu.Unlock()
	slices.Sort(ds)
	return Summary{Count: len(ds), Seconds: elapsed.Seconds(), P50: Percentile(ds, 0.50), P99: Percentile(ds, 0.99)}
}

// Percentile is the nearest-rank p-quantile (0 < p <= 1) of sorted: the
// smallest value with at least p of the values at or below it. Zero for
// no values.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	// The rank is ceil(p*n); the small epsilon keeps p*n that is a whole
	// number in floating point from rounding up past it.
	rank := int(float64(len(sorted))*p + 0.999999)
	return sorted[min(max(rank-1, 0), len(sorted)-1)]
}
