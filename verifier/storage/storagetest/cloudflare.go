package storagetest

import (
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/clearance/clearance/verifier/storage"
)

// cloudflareTests check what Cloudflare's device posture integration needs:
// devices found by serial number and hostname, and a batch of decisions,
// with their scores, in one commit.
var cloudflareTests = []test{
	{"DevicesBySerial", testDevicesBySerial},
	{"DevicesByHostname", testDevicesByHostname},
	{"DevicesByHostnameLookAlikes", testDevicesByHostnameLookAlikes},
	{"AppendDecisionsBatch", testAppendDecisions},
	{"AppendDecisionsAllOrNone", testAppendDecisionsAllOrNone},
	{"DecisionsSignInsOnly", testDecisionsSignInsOnly},
}

// as is s as the optional interface I, which the suite requires of it.
func as[I any](t *testing.T, s storage.Store) I {
	t.Helper()
	i, ok := s.(I)
	if !ok {
		t.Fatalf("%T does not implement %v", s, reflect.TypeFor[I]())
	}
	return i
}

func testDevicesBySerial(t *testing.T, s storage.Store) {
	createSecret(t, s, "fleet")
	e1 := newEnrollment(1, "fleet")
	e1.Device.SerialNumber = "c02x00001" // lower case as an agent may send it; matched in canonical form
	enroll(t, s, e1)
	enroll(t, s, newEnrollment(2, "fleet"))
	enroll(t, s, newEnrollment(3, "fleet"))
	revokeDevice(t, s, "dev-003")

	got, err := as[storage.DeviceFinder](t, s).DevicesBySerial(t.Context(), []string{"C02X00001", "C02X00003", "NOSUCH"})
	must(t, err)
	if ids := deviceIDs(got); !sameSet(ids, []string{"dev-001", "dev-003"}) {
		t.Fatalf("DevicesBySerial = %v, want dev-001 and dev-003 (revoked included)", ids)
	}
	for _, d := range got {
		if d.ID == "dev-003" && !d.Revoked() {
			t.Errorf("dev-003 came back unrevoked")
		}
	}
	if got, err := as[storage.DeviceFinder](t, s).DevicesBySerial(t.Context(), nil); err != nil || len(got) != 0 {
		t.Fatalf("DevicesBySerial(nil) = %v, %v; want none", got, err)
	}

	// More serials than one query binds.
	many := []string{"C02X00002"}
	for i := range 1200 {
		many = append(many, fmt.Sprintf("ABSENT%05d", i))
	}
	got, err = as[storage.DeviceFinder](t, s).DevicesBySerial(t.Context(), many)
	must(t, err)
	if ids := deviceIDs(got); !slices.Equal(ids, []string{"dev-002"}) {
		t.Fatalf("DevicesBySerial(1201 serials) = %v, want dev-002", ids)
	}
}

func testDevicesByHostname(t *testing.T, s storage.Store) {
	createSecret(t, s, "fleet")
	e1 := newEnrollment(1, "fleet")
	e1.Device.Hostname = "Anas-MacBook-Pro"
	enroll(t, s, e1)
	enroll(t, s, newEnrollment(2, "fleet"))
	got, err := as[storage.DeviceFinder](t, s).DevicesByHostname(t.Context(), []string{"anas-macbook-pro", "mac-9.example.com"})
	must(t, err)
	if ids := deviceIDs(got); !slices.Equal(ids, []string{"dev-001"}) {
		t.Fatalf("DevicesByHostname = %v, want dev-001", ids)
	}
	// A name no column can hold (a NUL, which PostgreSQL refuses, invalid
	// UTF-8) matches nothing and fails no lookup of the others: a Mac's
	// user chooses its hostname, and Cloudflare asks for many Macs at once.
	got, err = as[storage.DeviceFinder](t, s).DevicesByHostname(t.Context(), []string{"anas-macbook-pro\x00", "anas-macbook-pro", "\xff"})
	must(t, err)
	if ids := deviceIDs(got); !slices.Equal(ids, []string{"dev-001"}) {
		t.Fatalf("DevicesByHostname with unstorable names = %v, want dev-001", ids)
	}
	got, err = as[storage.DeviceFinder](t, s).DevicesBySerial(t.Context(), []string{"C02X\x00", "\xff"})
	if err != nil || len(got) != 0 {
		t.Fatalf("DevicesBySerial with unstorable serials = %v, %v; want none", deviceIDs(got), err)
	}
}

func testAppendDecisions(t *testing.T, s storage.Store) {
	var batch []storage.DecisionRecord
	for i := range 1000 {
		d := newDecision(fmt.Sprintf("user%d@example.com", i), fmt.Sprintf("dev-%03d", i), i%2 == 0, at(0))
		d.Source, d.Binding, d.CertSerial = storage.SourceCloudflare, "", ""
		d.RequestID = fmt.Sprintf("cf-device-%d", i)
		d.Score = i % 101
		batch = append(batch, d)
	}
	must(t, as[storage.DecisionBatcher](t, s).AppendDecisions(t.Context(), batch))
	must(t, as[storage.DecisionBatcher](t, s).AppendDecisions(t.Context(), nil))
	got := listDecisions(t, s, storage.DecisionFilter{Limit: storage.MaxDecisionLimit})
	if len(got) != len(batch) {
		t.Fatalf("listed %d decisions, want %d", len(got), len(batch))
	}
	slices.Reverse(got)
	for i, d := range got {
		want := batch[i]
		want.ID = d.ID
		if i > 0 && d.ID <= got[i-1].ID {
			t.Fatalf("ids not increasing in append order at %d", i)
		}
		if d.Score != want.Score || d.Source != storage.SourceCloudflare || d.RequestID != want.RequestID || d.DeviceID != want.DeviceID {
			t.Fatalf("decision %d = %+v, want %+v", i, d, want)
		}
	}
}

func testAppendDecisionsAllOrNone(t *testing.T, s storage.Store) {
	good := newDecision("ana@example.com", "dev-001", true, at(0))
	bad := good
	bad.Score = 101
	if err := as[storage.DecisionBatcher](t, s).AppendDecisions(t.Context(), []storage.DecisionRecord{good, bad}); err == nil {
		t.Fatal("a batch with a score of 101 was stored")
	}
	if got := listDecisions(t, s, storage.DecisionFilter{}); len(got) != 0 {
		t.Fatalf("a refused batch left %d decisions", len(got))
	}
	bad.Score = -1
	if _, err := s.AppendDecision(t.Context(), bad); err == nil {
		t.Fatal("a decision with a score of -1 was stored")
	}
}

func testDecisionsSignInsOnly(t *testing.T, s storage.Store) {
	signIn := newDecision("ana@example.com", "dev-001", true, at(0))
	retry := newDecision("ana@example.com", "dev-001", false, at(1))
	retry.Source = "sso_retry"
	cf := newDecision("ana@example.com", "dev-001", true, at(2))
	cf.Source, cf.Binding, cf.CertSerial, cf.Score = storage.SourceCloudflare, "", "", 90
	for _, d := range []storage.DecisionRecord{signIn, retry, cf} {
		if _, err := s.AppendDecision(t.Context(), d); err != nil {
			t.Fatal(err)
		}
	}
	got := listDecisions(t, s, storage.DecisionFilter{Username: "ana@example.com", SignIns: true})
	if len(got) != 2 || got[0].Source != "sso_retry" || got[1].Source != signIn.Source {
		t.Fatalf("sign-ins only: %+v", got)
	}
	if got := listDecisions(t, s, storage.DecisionFilter{Username: "ana@example.com"}); len(got) != 3 || got[0].Source != storage.SourceCloudflare {
		t.Fatalf("every decision: %+v", got)
	}
	if got := listDecisions(t, s, storage.DecisionFilter{Cloudflare: true}); len(got) != 1 || got[0].Source != storage.SourceCloudflare {
		t.Fatalf("Cloudflare's only: %+v", got)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
