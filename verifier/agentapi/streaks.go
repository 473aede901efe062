package agentapi

import (
	"hash/maphash"

	"github.com/clearance/clearance/pkg/policy"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/storage"
)

// Policy streaks: since when each policy's result on a Mac has been what
// it is (storage.PolicyStreakStore), for "failing since" and "compliant
// since". A stream keeps only a digest of its latest report's judged
// results, 8 bytes: a report that judges every policy as the one before
// costs a hash and nothing more, and only a change (or a stream's first
// report) carries the runs, written with the report in its transaction.

// setDigests is the policy set in force and its queries' digests, computed
// once per set.
type setDigests struct {
	ps      *agentv1.PolicySet
	digests [][]byte
}

var streakSeed = maphash.MakeSeed()

// digestsOf returns ps's query digests, from the last set's when ps is it.
func (s *Server) digestsOf(ps *agentv1.PolicySet) [][]byte {
	if d := s.setDigests.Load(); d != nil && d.ps == ps {
		return d.digests
	}
	d := &setDigests{ps: ps, digests: make([][]byte, len(ps.GetPolicies()))}
	for i, p := range ps.GetPolicies() {
		d.digests[i] = policy.QueryDigest(p.GetQuery())
	}
	s.setDigests.Store(d)
	return d.digests
}

// judged returns the policies in force as r judges them, and the device's
// compliance (storage.ComplianceStreak: PASS while every required policy
// passes), with their digest (never 0, the stream's "not known yet"); with
// build false, the digest alone.
func judged(ps *agentv1.PolicySet, digests [][]byte, r *agentv1.PostureReport, build bool) ([]storage.PolicyStreak, uint64) {
	var h maphash.Hash
	h.SetSeed(streakSeed)
	var out []storage.PolicyStreak
	if build {
		out = make([]storage.PolicyStreak, 0, len(ps.GetPolicies())+1)
	}
	compliant := true
	decision.Statuses(ps, r, digests, func(i int, p *agentv1.Policy, st decision.Status, _ *agentv1.PolicyResult) {
		if (p.GetRequired() || p.GetCritical()) && st != decision.StatusPass {
			compliant = false
		}
		h.WriteString(p.GetId())
		h.WriteByte(0)
		h.WriteString(string(st))
		h.WriteByte(0)
		h.Write(digests[i])
		if build {
			out = append(out, storage.PolicyStreak{PolicyID: p.GetId(), Status: string(st), QuerySHA256: digests[i]})
		}
	})
	// Which policies are required may change with the set while no result
	// does: the device's compliance is part of the digest.
	c := decision.StatusFail
	if compliant {
		c = decision.StatusPass
	}
	h.WriteString(string(c))
	if build {
		out = append(out, storage.PolicyStreak{PolicyID: storage.ComplianceStreak, Status: string(c)})
	}
	sum := h.Sum64()
	if sum == 0 {
		sum = 1
	}
	return out, sum
}

// streaks returns what the stream's report is to store of its device's
// runs (ingest.Verifier.AcceptWith), judged by ps, the set in force when
// it came: nothing when it judges every policy as the stream's last stored
// report did, else every policy's judgement and the device's compliance.
// done, called with how the report was stored, keeps the digest of what
// the store then holds: the stream's later reports compare with it.
func (c *agentStream) streaks(ps *agentv1.PolicySet) (fn func(*agentv1.PostureReport) []storage.PolicyStreak, done func(stored bool)) {
	if ps == nil {
		return nil, func(bool) {}
	}
	var pending uint64
	fn = func(r *agentv1.PostureReport) []storage.PolicyStreak {
		digests := c.s.digestsOf(ps)
		if c.streak != 0 {
			if _, sum := judged(ps, digests, r, false); sum == c.streak {
				return nil
			}
		}
		now, sum := judged(ps, digests, r, true)
		if len(now) > storage.MaxPolicyStreaks {
			// A set larger than any store keeps runs for (the policy
			// file refuses one): the report is stored without them.
			return nil
		}
		pending = sum
		return now
	}
	done = func(stored bool) {
		switch {
		case !stored:
			// Refused, a resend of a report stored before, or not known
			// to be stored: the next report compares with the store.
			c.streak = 0
		case pending != 0:
			c.streak = pending
		}
	}
	return fn, done
}
