// Package report signs and verifies posture reports. Both sides use it: the
// agent signs the exact bytes it serialized, and the verifier checks the
// signature over the exact bytes it received before it parses anything.
//
// The signature is ECDSA (ASN.1 DER) over H(Context || payload), where H is
// SHA-256 for P-256 keys and SHA-384 for P-384 keys. Context keeps a report
// signature from ever being mistaken for a signature over anything else the
// device key signs (CSRs, TLS handshakes).
package report

import (
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/clearance/clearance/pkg/devicesig"
	"github.com/clearance/clearance/pkg/policy"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// Context is prefixed to the payload before hashing.
const Context = "clearance posture report v1\n"

// Limits on what a report may hold. They bound the verifier's work per report
// and keep a compromised device from filling the database.
const (
	MaxPayloadSize   = 256 << 10
	MaxSignatureSize = 256
	MaxResults       = policy.MaxPolicies
	MaxMessageSize   = 4 << 10
	MaxNonceSize     = 64
	MaxVersionSize   = 128
)

// MaxSeq bounds a report's seq: the verifier refuses a higher one as
// InvalidArgument, and the agent never signs one. An agent counts from 1,
// one per report, and jumps at most to the clock in milliseconds (about
// 2^41 today) when its state was restored from a backup; 2^53 leaves it
// ages of room, while a seq above it can only come from a bug or an attack,
// which must not push the device's sequence to where its next real report
// is refused forever. 2^53 is also the largest integer every JSON reader
// keeps exactly (the admin API's consumers, grpcurl).
const MaxSeq = 1 << 53

// Errors returned by Verify and Check; match with errors.Is.
var (
	ErrTooLarge     = errors.New("report too large")
	ErrBadSignature = errors.New("report signature does not verify")
	ErrMalformed    = errors.New("report malformed")
	ErrKeyType      = devicesig.ErrKeyType
)

// Sign serializes r deterministically and signs the resulting bytes.
func Sign(signer crypto.Signer, r *agentv1.PostureReport) (*agentv1.SignedReport, error) {
	payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("serializing report: %w", err)
	}
	sig, err := SignPayload(signer, payload)
	if err != nil {
		return nil, err
	}
	return &agentv1.SignedReport{Payload: payload, Signature: sig}, nil
}

// SignPayload signs already serialized report bytes.
func SignPayload(signer crypto.Signer, payload []byte) ([]byte, error) {
	sig, err := devicesig.Sign(signer, Context, payload)
	if err != nil {
		return nil, fmt.Errorf("signing report: %w", err)
	}
	return sig, nil
}

// Verify checks sr's signature with pub, then parses and checks the report.
// Nothing from the payload is trusted or even parsed before the signature
// verifies.
func Verify(pub crypto.PublicKey, sr *agentv1.SignedReport) (*agentv1.PostureReport, error) {
	if sr == nil {
		return nil, fmt.Errorf("%w: empty message", ErrMalformed)
	}
	if len(sr.GetPayload()) > MaxPayloadSize {
		return nil, fmt.Errorf("%w: payload is %d bytes, limit %d", ErrTooLarge, len(sr.GetPayload()), MaxPayloadSize)
	}
	if len(sr.GetSignature()) > MaxSignatureSize {
		return nil, fmt.Errorf("%w: signature is %d bytes, limit %d", ErrTooLarge, len(sr.GetSignature()), MaxSignatureSize)
	}
	if ok, err := devicesig.Verify(pub, Context, sr.GetPayload(), sr.GetSignature()); err != nil {
		return nil, err
	} else if !ok {
		return nil, ErrBadSignature
	}
	r := new(agentv1.PostureReport)
	if err := (proto.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(sr.GetPayload(), r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := Check(r); err != nil {
		return nil, err
	}
	return r, nil
}

// Check validates a report's structure (not its freshness or sequence, which
// need the verifier's state), its settings rejection included.
func Check(r *agentv1.PostureReport) error {
	bad := malformed
	switch {
	case r.GetDeviceId() == "":
		return bad("device_id is empty")
	case len(r.GetDeviceId()) > 64:
		return bad("device_id longer than 64 bytes")
	case r.GetSeq() == 0:
		return bad("seq must be at least 1")
	case r.GetObservedAt() == nil:
		return bad("observed_at is missing")
	case r.GetObservedAt().CheckValid() != nil:
		return bad("observed_at: %v", r.GetObservedAt().CheckValid())
	case len(r.GetNonce()) > MaxNonceSize:
		return bad("nonce longer than %d bytes", MaxNonceSize)
	case len(r.GetPolicySetVersion()) > MaxVersionSize:
		return bad("policy_set_version longer than %d bytes", MaxVersionSize)
	case len(r.GetAgentVersion()) > MaxVersionSize:
		return bad("agent_version longer than %d bytes", MaxVersionSize)
	case len(r.GetResults()) > MaxResults:
		return bad("%d results, limit %d", len(r.GetResults()), MaxResults)
	}
	seen := make(map[string]bool, len(r.GetResults()))
	for i, res := range r.GetResults() {
		switch {
		case !policy.ValidID(res.GetPolicyId()):
			return bad("results[%d]: policy_id %q is not a valid policy id", i, truncate(res.GetPolicyId()))
		case seen[res.GetPolicyId()]:
			return bad("results[%d]: policy %q reported twice", i, res.GetPolicyId())
		case res.GetStatus() == agentv1.PolicyStatus_POLICY_STATUS_UNSPECIFIED:
			return bad("results[%d]: policy %q has no status", i, res.GetPolicyId())
		case agentv1.PolicyStatus_name[int32(res.GetStatus())] == "":
			return bad("results[%d]: policy %q has unknown status %d", i, res.GetPolicyId(), res.GetStatus())
		case len(res.GetMessage()) > MaxMessageSize:
			return bad("results[%d]: message longer than %d bytes", i, MaxMessageSize)
		case !utf8.ValidString(res.GetMessage()):
			return bad("results[%d]: message is not UTF-8", i)
		case len(res.GetQuerySha256()) != 0 && len(res.GetQuerySha256()) != sha256.Size:
			return bad("results[%d]: query_sha256 is %d bytes, want %d", i, len(res.GetQuerySha256()), sha256.Size)
		}
		seen[res.GetPolicyId()] = true
	}
	return checkSettingsRejection(r.GetSettingsRejection(), r.GetObservedAt().AsTime())
}

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, a...)...)
}

func truncate(s string) string {
	if len(s) > 70 {
		return s[:70] + "…"
	}
	return s
}
