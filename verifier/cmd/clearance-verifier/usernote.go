package main

import (
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/rollout"
)

// knownUser reports whether username is a user SCIM or the Okta sync
// provisioned, or has a decision on record: what the server's
// rollout.KnownUsername tells an exemption grant, read here through the
// admin API (GetUser, then one decision).
func (c *adminConn) knownUser(username string) (bool, error) {
	_, err := c.client.GetUser(c.ctx, &adminv1.GetUserRequest{User: username})
	switch status.Code(err) {
	case codes.OK:
		return true, nil
	case codes.NotFound, codes.FailedPrecondition:
		// Not provisioned, or no directory: the decision log may know them.
	default:
		return false, c.explain(err)
	}
	resp, err := call(c, c.client.ListDecisions, &adminv1.ListDecisionsRequest{Username: username, PageSize: 1})
	if err != nil {
		return false, err
	}
	return len(resp.GetDecisions()) > 0, nil
}

// noteUnknownUser says on stderr, when username is unknown (see
// knownUser), what exemption grant says of one, and what follows for the
// command's answer: a typo is otherwise answered quietly as for a
// stranger.
func (a *app) noteUnknownUser(c *adminConn, username, consequence string) error {
	username = strings.TrimSpace(username)
	known, err := c.knownUser(username)
	if err != nil || known {
		return err
	}
	fmt.Fprintf(a.stderr, "note: no user named %s is provisioned (SCIM or the Okta sync) or has signed in; check the spelling: %s\n",
		rollout.ShownUsername(username), consequence)
	return nil
}
