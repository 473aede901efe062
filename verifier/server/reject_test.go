package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/clearance/clearance/internal/protoagent"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

const pass = agentv1.PolicyStatus_POLICY_STATUS_PASS

// TestRejections checks that each kind of bad input is refused with its own
// gRPC code and message and leaves every row of the database as it was.
func TestRejections(t *testing.T) {
	h := start(t)
	secret := h.secret()
	a := h.enrolled(secret)
	b := h.enrolled(secret)

	// A's first report is accepted, so seq 5 is the last accepted.
	st, err := a.Connect(h.ctx())
	if err != nil {
		t.Fatal(err)
	}
	ps := st.PolicySet
	m, err := st.Exchange(protoagent.Sign(a.Key, a.Report(ps, 5, h.clock.Now(), nil, pass)))
	if err != nil || m.GetAck().GetSeq() != 5 {
		t.Fatalf("first report: %v %v", m, err)
	}
	st.Close()

	// Nonces for the nonce cases: one consumed by an accepted report, one
	// issued to device B.
	ctx := context.Background()
	used, other := []byte("nonce-used-0001"), []byte("nonce-for-b-0001")
	if err := h.srv.Store.CreateNonce(ctx, a.DeviceID, used, h.clock.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Store.CreateNonce(ctx, b.DeviceID, other, h.clock.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	st, _ = a.Connect(h.ctx())
	if m, err := st.Exchange(protoagent.Sign(a.Key, a.Report(ps, 6, h.clock.Now(), used, pass))); err != nil || m.GetAck().GetSeq() != 6 {
		t.Fatalf("nonce report: %v %v", m, err)
	}
	st.Close()

	revokedSecret := h.secret()
	if _, err := h.admin.RevokeEnrollSecret(h.ctx(), &adminv1.RevokeEnrollSecretRequest{Id: strings.Split(revokedSecret, ".")[0]}); err != nil {
		t.Fatal(err)
	}

	newAgent := func() *protoagent.Agent {
		n, err := protoagent.New(h.addr, h.rootPEM, nextUUID())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	enrollWith := func(secret string, csr []byte, facts *agentv1.DeviceFacts) error {
		n := newAgent()
		if facts == nil {
			facts = n.Facts
		}
		_, err := n.EnrollRaw(h.ctx(), &agentv1.EnrollRequest{EnrollSecret: secret, Csr: csr, Facts: facts})
		return err
	}
	goodCSR := func() []byte {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		c, err := protoagent.CSR(k)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// report sends one report on a fresh stream and returns what ended it.
	report := func(dev *protoagent.Agent, sr *agentv1.SignedReport) error {
		st, err := dev.Connect(h.ctx())
		if err != nil {
			return err
		}
		defer st.Close()
		m, err := st.Exchange(sr)
		if err == nil {
			t.Fatalf("report accepted: %v", m)
		}
		return err
	}
	now := h.clock.Now

	cases := []struct {
		name string
		do   func() error
		code codes.Code
		msg  string
	}{
		{"wrong enroll secret", func() error {
			return enrollWith(strings.Split(secret, ".")[0]+".wrong", goodCSR(), nil)
		}, codes.Unauthenticated, "enroll secret is not valid"},
		{"unknown enroll secret", func() error {
			return enrollWith("0123456789abcdef.whatever", goodCSR(), nil)
		}, codes.Unauthenticated, "enroll secret is not valid"},
		{"revoked enroll secret", func() error {
			return enrollWith(revokedSecret, goodCSR(), nil)
		}, codes.Unauthenticated, "enroll secret has been revoked"},
		{"malformed CSR", func() error {
			return enrollWith(secret, []byte("not a certificate request"), nil)
		}, codes.InvalidArgument, "certificate request rejected"},
		{"RSA CSR", func() error {
			k, _ := rsa.GenerateKey(rand.Reader, 2048)
			c, _ := protoagent.CSR(k)
			return enrollWith(secret, c, nil)
		}, codes.InvalidArgument, "RSA"},
		{"weak-curve CSR", func() error {
			k, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
			c, _ := protoagent.CSR(k)
			return enrollWith(secret, c, nil)
		}, codes.InvalidArgument, "P-224"},
		{"CSR signature does not verify", func() error {
			c := goodCSR()
			c[len(c)-5] ^= 0xff
			return enrollWith(secret, c, nil)
		}, codes.InvalidArgument, "signature"},
		{"facts without hardware UUID", func() error {
			return enrollWith(secret, goodCSR(), &agentv1.DeviceFacts{HardwareUuid: "not-a-uuid"})
		}, codes.InvalidArgument, "hardware_uuid"},
		{"host name that steers the admin's terminal", func() error {
			return enrollWith(secret, goodCSR(), &agentv1.DeviceFacts{HardwareUuid: "0A1B2C3D-0000-4000-8000-0000000000ee",
				Hostname: "evil\u009b31m\u009d0;PWNED-TITLE\u009c\u202eTXEN\u202c\u001b[2J"})
		}, codes.InvalidArgument, "hostname has control character U+009B at byte 4"},
		{"connect without certificate", func() error {
			_, err := newAgent().Connect(h.ctx())
			return err
		}, codes.Unauthenticated, "device certificate is required"},
		{"report signed by another device's key", func() error {
			return report(a, protoagent.Sign(b.Key, a.Report(ps, 7, now(), nil, pass)))
		}, codes.PermissionDenied, "signature does not verify"},
		{"tampered payload", func() error {
			sr := protoagent.Sign(a.Key, a.Report(ps, 7, now(), nil, pass))
			sr.Payload[len(sr.Payload)-1] ^= 1
			return report(a, sr)
		}, codes.PermissionDenied, "signature does not verify"},
		{"report for another device", func() error {
			r := a.Report(ps, 7, now(), nil, pass)
			r.DeviceId = b.DeviceID
			return report(a, protoagent.Sign(a.Key, r))
		}, codes.PermissionDenied, "client certificate is for device"},
		{"replayed seq with other content", func() error {
			return report(a, protoagent.Sign(a.Key, a.Report(ps, 6, now(), nil, agentv1.PolicyStatus_POLICY_STATUS_FAIL)))
		}, codes.AlreadyExists, "not greater than the last accepted"},
		{"lower seq", func() error {
			return report(a, protoagent.Sign(a.Key, a.Report(ps, 2, now(), nil, pass)))
		}, codes.AlreadyExists, "not greater than the last accepted"},
		{"stale observed_at", func() error {
			return report(a, protoagent.Sign(a.Key, a.Report(ps, 7, now().Add(-10*time.Minute), nil, pass)))
		}, codes.InvalidArgument, "old; the limit is 5m0s"},
		{"future observed_at", func() error {
			return report(a, protoagent.Sign(a.Key, a.Report(ps, 7, now().Add(10*time.Minute), nil, pass)))
		}, codes.InvalidArgument, "in the future"},
		{"unknown nonce", func() error {
			return report(a, protoagent.Sign(a.Key, a.Report(ps, 7, now(), []byte("never-issued"), pass)))
		}, codes.FailedPrecondition, "never issued"},
		{"reused nonce", func() error {
			return report(a, protoagent.Sign(a.Key, a.Report(ps, 7, now(), used, pass)))
		}, codes.FailedPrecondition, "already used"},
		{"other device's nonce", func() error {
			return report(a, protoagent.Sign(a.Key, a.Report(ps, 7, now(), other, pass)))
		}, codes.FailedPrecondition, "not issued to device"},
		{"malformed report", func() error {
			return report(a, protoagent.SignPayload(a.Key, []byte{0xff, 0xff}))
		}, codes.InvalidArgument, "report malformed"},
		{"message over the size limit", func() error {
			return report(a, protoagent.SignPayload(a.Key, make([]byte, 600<<10)))
		}, codes.ResourceExhausted, "larger than max"},
		{"report before Hello", func() error {
			conn, err := a.Dial()
			if err != nil {
				return err
			}
			defer conn.Close()
			s, err := agentv1.NewAgentServiceClient(conn).Connect(h.ctx())
			if err != nil {
				return err
			}
			_ = s.Send(&agentv1.AgentMessage{Message: &agentv1.AgentMessage_Report{Report: &agentv1.SignedReport{}}})
			_, err = s.Recv()
			return err
		}, codes.InvalidArgument, "must be Hello, got SignedReport"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := h.dump()
			err := tc.do()
			checkStatus(t, err, tc.code, tc.msg)
			if after := h.dump(); after != before {
				t.Fatalf("database changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}

	// A revoked device can no longer connect, and that changes nothing more.
	t.Run("revoked device", func(t *testing.T) {
		if _, err := h.admin.RevokeDevice(h.ctx(), &adminv1.RevokeDeviceRequest{DeviceId: b.DeviceID, Reason: "lost"}); err != nil {
			t.Fatal(err)
		}
		before := h.dump()
		_, err := b.Connect(h.ctx())
		checkStatus(t, err, codes.PermissionDenied, "is revoked")
		// Its own key, the revoked one, never enrolls again (a new key
		// waits for approval: see TestReinstate).
		revokedCSR, err := protoagent.CSR(b.Key)
		if err != nil {
			t.Fatal(err)
		}
		err = enrollWith(secret, revokedCSR, b.Facts)
		checkStatus(t, err, codes.PermissionDenied, "a key it held cannot enroll again")
		if after := h.dump(); after != before {
			t.Fatalf("database changed")
		}
	})

	// Past its NotAfter the device certificate is refused by name.
	t.Run("expired certificate", func(t *testing.T) {
		h.clock.Add(31 * 24 * time.Hour)
		before := h.dump()
		_, err := a.Connect(h.ctx())
		checkStatus(t, err, codes.Unauthenticated, "device certificate expired")
		if after := h.dump(); after != before {
			t.Fatalf("database changed")
		}
	})
}

func checkStatus(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s %q", code, msg)
	}
	s := status.Convert(err)
	if s.Code() != code || !strings.Contains(s.Message(), msg) {
		t.Fatalf("got %s %q, want %s containing %q", s.Code(), s.Message(), code, msg)
	}
}
