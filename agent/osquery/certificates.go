package osquery

import (
	"cmp"
	"context"
	"encoding/hex"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// CertificatesQuery lists the certificates in users' keychains. osqueryd
// (root, on macOS) reads each home directory's Library/Keychains and names
// every row by the keychain file's canonical path, such as
// /Users/alice/Library/Keychains/login.keychain-db. The LIKE constraint
// reaches the table, which then opens only the files it matches (osquery
// reads % in a path constraint as a glob). Only columns the macOS table has
// are named: sid, store* and username exist on Windows alone.
const CertificatesQuery = "SELECT serial, sha1, path, not_valid_after, issuer, issuer2, authority_key_id " +
	"FROM certificates WHERE path LIKE '/Users/%/Library/Keychains/%'"

// Bounds on what KeychainCertificates returns; the verifier refuses a
// report beyond them.
const (
	MaxKeychainCertificates = 32
	maxCertSerial           = 64
	maxCertPath             = 1024
	maxCertIssuer           = 256
)

// KeychainCertificates returns the certificates in users' keychains whose
// authority key id is issuerKeyID (the subject key id of the CA that issued
// them), newest expiry first within each user's keychains, the users taking
// turns, at most MaxKeychainCertificates. Serials
// become lowercase hex without leading zeros, as the verifier writes them;
// osquery gives OpenSSL's BN_bn2hex (upper case, whole bytes). A row that
// cannot be named within the report's bounds is left out. The error is
// osquery's, for the caller to log.
func KeychainCertificates(ctx context.Context, q Querier, issuerKeyID []byte) ([]*agentv1.KeychainCertificate, error) {
	if len(issuerKeyID) == 0 {
		return nil, nil
	}
	rows, err := q.Query(ctx, CertificatesQuery)
	if err != nil {
		return nil, err
	}
	want := hex.EncodeToString(issuerKeyID)
	type entry struct {
		cert     *agentv1.KeychainCertificate
		notAfter int64
	}
	var found []entry
	seen := map[[2]string]bool{}
	for _, row := range rows {
		if normalizeHex(row["authority_key_id"]) != want {
			continue
		}
		c, notAfter, ok := keychainCertificate(row)
		if !ok || seen[[2]string{c.Sha1, c.Path}] {
			continue
		}
		seen[[2]string{c.Sha1, c.Path}] = true
		found = append(found, entry{c, notAfter})
	}
	slices.SortFunc(found, func(a, b entry) int {
		return cmp.Or(
			cmp.Compare(b.notAfter, a.notAfter),
			cmp.Compare(a.cert.Path, b.cert.Path),
			cmp.Compare(a.cert.Sha1, b.cert.Sha1),
		)
	})
	// Each user's keychains get their turn: the first of every user's,
	// then the second, and so on, so that one user who imports many
	// certificates naming the device CA (anyone can make one; nothing here
	// checks its signature) cannot push another user's out of the report.
	byUser := map[string][]*agentv1.KeychainCertificate{}
	var users []string // in the order of each user's first certificate
	for _, e := range found {
		u := keychainUser(e.cert.Path)
		if _, ok := byUser[u]; !ok {
			users = append(users, u)
		}
		byUser[u] = append(byUser[u], e.cert)
	}
	out := make([]*agentv1.KeychainCertificate, 0, min(len(found), MaxKeychainCertificates))
	for round := 0; len(out) < min(len(found), MaxKeychainCertificates); round++ {
		for _, u := range users {
			if round < len(byUser[u]) && len(out) < MaxKeychainCertificates {
				out = append(out, byUser[u][round])
			}
		}
	}
	return out, nil
}

// keychainUser is the home directory a keychain path is in (the query
// lists /Users/<name>/Library/Keychains/…), or the whole path if it is not
// in one.
func keychainUser(path string) string {
	rest, ok := strings.CutPrefix(path, "/Users/")
	if !ok {
		return path
	}
	name, _, ok := strings.Cut(rest, "/")
	if !ok {
		return path
	}
	return name
}

// keychainCertificate maps one row; ok is false when the row cannot be
// reported faithfully.
func keychainCertificate(row map[string]string) (c *agentv1.KeychainCertificate, notAfter int64, ok bool) {
	serial, ok := new(big.Int).SetString(strings.TrimSpace(row["serial"]), 16)
	if !ok || serial.Sign() <= 0 {
		return nil, 0, false
	}
	c = &agentv1.KeychainCertificate{
		Serial: serial.Text(16),
		Sha1:   normalizeHex(row["sha1"]),
		Path:   row["path"],
		Issuer: truncateUTF8(issuerCommonName(row["issuer2"], row["issuer"]), maxCertIssuer),
	}
	if len(c.Serial) > maxCertSerial || len(c.Sha1) != 40 || !isHex(c.Sha1) ||
		len(c.Path) > maxCertPath || !utf8.ValidString(c.Path) {
		return nil, 0, false
	}
	// osquery gives Unix seconds; the sort puts a missing expiry last.
	notAfter = -1 << 63
	if n, err := strconv.ParseInt(row["not_valid_after"], 10, 64); err == nil {
		notAfter = n
		c.NotValidAfter = timestamppb.New(time.Unix(n, 0))
	}
	return c, notAfter, true
}

// normalizeHex lowercases a hex string and drops colon separators, so key
// ids and fingerprints compare whatever way they were written.
func normalizeHex(s string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// issuerCommonName is the last CN of the issuer name: from issuer2
// ("O = Clearance, CN = Clearance Device CA", OpenSSL's XN_FLAG_ONELINE,
// where a value with a special character is quoted), else from the
// deprecated issuer ("/O=Clearance/CN=Clearance Device CA").
func issuerCommonName(issuer2, issuer string) string {
	cn := ""
	for _, part := range splitOneline(issuer2) {
		if v, ok := strings.CutPrefix(part, "CN = "); ok {
			cn = unquoteOneline(v)
		}
	}
	if cn != "" {
		return cn
	}
	for _, part := range strings.Split(issuer, "/") {
		if v, ok := strings.CutPrefix(part, "CN="); ok {
			cn = v
		}
	}
	return strings.ToValidUTF8(cn, "\uFFFD")
}

// splitOneline splits an XN_FLAG_ONELINE name at the ", " and " + " that
// separate attributes, not at those inside quotes or after a backslash.
func splitOneline(s string) []string {
	var parts []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\':
			i++
		case s[i] == '"':
			quoted = !quoted
		case !quoted && strings.HasPrefix(s[i:], ", "):
			parts = append(parts, s[start:i])
			start = i + 2
			i++
		case !quoted && strings.HasPrefix(s[i:], " + "):
			parts = append(parts, s[start:i])
			start = i + 3
			i += 2
		}
	}
	return append(parts, s[start:])
}

// unquoteOneline undoes XN_FLAG_ONELINE's quoting and escapes (\\, \",
// \HH for a byte).
func unquoteOneline(v string) string {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '\\' || i+1 >= len(v) {
			b.WriteByte(v[i])
			continue
		}
		if i+2 < len(v) {
			if x, err := hex.DecodeString(v[i+1 : i+3]); err == nil {
				b.Write(x)
				i += 2
				continue
			}
		}
		b.WriteByte(v[i+1])
		i++
	}
	return strings.ToValidUTF8(b.String(), "\uFFFD")
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
