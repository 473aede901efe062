package policy

import (
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

func TestProto(t *testing.T) {
	t.Parallel()
	set := mustParse(t, valid+`    description: Disk encryption.
    user_text: Keeps your files safe if this Mac is lost.
    platforms: [darwin]
    resolution: Turn it on.
    critical: true
    interval: 5m
  - id: screen-lock
    name: Screen lock
    query: SELECT 1
    required: false
`)
	want := &agentv1.PolicySet{Version: set.Version, Policies: []*agentv1.Policy{{
		Id: "filevault", Name: "FileVault is on", Description: "Disk encryption.",
		UserText:  "Keeps your files safe if this Mac is lost.",
		Query:     "SELECT 1 FROM disk_encryption WHERE filevault_status = 'on'",
		Platforms: []string{"darwin"}, Resolution: "Turn it on.",
		Required: true, Critical: true, Interval: durationpb.New(5 * time.Minute),
	}, {
		Id: "screen-lock", Name: "Screen lock", Query: "SELECT 1",
		Interval: durationpb.New(DefaultInterval),
	}}}
	if got := set.Proto(); !proto.Equal(got, want) {
		t.Errorf("got  %s\nwant %s", prototext.Format(got), prototext.Format(want))
	}
}
