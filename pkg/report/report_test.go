package report_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/clearance/clearance/pkg/report"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

func key(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sample() *agentv1.PostureReport {
	return &agentv1.PostureReport{
		DeviceId:         "dev-1",
		Seq:              7,
		ObservedAt:       timestamppb.New(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)),
		PolicySetVersion: "abc",
		Results: []*agentv1.PolicyResult{
			{PolicyId: "filevault", Status: agentv1.PolicyStatus_POLICY_STATUS_PASS, Rows: 1},
			{PolicyId: "firewall", Status: agentv1.PolicyStatus_POLICY_STATUS_ERROR, Message: "no such table: alf"},
		},
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	t.Parallel()
	for _, c := range []elliptic.Curve{elliptic.P256(), elliptic.P384()} {
		t.Run(c.Params().Name, func(t *testing.T) {
			t.Parallel()
			k := key(t, c)
			sr, err := report.Sign(k, sample())
			if err != nil {
				t.Fatal(err)
			}
			got, err := report.Verify(k.Public(), sr)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, sample()) {
				t.Fatalf("round trip changed the report: %v", got)
			}
		})
	}
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	k := key(t, elliptic.P256())
	other := key(t, elliptic.P256())
	good, err := report.Sign(k, sample())
	if err != nil {
		t.Fatal(err)
	}
	signWith := func(mut func(*agentv1.PostureReport)) *agentv1.SignedReport {
		r := sample()
		mut(r)
		sr, err := report.Sign(k, r)
		if err != nil {
			t.Fatal(err)
		}
		return sr
	}
	tampered := proto.Clone(good).(*agentv1.SignedReport)
	tampered.Payload = append([]byte(nil), good.Payload...)
	tampered.Payload[len(tampered.Payload)-1] ^= 1
	otherSig, _ := report.Sign(other, sample())
	rawSigned := func(payload []byte) *agentv1.SignedReport {
		sig, err := report.SignPayload(k, payload)
		if err != nil {
			t.Fatal(err)
		}
		return &agentv1.SignedReport{Payload: payload, Signature: sig}
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		pub  crypto.PublicKey
		sr   *agentv1.SignedReport
		want error
		msg  string
	}{
		{"nil", k.Public(), nil, report.ErrMalformed, "empty"},
		{"tampered payload", k.Public(), tampered, report.ErrBadSignature, ""},
		{"other device's key", k.Public(), otherSig, report.ErrBadSignature, ""},
		{"no signature", k.Public(), &agentv1.SignedReport{Payload: good.Payload}, report.ErrBadSignature, ""},
		{"signature over bytes without context", k.Public(), func() *agentv1.SignedReport {
			// A signature made without the context prefix must not verify.
			h := crypto.SHA256.New()
			h.Write(good.Payload)
			sig, _ := ecdsa.SignASN1(rand.Reader, k, h.Sum(nil))
			return &agentv1.SignedReport{Payload: good.Payload, Signature: sig}
		}(), report.ErrBadSignature, ""},
		{"oversized payload", k.Public(), &agentv1.SignedReport{Payload: make([]byte, report.MaxPayloadSize+1)}, report.ErrTooLarge, "payload"},
		{"oversized signature", k.Public(), &agentv1.SignedReport{Payload: good.Payload, Signature: make([]byte, 300)}, report.ErrTooLarge, "signature"},
		{"rsa key", &rsaKey.PublicKey, good, report.ErrKeyType, "rsa"},
		{"garbage payload", k.Public(), rawSigned([]byte{0xff, 0xff, 0xff}), report.ErrMalformed, ""},
		{"empty device", k.Public(), signWith(func(r *agentv1.PostureReport) { r.DeviceId = "" }), report.ErrMalformed, "device_id"},
		{"seq zero", k.Public(), signWith(func(r *agentv1.PostureReport) { r.Seq = 0 }), report.ErrMalformed, "seq"},
		{"no observed_at", k.Public(), signWith(func(r *agentv1.PostureReport) { r.ObservedAt = nil }), report.ErrMalformed, "observed_at"},
		{"bad observed_at", k.Public(), signWith(func(r *agentv1.PostureReport) { r.ObservedAt.Nanos = -1 }), report.ErrMalformed, "observed_at"},
		{"long nonce", k.Public(), signWith(func(r *agentv1.PostureReport) { r.Nonce = make([]byte, 65) }), report.ErrMalformed, "nonce"},
		{"bad policy id", k.Public(), signWith(func(r *agentv1.PostureReport) { r.Results[0].PolicyId = "<script>" }), report.ErrMalformed, "policy_id"},
		{"duplicate policy", k.Public(), signWith(func(r *agentv1.PostureReport) { r.Results[1].PolicyId = "filevault" }), report.ErrMalformed, "twice"},
		{"no status", k.Public(), signWith(func(r *agentv1.PostureReport) { r.Results[0].Status = 0 }), report.ErrMalformed, "no status"},
		{"unknown status", k.Public(), signWith(func(r *agentv1.PostureReport) { r.Results[0].Status = 42 }), report.ErrMalformed, "unknown status"},
		{"huge message", k.Public(), signWith(func(r *agentv1.PostureReport) { r.Results[1].Message = strings.Repeat("x", report.MaxMessageSize+1) }), report.ErrMalformed, "message"},
		{"short query digest", k.Public(), signWith(func(r *agentv1.PostureReport) { r.Results[0].QuerySha256 = make([]byte, 31) }), report.ErrMalformed, "query_sha256"},
		{"long query digest", k.Public(), signWith(func(r *agentv1.PostureReport) { r.Results[0].QuerySha256 = make([]byte, 33) }), report.ErrMalformed, "query_sha256"},
		{"settings rejected without a time", k.Public(), signWith(func(r *agentv1.PostureReport) {
			r.SettingsRejection = &agentv1.SettingsRejection{Reason: "x"}
		}), report.ErrMalformed, "settings_rejection: at is missing"},
		{"settings rejected after the report", k.Public(), signWith(func(r *agentv1.PostureReport) {
			r.SettingsRejection = &agentv1.SettingsRejection{At: timestamppb.New(r.ObservedAt.AsTime().Add(time.Nanosecond)), Reason: "x"}
		}), report.ErrMalformed, "settings_rejection: at is after observed_at"},
		{"settings rejected before 1970", k.Public(), signWith(func(r *agentv1.PostureReport) {
			r.SettingsRejection = &agentv1.SettingsRejection{At: timestamppb.New(time.Unix(0, 0)), Reason: "x"}
		}), report.ErrMalformed, "settings_rejection: at is before 1970"},
		{"settings rejected at no valid time", k.Public(), signWith(func(r *agentv1.PostureReport) {
			r.SettingsRejection = &agentv1.SettingsRejection{At: &timestamppb.Timestamp{Seconds: 1, Nanos: -1}, Reason: "x"}
		}), report.ErrMalformed, "settings_rejection: at:"},
		{"settings rejected for no reason", k.Public(), signWith(func(r *agentv1.PostureReport) {
			r.SettingsRejection = &agentv1.SettingsRejection{At: r.ObservedAt}
		}), report.ErrMalformed, "settings_rejection: reason is empty"},
		{"settings rejected at length", k.Public(), signWith(func(r *agentv1.PostureReport) {
			r.SettingsRejection = &agentv1.SettingsRejection{At: r.ObservedAt, Reason: strings.Repeat("x", report.MaxSettingsReasonSize+1)}
		}), report.ErrMalformed, "settings_rejection: reason is 257 bytes, limit 256"},
		{"settings rejected in no UTF-8", k.Public(), func() *agentv1.SignedReport {
			// protobuf refuses to write it: written, then edited.
			sr := signWith(func(r *agentv1.PostureReport) {
				r.SettingsRejection = &agentv1.SettingsRejection{At: r.ObservedAt, Reason: "cafe-reason"}
			})
			return rawSigned(bytes.Replace(sr.Payload, []byte("cafe-reason"), []byte("caf\xe9-reason"), 1))
		}(), report.ErrMalformed, "utf-8"},
		{"settings rejected with a line break", k.Public(), signWith(func(r *agentv1.PostureReport) {
			r.SettingsRejection = &agentv1.SettingsRejection{At: r.ObservedAt, Reason: "one\nNEW SETTINGS: fine"}
		}), report.ErrMalformed, "settings_rejection: reason holds a control, format or line-separator character"},
		{"settings rejected with an escape", k.Public(), signWith(func(r *agentv1.PostureReport) {
			r.SettingsRejection = &agentv1.SettingsRejection{At: r.ObservedAt, Reason: "\x1b[2J"}
		}), report.ErrMalformed, "control, format"},
		{"too many results", k.Public(), signWith(func(r *agentv1.PostureReport) {
			r.Results = make([]*agentv1.PolicyResult, report.MaxResults+1)
			for i := range r.Results {
				r.Results[i] = &agentv1.PolicyResult{PolicyId: "p", Status: 1}
			}
		}), report.ErrMalformed, "results"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := report.Verify(tc.pub, tc.sr)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify error = %v, want %v", err, tc.want)
			}
			if tc.msg != "" && !strings.Contains(strings.ToLower(err.Error()), tc.msg) {
				t.Fatalf("error %q does not mention %q", err, tc.msg)
			}
		})
	}
}

// TestSettingsReason: what the agent says of settings it rejected is the
// error as status shows it, on one line with controls escaped, cut to
// the bound on a character boundary; a report carrying it verifies.
func TestSettingsReason(t *testing.T) {
	t.Parallel()
	k := key(t, elliptic.P256())
	long := strings.Repeat("é", report.MaxSettingsReasonSize) // 2 bytes each
	for _, tc := range []struct{ why, want string }{
		{`CAFingerprint from /Library/Managed Preferences/com.clearance.agent.plist key CAFingerprint: no configured CA certificate has this fingerprint`,
			`CAFingerprint from /Library/Managed Preferences/com.clearance.agent.plist key CAFingerprint: no configured CA certificate has this fingerprint`},
		{"a\nb\tc\x1b[2J\u202e d \xff", `a\nb\tc\x1b[2J\u202e d \xff`},
		{"  spaced  ", "spaced"},
		{"", "no reason given"},
		{long, strings.Repeat("é", (report.MaxSettingsReasonSize-3)/2) + "…"},
		{strings.Repeat("x", 300), strings.Repeat("x", report.MaxSettingsReasonSize-3) + "…"},
	} {
		got := report.SettingsReason(tc.why)
		if got != tc.want {
			t.Errorf("SettingsReason(%q) = %q, want %q", tc.why, got, tc.want)
		}
		r := sample()
		r.SettingsRejection = &agentv1.SettingsRejection{At: r.ObservedAt, Reason: got}
		sr, err := report.Sign(k, r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := report.Verify(k.Public(), sr); err != nil {
			t.Errorf("a report with SettingsReason(%q) is refused: %v", tc.why, err)
		}
	}
}

// TestUnknownFieldsVerify: a report carrying a field this side does not
// know verifies, the field kept, as settings_rejection (10) does on a
// verifier older than it: agents and verifiers are upgraded apart.
func TestUnknownFieldsVerify(t *testing.T) {
	t.Parallel()
	k := key(t, elliptic.P256())
	payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(sample())
	if err != nil {
		t.Fatal(err)
	}
	payload = protowire.AppendTag(payload, 99, protowire.BytesType)
	payload = protowire.AppendBytes(payload, []byte("a later agent's field"))
	sig, err := report.SignPayload(k, payload)
	if err != nil {
		t.Fatal(err)
	}
	r, err := report.Verify(k.Public(), &agentv1.SignedReport{Payload: payload, Signature: sig})
	if err != nil {
		t.Fatalf("a report with an unknown field is refused: %v", err)
	}
	if len(r.ProtoReflect().GetUnknown()) == 0 || r.GetSettingsRejection() != nil {
		t.Errorf("unknown field lost or misread: %v", r)
	}
}

// FuzzVerify feeds arbitrary payloads and signatures to Verify. Nothing may
// panic, and since the fuzzer cannot forge signatures, anything accepted must
// be a genuinely signed seed.
func FuzzVerify(f *testing.F) {
	k := key(f, elliptic.P256())
	good, err := report.Sign(k, sample())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good.Payload, good.Signature)
	f.Add([]byte{}, []byte{})
	f.Add(good.Payload, []byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, payload, sig []byte) {
		r, err := report.Verify(k.Public(), &agentv1.SignedReport{Payload: payload, Signature: sig})
		if err == nil && string(payload) != string(good.Payload) {
			t.Fatalf("accepted a payload nobody signed: %v", r)
		}
	})
}

// FuzzDecode signs arbitrary payloads with the device key, so the fuzzer
// reaches the parsing and checking that run after a signature verifies: what
// a compromised device could send.
func FuzzDecode(f *testing.F) {
	k := key(f, elliptic.P256())
	good, _ := report.Sign(k, sample())
	f.Add(good.Payload)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x00, 0x10, 0x01})
	f.Fuzz(func(t *testing.T, payload []byte) {
		sig, err := report.SignPayload(k, payload)
		if err != nil {
			t.Fatal(err)
		}
		r, err := report.Verify(k.Public(), &agentv1.SignedReport{Payload: payload, Signature: sig})
		if err != nil {
			return
		}
		if r.GetDeviceId() == "" || r.GetSeq() == 0 || r.GetObservedAt() == nil {
			t.Fatalf("accepted a report that fails Check: %v", r)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	k := key(b, elliptic.P256())
	sr, _ := report.Sign(k, sample())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := report.Verify(k.Public(), sr); err != nil {
			b.Fatal(err)
		}
	}
}
