package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"slices"
)

// versionFormat names the canonical encoding below; change it whenever that
// encoding changes, so old and new versions can never collide.
const versionFormat = "clearance.policy.v2"

// version is the first 16 hex digits of SHA-256 over a canonical encoding
// of the normalized policies (defaults applied, text trimmed), in file
// order. YAML layout, quoting and comments never reach it; every Policy
// field does, so any change yields a new version. Reordering policies does
// too, because the order is part of what agents and pages show.
func version(policies []Policy) string {
	// Length-prefixed fields: unambiguous for any bytes, unlike a text
	// encoding that could normalize or escape them.
	var buf []byte
	str := func(s string) {
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	flag := func(b bool) {
		if b {
			buf = append(buf, 1)
		} else {
			buf = append(buf, 0)
		}
	}
	str(versionFormat)
	buf = binary.AppendUvarint(buf, uint64(len(policies)))
	for _, p := range policies {
		str(p.ID)
		str(p.Name)
		str(p.Description)
		str(p.UserText)
		str(p.Query)
		buf = binary.AppendUvarint(buf, uint64(len(p.Platforms)))
		for _, pl := range p.Platforms {
			str(pl)
		}
		str(p.Resolution)
		flag(p.Required)
		flag(p.Critical)
		buf = binary.AppendVarint(buf, int64(p.Interval))
	}
	// Rollout settings follow every policy, and only when a policy has
	// any: sets without them keep the versions they had before these keys
	// existed. After the length-prefixed policies, the block cannot be
	// mistaken for one.
	if slices.ContainsFunc(policies, func(p Policy) bool { return p.Enforcement != "" || p.Grace != 0 || p.AllowBypass }) {
		str("rollout")
		for _, p := range policies {
			str(p.Enforcement)
			buf = binary.AppendVarint(buf, int64(p.Grace))
			flag(p.AllowBypass)
		}
	}
	// Group scopes come after every policy, and only when a policy has one,
	// so a file without them keeps the version it had before they existed.
	scoped := false
	for _, p := range policies {
		scoped = scoped || len(p.Groups) > 0 || len(p.ExcludeGroups) > 0
	}
	if scoped {
		str("groups")
		for _, p := range policies {
			for _, list := range [][]string{p.Groups, p.ExcludeGroups} {
				buf = binary.AppendUvarint(buf, uint64(len(list)))
				for _, g := range list {
					str(g)
				}
			}
		}
	}
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:8])
}

// QueryDigest is the SHA-256 of a policy's query, as a report's result
// names the query it is for (PolicyResult.query_sha256): the agent stamps
// each result with it, and the verifier counts a result only for a policy
// whose query has the same.
func QueryDigest(query string) []byte {
	sum := sha256.Sum256([]byte(query))
	return sum[:]
}
