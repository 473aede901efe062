package admin

import (
	"slices"
	"testing"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
)

// adminMethods are the calls only role admin may make: they change what
// the verifier stores, decides or asks of a Mac. With readMethods they
// name every AdminService call.
var adminMethods = map[string]bool{
	"RevokeDevice": true, "ReloadPolicies": true, "CreateEnrollSecret": true, "RevokeEnrollSecret": true,
	"RequestCheck": true, "CreateScepChallenge": true, "RevokeBrowserCertificate": true,
	"ApproveEnrollment": true, "RejectEnrollment": true, "ImportKnownDevices": true,
	"GrantExemption": true, "RevokeExemption": true, "AssignDevice": true, "UnassignDevice": true,
}

// A call added to the service must be placed deliberately: read tokens
// are refused every call readMethods does not name.
func TestEveryMethodHasARole(t *testing.T) {
	var all []string
	for _, m := range adminv1.AdminService_ServiceDesc.Methods {
		all = append(all, m.MethodName)
	}
	for _, s := range adminv1.AdminService_ServiceDesc.Streams {
		all = append(all, s.StreamName)
	}
	for _, m := range all {
		if readMethods[m] == adminMethods[m] {
			t.Errorf("%s: in readMethods %v, in adminMethods %v; it must be in exactly one", m, readMethods[m], adminMethods[m])
		}
	}
	for m := range readMethods {
		if !slices.Contains(all, m) {
			t.Errorf("readMethods names %s, which AdminService does not have", m)
		}
	}
	for m := range adminMethods {
		if !slices.Contains(all, m) {
			t.Errorf("adminMethods names %s, which AdminService does not have", m)
		}
	}
}

func TestCheckTokenName(t *testing.T) {
	for _, ok := range []string{"alice@example.com", "ci-bot", "a", "first.last+ops@example.co.uk", "X_Y"} {
		if err := CheckTokenName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	long := make([]byte, MaxTokenName+1)
	for i := range long {
		long[i] = 'a'
	}
	for _, bad := range []string{"", "alice smith", "аlice@example.com", "alice\u200b", "a\x00", "a\nb", "a:b", "a/b", "\xff", string(long), "ａlice"} {
		if err := CheckTokenName(bad); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

func TestCheckRole(t *testing.T) {
	for _, ok := range []string{"read", "admin"} {
		if err := CheckRole(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Read", "ADMIN", "owner", "read "} {
		if err := CheckRole(bad); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}
