package loadgen

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"time"
)

// WriteKV writes the result as "key value" lines, one figure a line, for
// scripts (scripts/loadgen.sh builds the bench table from them).
func (r *Result) WriteKV(w io.Writer) {
	kv := func(k string, v any) { fmt.Fprintf(w, "%s %v\n", k, v) }
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }
	sum := func(name string, s Summary) {
		kv(name+"_count", s.Count)
		kv(name+"_per_s", fmt.Sprintf("%.1f", s.Rate()))
		kv(name+"_p50_ms", ms(s.P50))
		kv(name+"_p99_ms", ms(s.P99))
	}
	kv("agents", r.Agents)
	kv("agents_connected", r.Connected)
	kv("agents_failed", r.Failed)
	kv("ramp_s", fmt.Sprintf("%.1f", r.Ramp.Seconds()))
	sum("ingest", r.Ingest)
	sum("steady_ack", r.SteadyIngest)
	sum("sso_allow", r.Allow)
	sum("sso_allow_agent", r.AllowAgent)
	sum("sso_deny", r.Deny)
	kv("sso_at_rate_target_per_s", fmt.Sprintf("%.1f", r.SigninRate))
	sum("sso_at_rate", r.SigninsAtRate)
	sum("check", r.Check)
	kv("rss_base_kib", r.RSSBase/1024)
	kv("rss_connected_kib", r.RSSConnected/1024)
	kv("rss_kib", r.RSS/1024)
	kv("rss_per_agent_kib", fmt.Sprintf("%.1f", r.RSSPerAgent()/1024))
	for _, ph := range slices.Sorted(maps.Keys(r.CPU)) {
		kv("cpu_"+ph+"_verifier_cores", fmt.Sprintf("%.2f", r.CPU[ph].Verifier))
		kv("cpu_"+ph+"_loadgen_cores", fmt.Sprintf("%.2f", r.CPU[ph].Loadgen))
	}
	for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
		kv("errors_"+k, r.Errors[k])
	}
}

// WriteTable writes the result for a person.
func (r *Result) WriteTable(w io.Writer) {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	fmt.Fprintf(w, "%-48s %10s %9s %9s %8s\n", "measure (end to end, loadgen)", "per second", "p50 ms", "p99 ms", "count")
	row := func(name string, s Summary) {
		fmt.Fprintf(w, "%-48s %10.1f %9.2f %9.2f %8d\n", name, s.Rate(), ms(s.P50), ms(s.P99), s.Count)
	}
	row("ingest, back to back (report -> Ack)", r.Ingest)
	row("ingest at the report interval (report -> Ack)", r.SteadyIngest)
	row("SSO allow, certificate binding, back to back", r.Allow)
	row("SSO allow, agent proof of presence, back to back", r.AllowAgent)
	row("SSO deny (403), back to back", r.Deny)
	row(fmt.Sprintf("SSO at %.0f/s (allow and deny)", r.SigninRate), r.SigninsAtRate)
	row("live check (RequestCheck round trip)", r.Check)
	fmt.Fprintf(w, "agents connected %d of %d (%d failed to start; ramp-up %.1fs)\n", r.Connected, r.Agents, r.Failed, r.Ramp.Seconds())
	if r.RSS > 0 {
		fmt.Fprintf(w, "verifier RSS %.1f MiB before agents, %.1f MiB with them connected (%.1f KiB per agent), %.1f MiB after load\n",
			float64(r.RSSBase)/(1<<20), float64(r.RSSConnected)/(1<<20), r.RSSPerAgent()/1024, float64(r.RSS)/(1<<20))
	}
	for _, ph := range slices.Sorted(maps.Keys(r.CPU)) {
		fmt.Fprintf(w, "phase %s: verifier used %.2f cores, loadgen %.2f\n", ph, r.CPU[ph].Verifier, r.CPU[ph].Loadgen)
	}
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "errors: %v\n", r.Errors)
	}
}
