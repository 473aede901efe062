package main

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/clearance/clearance/verifier/admin"
	"github.com/clearance/clearance/verifier/grpcconn"
	"github.com/clearance/clearance/verifier/knownlist"
)

// TestImportBatchesFit: a list of the longest serials and names is sent in
// calls that each fit the message bound of a connection without a device
// certificate and hold at most admin.MaxImport devices, in order, every
// device once.
func TestImportBatchesFit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		what            string
		n               int
		serial, devName string
	}{
		{"longest values", 12000, strings.Repeat("S", knownlist.MaxSerialLen), strings.Repeat("é", knownlist.MaxNameLen/2)},
		{"short values", 12000, "C02XK0AAJG5H", ""},
	} {
		t.Run(tc.what, func(t *testing.T) {
			es := make([]knownlist.Entry, tc.n)
			for i := range es {
				es[i] = knownlist.Entry{Serial: tc.serial, Name: tc.devName}
			}
			total := 0
			for _, req := range importBatches(es, strings.Repeat("s", 200)) {
				if size := proto.Size(req); size > grpcconn.UnauthenticatedMaxMessage {
					t.Errorf("a call of %d bytes; the bound is %d", size, grpcconn.UnauthenticatedMaxMessage)
				}
				if len(req.Devices) > admin.MaxImport || len(req.Devices) == 0 {
					t.Errorf("a call of %d devices", len(req.Devices))
				}
				total += len(req.Devices)
			}
			if total != tc.n {
				t.Errorf("%d devices sent, want %d", total, tc.n)
			}
		})
	}
}
