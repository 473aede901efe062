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
	kv("agent_client", r.AgentClient)
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
		if m := r.CPU[ph].Machine; r.CPU[ph].MachineOK {
			// Idle counts the cores waiting for a disk write too, as
			// iowait (the kernel counts those apart).
			kv("cpu_"+ph+"_idle_cores", fmt.Sprintf("%.2f", m.Idle+m.IOWait))
			kv("cpu_"+ph+"_iowait_cores", fmt.Sprintf("%.2f", m.IOWait))
			kv("cpu_"+ph+"_steal_cores", fmt.Sprintf("%.2f", m.Steal))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
		kv("errors_"+k, r.Errors[k])
	}
	if h := r.Hostile; h != nil {
		h.writeKV(kv, sum)
	}
}

// writeKV writes the hostile phase's figures, each key hostile_….
func (h *Hostile) writeKV(kv func(string, any), sum func(string, Summary)) {
	flood := func(name string, f HTTPFlood) {
		kv(name+"_answered", f.Sent)
		kv(name+"_per_s", fmt.Sprintf("%.1f", f.Rate()))
		kv(name+"_limited", f.Limited)
		kv(name+"_refused", f.Refused)
		kv(name+"_challenged", f.Challenged)
		kv(name+"_busy", f.Busy)
		kv(name+"_other", f.Other)
		kv(name+"_failed", f.Failed)
		kv(name+"_dropped", f.Dropped)
	}
	flood("hostile_unidentified", h.Unidentified)
	flood("hostile_unidentified_proxied", h.UnidentifiedProxied)
	kv("hostile_unidentified_seconds", fmt.Sprintf("%.1f", h.UnidentifiedSeconds))
	kv("hostile_unidentified_rows", h.UnidentifiedRows)
	kv("hostile_unidentified_rows_per_s", fmt.Sprintf("%.2f", h.UnidentifiedRowsPerSecond()))
	kv("hostile_unidentified_db_bytes", h.UnidentifiedDBBytes)
	kv("hostile_unidentified_db_bytes_per_10k", h.UnidentifiedDBBytesPer10k())
	flood("hostile_challenge", h.Challenges)
	kv("hostile_challenges_per_s", fmt.Sprintf("%.1f", float64(h.Challenges.Challenged)/max(h.Challenges.Seconds, 1e-9)))
	flood("hostile_challenge_proxied", h.ChallengesProxied)
	kv("hostile_challenges_proxied_per_s", fmt.Sprintf("%.1f", float64(h.ChallengesProxied.Challenged)/max(h.ChallengesProxied.Seconds, 1e-9)))
	kv("hostile_challenge_db_bytes", h.ChallengeDBBytes)
	kv("hostile_stream_conns", h.Streams.Conns)
	kv("hostile_stream_conns_closed", h.Streams.Closed)
	kv("hostile_watches", h.Streams.Watches)
	kv("hostile_watches_held", h.Streams.WatchesHeld)
	kv("hostile_watches_refused", h.Streams.WatchesRefused)
	kv("hostile_calls", h.Streams.Calls)
	kv("hostile_calls_held", h.Streams.CallsHeld)
	kv("hostile_calls_refused", h.Streams.CallsRefused)
	kv("hostile_rss_before_kib", h.RSSBefore/1024)
	kv("hostile_rss_kib", h.RSS/1024)
	kv("hostile_rss_growth_kib", h.RSSGrowth()/1024)
	flood("hostile_c", h.FloodsC)
	kv("hostile_c_attacker_rows", h.AttackerRowsC)
	sum("hostile_signin", h.Signins)
	sum("hostile_report", h.Reports)
	kv("hostile_signin_failed", h.SigninFailed)
	kv("hostile_signin_macs", h.SigninMacs)
	kv("hostile_report_failed", h.ReportFailed)
	kv("hostile_enrolled", h.Enrolled)
	kv("hostile_enroll_failed", h.EnrollFailed)
	kv("hostile_metrics_probes", h.MetricsProbes)
	kv("hostile_metrics_refused", h.MetricsRefused)
}

// UnidentifiedRowsPerSecond is window A's decision rows a second.
func (h *Hostile) UnidentifiedRowsPerSecond() float64 {
	if h.UnidentifiedSeconds <= 0 {
		return 0
	}
	return float64(h.UnidentifiedRows) / h.UnidentifiedSeconds
}

// UnidentifiedDBBytesPer10k is what the database grew by in window A per
// 10,000 requests answered (-1 when unknown).
func (h *Hostile) UnidentifiedDBBytesPer10k() int64 {
	if h.UnidentifiedDBBytes < 0 || h.UnidentifiedAll == 0 {
		return -1
	}
	return h.UnidentifiedDBBytes * 10000 / int64(h.UnidentifiedAll)
}

// RSSGrowth is how much the verifier's RSS grew from before the stream
// flood to its largest reading during window C.
func (h *Hostile) RSSGrowth() uint64 {
	if h.RSS < h.RSSBefore {
		return 0
	}
	return h.RSS - h.RSSBefore
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
	row("SSO allow, certificate and agent, back to back", r.Allow)
	row("SSO allow, agent proof of presence, back to back", r.AllowAgent)
	row("SSO deny (403), back to back", r.Deny)
	row(fmt.Sprintf("SSO at %.0f/s (allow and deny)", r.SigninRate), r.SigninsAtRate)
	row("live check (RequestCheck round trip)", r.Check)
	fmt.Fprintf(w, "agents connected %d of %d (%d failed to start; ramp-up %.1fs; %s client)\n", r.Connected, r.Agents, r.Failed, r.Ramp.Seconds(), r.AgentClient)
	if r.RSS > 0 {
		fmt.Fprintf(w, "verifier RSS %.1f MiB before agents, %.1f MiB with them connected (%.1f KiB per agent), %.1f MiB after load\n",
			float64(r.RSSBase)/(1<<20), float64(r.RSSConnected)/(1<<20), r.RSSPerAgent()/1024, float64(r.RSS)/(1<<20))
	}
	for _, ph := range slices.Sorted(maps.Keys(r.CPU)) {
		c := r.CPU[ph]
		if c.MachineOK {
			fmt.Fprintf(w, "phase %s: verifier used %.2f cores, loadgen %.2f; idle %.2f (waiting for disk %.2f), the hypervisor took %.2f\n",
				ph, c.Verifier, c.Loadgen, c.Machine.Idle+c.Machine.IOWait, c.Machine.IOWait, c.Machine.Steal)
		} else {
			fmt.Fprintf(w, "phase %s: verifier used %.2f cores, loadgen %.2f\n", ph, c.Verifier, c.Loadgen)
		}
	}
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "errors: %v\n", r.Errors)
	}
	if h := r.Hostile; h != nil {
		h.writeTable(w)
	}
}

// writeTable writes the hostile phase's figures for a person.
func (h *Hostile) writeTable(w io.Writer) {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	fmt.Fprintf(w, "hostile: unidentified sign-ins, one address: %d answered (%.0f/s), %d limited (429), %d refused (403)\n",
		h.Unidentified.Sent, h.Unidentified.Rate(), h.Unidentified.Limited, h.Unidentified.Refused)
	fmt.Fprintf(w, "hostile: unidentified sign-ins, a new address each: %d answered (%.0f/s), %d limited, %d refused\n",
		h.UnidentifiedProxied.Sent, h.UnidentifiedProxied.Rate(), h.UnidentifiedProxied.Limited, h.UnidentifiedProxied.Refused)
	fmt.Fprintf(w, "hostile: decision rows %d (%.2f/s); database grew %d bytes (%d per 10,000 requests)\n",
		h.UnidentifiedRows, h.UnidentifiedRowsPerSecond(), h.UnidentifiedDBBytes, h.UnidentifiedDBBytesPer10k())
	fmt.Fprintf(w, "hostile: sign-ins without a certificate, one address: %d answered, %d limited, %d challenges stored (%.1f/s), database grew %d bytes\n",
		h.Challenges.Sent, h.Challenges.Limited, h.Challenges.Challenged, float64(h.Challenges.Challenged)/max(h.Challenges.Seconds, 1e-9), h.ChallengeDBBytes)
	fmt.Fprintf(w, "hostile: sign-ins without a certificate, a new address each: %d answered, %d busy (503), %d challenges stored (%.1f/s)\n",
		h.ChallengesProxied.Sent, h.ChallengesProxied.Busy, h.ChallengesProxied.Challenged, float64(h.ChallengesProxied.Challenged)/max(h.ChallengesProxied.Seconds, 1e-9))
	fmt.Fprintf(w, "hostile: gRPC: %d connections (%d closed), %d Watch streams asked (%d held, %d refused), %d calls held open asked (%d held, %d refused)\n",
		h.Streams.Conns, h.Streams.Closed, h.Streams.Watches, h.Streams.WatchesHeld, h.Streams.WatchesRefused, h.Streams.Calls, h.Streams.CallsHeld, h.Streams.CallsRefused)
	fmt.Fprintf(w, "hostile: verifier RSS %.1f MiB before, %.1f MiB with the flood held (+%.1f MiB)\n",
		float64(h.RSSBefore)/(1<<20), float64(h.RSS)/(1<<20), float64(h.RSSGrowth())/(1<<20))
	fmt.Fprintf(w, "hostile: meanwhile: %d sign-ins from %d Macs (p99 %.1f ms, %d failed), %d reports (p99 %.1f ms), %d enrolled (%d failed), /metrics without token refused %d of %d, attacker decision rows %d\n",
		h.Signins.Count, h.SigninMacs, ms(h.Signins.P99), h.SigninFailed, h.Reports.Count, ms(h.Reports.P99), h.Enrolled, h.EnrollFailed, h.MetricsRefused, h.MetricsProbes, h.AttackerRowsC)
}
