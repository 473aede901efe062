package server_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/clearance/clearance/internal/protoagent"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// namedMac enrolls a Mac with this host name and serial number (its own
// when serial is empty) that reports once, passing or failing every
// policy, with these local accounts (the first at the console).
func namedMac(t *testing.T, h *harness, secret, host, serial string, st agentv1.PolicyStatus, accounts ...string) *protoagent.Agent {
	t.Helper()
	a, err := protoagent.New(h.addr, h.rootPEM, nextUUID())
	if err != nil {
		t.Fatal(err)
	}
	a.Facts.Hostname = host
	if serial != "" {
		a.Facts.SerialNumber = serial
	}
	if _, err := a.Enroll(h.ctx(), secret); err != nil {
		t.Fatal(err)
	}
	s := h.connect(a)
	defer s.Close()
	r := a.Report(s.PolicySet, 1, h.clock.Now(), nil, st)
	for i, name := range accounts {
		r.Accounts = append(r.Accounts, &agentv1.LocalAccount{Name: name, Console: i == 0})
	}
	if m, err := s.Exchange(protoagent.Sign(a.Key, r)); err != nil || m.GetAck().GetSeq() != 1 {
		t.Fatalf("report: %v %v", m, err)
	}
	return a
}

// TestListDevicesByName: ListDevices finds Macs by serial number, host
// name and the person who uses them, as an engineer with grpcurl asks:
// each alone, together, with the fleet-health filters, through every
// page; revoked Macs are found by name; a look-alike name finds nothing.
func TestListDevicesByName(t *testing.T) {
	t.Parallel()
	h := start(t)
	secret, other := h.secret(), h.secret()
	pass, fail := agentv1.PolicyStatus_POLICY_STATUS_PASS, agentv1.PolicyStatus_POLICY_STATUS_FAIL
	h.user(t, "u-alice", "alice@example.com")
	h.user(t, "u-bob", "bob@example.com")
	// Alice's Macs: the one she is logged in at, one assigned to her, a
	// lab Mac she signed in from, and an old one assigned and revoked.
	console := namedMac(t, h, secret, "MBP-Alice", "C02ALICE0001", pass, "alice")
	assigned := namedMac(t, h, other, "mbp-alice-2", "", fail)
	old := namedMac(t, h, secret, "mbp-alice-old", "C02ALICE0OLD", pass)
	bobs := namedMac(t, h, secret, "mbp-bob", "", fail, "bob")
	vm := namedMac(t, h, secret, "build-vm", "VMware-56 4d 1a", pass)
	var labs []*protoagent.Agent
	for i := range 7 {
		labs = append(labs, namedMac(t, h, secret, fmt.Sprintf("lab-%d", i), "", pass))
	}
	for _, mac := range []*protoagent.Agent{assigned, old} {
		if _, err := h.admin.AssignDevice(h.ctx(), &adminv1.AssignDeviceRequest{DeviceId: mac.DeviceID, User: "alice@example.com"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.admin.RevokeDevice(h.ctx(), &adminv1.RevokeDeviceRequest{DeviceId: old.DeviceID, Reason: "replaced"}); err != nil {
		t.Fatal(err)
	}
	h.signedIn(t, labs[3], "Alice@Example.com")
	// Carol is in no directory: her sign-ins alone say which Macs she uses.
	h.signedIn(t, bobs, "carol@example.com")

	// list follows the pages to the end, failing on a device listed twice.
	list := func(req *adminv1.ListDevicesRequest) ([]string, map[string]*adminv1.Device) {
		t.Helper()
		var ids []string
		got := map[string]*adminv1.Device{}
		for pages := 0; ; pages++ {
			if pages > 20 {
				t.Fatalf("ListDevices %v: more than 20 pages", req)
			}
			resp, err := h.admin.ListDevices(h.ctx(), req)
			if err != nil {
				t.Fatalf("ListDevices %v: %v", req, err)
			}
			for _, d := range resp.GetDevices() {
				if got[d.GetDeviceId()] != nil {
					t.Fatalf("ListDevices %v: %s listed twice", req, d.GetDeviceId())
				}
				got[d.GetDeviceId()] = d
				ids = append(ids, d.GetDeviceId())
			}
			if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
				break
			}
		}
		slices.Sort(ids)
		return ids, got
	}
	idsOf := func(macs ...*protoagent.Agent) []string {
		var ids []string
		for _, m := range macs {
			ids = append(ids, m.DeviceID)
		}
		slices.Sort(ids)
		return ids
	}
	alices := idsOf(console, assigned, old, labs[3])
	for _, tc := range []struct {
		name string
		req  *adminv1.ListDevicesRequest
		want []string
	}{
		{"serial, any case, spaces around", &adminv1.ListDevicesRequest{SerialNumber: "  c02alice0001 "}, idsOf(console)},
		{"serial, exact: not a prefix", &adminv1.ListDevicesRequest{SerialNumber: "C02ALICE000"}, nil},
		{"serial of the revoked Mac", &adminv1.ListDevicesRequest{SerialNumber: "C02ALICE0OLD"}, idsOf(old)},
		{"serial no Mac has", &adminv1.ListDevicesRequest{SerialNumber: "C02NOBODY000"}, nil},
		// No canonical form (a space): compared as stored.
		{"serial of a virtual machine", &adminv1.ListDevicesRequest{SerialNumber: "vmware-56 4D 1A"}, idsOf(vm)},
		{"host name", &adminv1.ListDevicesRequest{HostName: "mbp-alice"}, idsOf(console, assigned, old)},
		{"host name, other case, whole", &adminv1.ListDevicesRequest{HostName: " MBP-ALICE-2"}, idsOf(assigned)},
		{"host name with a Cyrillic а", &adminv1.ListDevicesRequest{HostName: "mbp-\u0430lice"}, nil},
		{"host name, every lab Mac", &adminv1.ListDevicesRequest{HostName: "lab-"}, idsOf(labs...)},
		{"user by username", &adminv1.ListDevicesRequest{User: "alice@example.com"}, alices},
		{"user by username, other case", &adminv1.ListDevicesRequest{User: "ALICE@example.COM "}, alices},
		{"user by id", &adminv1.ListDevicesRequest{User: "u-alice"}, alices},
		{"user by local account", &adminv1.ListDevicesRequest{User: "bob@example.com"}, idsOf(bobs)},
		{"user in no directory, by sign-ins", &adminv1.ListDevicesRequest{User: "carol@example.com"}, idsOf(bobs)},
		{"user unknown", &adminv1.ListDevicesRequest{User: "nobody@example.com"}, nil},
		{"user with a Cyrillic а", &adminv1.ListDevicesRequest{User: "\u0430lice@example.com"}, nil},
		// Together, and with the fleet-health filters (which leave
		// revoked Macs out unless include_revoked).
		{"user and host name", &adminv1.ListDevicesRequest{User: "alice@example.com", HostName: "MBP"}, idsOf(console, assigned, old)},
		{"user and serial", &adminv1.ListDevicesRequest{User: "alice@example.com", SerialNumber: "c02alice0001"}, idsOf(console)},
		{"user and another's serial", &adminv1.ListDevicesRequest{User: "bob@example.com", SerialNumber: "c02alice0001"}, nil},
		{"serial and another host name", &adminv1.ListDevicesRequest{SerialNumber: "C02ALICE0001", HostName: "mbp-bob"}, nil},
		{"user and failing", &adminv1.ListDevicesRequest{User: "alice@example.com", Failing: true}, idsOf(assigned)},
		{"user and secret", &adminv1.ListDevicesRequest{User: "alice@example.com", EnrollSecretId: enrollSecretID(t, h, assigned)}, idsOf(assigned)},
		{"host name and not passing filevault", &adminv1.ListDevicesRequest{HostName: "mbp-", PolicyId: "filevault"}, idsOf(assigned, bobs)},
		{"revoked serial, offline", &adminv1.ListDevicesRequest{SerialNumber: "C02ALICE0OLD", Offline: true}, nil},
		{"revoked serial, offline, include_revoked", &adminv1.ListDevicesRequest{SerialNumber: "C02ALICE0OLD", Offline: true, IncludeRevoked: true}, idsOf(old)},
	} {
		for _, size := range []int32{0, 1, 2} {
			req := proto.Clone(tc.req).(*adminv1.ListDevicesRequest)
			req.PageSize = size
			if got, _ := list(req); !slices.Equal(got, tc.want) {
				t.Errorf("%s, page_size %d: %v, want %v", tc.name, size, got, tc.want)
			}
		}
	}

	// A revoked Mac found by name says it is revoked.
	_, got := list(&adminv1.ListDevicesRequest{SerialNumber: "C02ALICE0OLD"})
	if d := got[old.DeviceID]; d.GetStatus() != adminv1.DeviceStatus_DEVICE_STATUS_REVOKED || d.GetState() != "revoked" {
		t.Errorf("the revoked Mac: status %v, state %q", d.GetStatus(), d.GetState())
	}

	// The host name walks the fleet: a page of two may hold fewer, and
	// still not be the last.
	short := false
	req := &adminv1.ListDevicesRequest{HostName: "mbp-", PageSize: 2}
	for {
		resp, err := h.admin.ListDevices(h.ctx(), req)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetDevices()) < 2 && resp.GetNextPageToken() != "" {
			short = true
		}
		if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	if !short {
		t.Errorf("host_name mbp- in pages of 2: no short page before the last")
	}
	// A serial number and a person name their Macs: one page holds them.
	for _, req := range []*adminv1.ListDevicesRequest{{SerialNumber: "C02ALICE0001", PageSize: 1}, {User: "alice@example.com", PageSize: 4}} {
		resp, err := h.admin.ListDevices(h.ctx(), req)
		if err != nil || resp.GetNextPageToken() != "" || len(resp.GetDevices()) != int(req.GetPageSize()) {
			t.Errorf("ListDevices %v: %d devices, next %q, %v; want one full, last page", req, len(resp.GetDevices()), resp.GetNextPageToken(), err)
		}
	}

	for _, tc := range []struct {
		req  *adminv1.ListDevicesRequest
		want string
	}{
		{&adminv1.ListDevicesRequest{SerialNumber: strings.Repeat("C", 257)}, "serial_number is longer than 256 bytes"},
		{&adminv1.ListDevicesRequest{HostName: "mbp\x00"}, "host_name holds a control character"},
		{&adminv1.ListDevicesRequest{User: "alice@example.com\n"}, "user holds a control character"},
		{&adminv1.ListDevicesRequest{User: strings.Repeat("a", 513)}, "user is longer than 512 bytes"},
		{&adminv1.ListDevicesRequest{HostName: "   "}, "host_name is only spaces"},
		{&adminv1.ListDevicesRequest{SerialNumber: "C02ALICE0001", IncludeRevoked: true}, "include_revoked keeps revoked devices in failing"},
	} {
		_, err := h.admin.ListDevices(h.ctx(), tc.req)
		if s := status.Convert(err); s.Code() != codes.InvalidArgument || !strings.Contains(s.Message(), tc.want) {
			t.Errorf("ListDevices %v: %v, want INVALID_ARGUMENT %q", tc.req, err, tc.want)
		}
	}
}

// enrollSecretID is the enroll secret mac enrolled with.
func enrollSecretID(t *testing.T, h *harness, mac *protoagent.Agent) string {
	t.Helper()
	resp, err := h.admin.GetDevice(h.ctx(), &adminv1.GetDeviceRequest{DeviceId: mac.DeviceID})
	if err != nil || resp.GetDevice().GetEnrollSecretId() == "" {
		t.Fatalf("GetDevice: %v %v", resp, err)
	}
	return resp.GetDevice().GetEnrollSecretId()
}
