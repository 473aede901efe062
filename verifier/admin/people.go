package admin

import (
	"context"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/access"
	"github.com/clearance/clearance/verifier/storage"
)

// keyPage reads a listing paged by key (devices, enrollment requests): how
// many rows a page holds (50 unless asked, at most 500) and the key it
// starts after, from a page token of at most maxKey bytes.
func keyPage(pageSize int32, token string, maxKey int) (size int, after string, err error) {
	switch {
	case pageSize < 0:
		return 0, "", status.Error(codes.InvalidArgument, "page_size must not be negative")
	case pageSize == 0:
		size = 50
	default:
		size = min(int(pageSize), 500)
	}
	if token != "" {
		b, err := base64.RawURLEncoding.DecodeString(token)
		// Keys are ids and names: text, with no control character (which
		// PostgreSQL would refuse as an error, not find nothing for).
		if err != nil || len(b) == 0 || len(b) > maxKey || !utf8.Valid(b) || strings.ContainsFunc(string(b), unicode.IsControl) {
			return 0, "", status.Error(codes.InvalidArgument, "page_token is not one this server returned")
		}
		after = string(b)
	}
	return size, after, nil
}

// nextKey is the page token of the page after the one that ended at key.
func nextKey(key string) string { return base64.RawURLEncoding.EncodeToString([]byte(key)) }

// peoplePage reads a page of users or groups: its size (100 unless asked,
// at most 500) and the id it starts after. A page token of digits alone is
// an offset, which verifiers before keyset pages returned: it is refused
// by name, since the walk it belongs to must start again. (A key's token
// is never all digits: that would decode to a key starting with a byte
// above 0xCF, which no SCIM or Okta id has.)
func peoplePage(pageSize int32, token string) (size int, after string, err error) {
	if token != "" && strings.Trim(token, "0123456789") == "" {
		return 0, "", status.Errorf(codes.InvalidArgument, "page_token %q is an offset, which pages no longer use (they now start after the last row, so rows created meanwhile do not repeat): list again without a page_token", token)
	}
	size, after, err = keyPage(pageSize, token, storage.MaxNameLen)
	if err == nil && pageSize == 0 {
		size = 100
	}
	return size, after, err
}

// nextPeople is the token of the page after one that ended at lastID, or ""
// when the page was the last (it held fewer rows than asked for, or the
// one row more that was read is not there).
func nextPeople(got, size int, lastID string) string {
	if got <= size {
		return ""
	}
	return nextKey(lastID)
}

func userProto(u storage.User) *adminv1.User {
	return &adminv1.User{UserId: u.ID, UserName: u.UserName, DisplayName: u.DisplayName, Email: u.Email,
		Active: u.Active, ExternalId: u.ExternalID, CreatedAt: ts(u.CreatedAt), UpdatedAt: ts(u.UpdatedAt), Source: u.Source}
}

// findUser reads a user by id, else by username.
func (s *Server) findUser(ctx context.Context, ref string) (storage.User, error) {
	if ref == "" || len(ref) > storage.MaxNameLen {
		return storage.User{}, status.Error(codes.InvalidArgument, "user (an id or a username) is required")
	}
	u, err := s.Store.GetUser(ctx, ref)
	if errors.Is(err, storage.ErrNotFound) {
		u, err = s.Store.GetUserByName(ctx, ref)
	}
	if errors.Is(err, storage.ErrNotFound) {
		return storage.User{}, status.Errorf(codes.NotFound, "no user %q (users come from Okta, over SCIM or the API sync)", ref)
	}
	if err != nil {
		return storage.User{}, s.internal("reading user", err)
	}
	return u, nil
}

// ListUsers implements AdminService.ListUsers.
func (s *Server) ListUsers(ctx context.Context, req *adminv1.ListUsersRequest) (*adminv1.ListUsersResponse, error) {
	size, after, err := peoplePage(req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	q := storage.PeopleQuery{Name: req.GetUserName(), After: after, Limit: size + 1}
	if req.GetGroup() != "" {
		g, err := s.findGroup(ctx, req.GetGroup())
		if err != nil {
			return nil, err
		}
		q.Group = g.ID
	}
	// One row more than asked for tells whether another page exists.
	page, err := s.Store.ListUsers(ctx, q)
	if err != nil {
		return nil, s.internal("listing users", err)
	}
	users := page.Users[:min(len(page.Users), size)]
	resp := &adminv1.ListUsersResponse{Total: uint32(page.Total)}
	if len(users) > 0 {
		resp.NextPageToken = nextPeople(len(page.Users), size, users[len(users)-1].ID)
	}
	var fleet []fleetAccounts
	if req.GetDetails() && len(users) > 0 {
		done, err := s.fleetTurn(ctx)
		if err != nil {
			return nil, err
		}
		defer done()
		if fleet, err = s.fleetAccounts(ctx); err != nil {
			return nil, err
		}
	}
	for _, u := range users {
		pu := userProto(u)
		if req.GetDetails() {
			ds, _, err := s.userDevices(ctx, u, fleet)
			if err != nil {
				return nil, err
			}
			pu.Devices = uint32(len(ds))
			groups, err := s.Store.UserGroups(ctx, u.ID)
			if err != nil {
				return nil, s.internal("reading user's groups", err)
			}
			for _, g := range groups {
				pu.Groups = append(pu.Groups, g.DisplayName)
			}
		}
		resp.Users = append(resp.Users, pu)
	}
	return resp, nil
}

// findGroup reads a group by id, else by display name.
func (s *Server) findGroup(ctx context.Context, ref string) (storage.Group, error) {
	if len(ref) > storage.MaxNameLen || strings.ContainsFunc(ref, unicode.IsControl) {
		return storage.Group{}, status.Errorf(codes.InvalidArgument, "group is longer than %d bytes or holds a control character", storage.MaxNameLen)
	}
	g, err := s.Store.GetGroup(ctx, ref)
	if errors.Is(err, storage.ErrNotFound) {
		var page storage.GroupPage
		page, err = s.Store.ListGroups(ctx, storage.PeopleQuery{Name: ref, Limit: 1, WithoutMembers: true})
		switch {
		case err == nil && len(page.Groups) == 1:
			g = page.Groups[0]
		case err == nil:
			return storage.Group{}, status.Errorf(codes.NotFound, "no group %q (groups come from Okta, over SCIM Group Push or the API sync; see ListGroups)", ref)
		}
	}
	if err != nil {
		return storage.Group{}, s.internal("reading group", err)
	}
	return g, nil
}

// GetUser implements AdminService.GetUser.
func (s *Server) GetUser(ctx context.Context, req *adminv1.GetUserRequest) (*adminv1.GetUserResponse, error) {
	done, err := s.fleetTurn(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	u, err := s.findUser(ctx, req.GetUser())
	if err != nil {
		return nil, err
	}
	resp := &adminv1.GetUserResponse{User: userProto(u)}
	groups, err := s.Store.UserGroups(ctx, u.ID)
	if err != nil {
		return nil, s.internal("reading user's groups", err)
	}
	for _, g := range groups {
		resp.Groups = append(resp.Groups, g.DisplayName)
	}
	fleet, err := s.fleetAccounts(ctx)
	if err != nil {
		return nil, err
	}
	devices, last, err := s.userDevices(ctx, u, fleet)
	if err != nil {
		return nil, err
	}
	for _, d := range devices {
		if d.Hostname == "" {
			if dev, err := s.Store.GetDevice(ctx, d.DeviceId); err == nil {
				d.Hostname = dev.Hostname
			}
		}
	}
	resp.Devices = devices
	if last != nil {
		resp.LastSignInAt, resp.LastSignInAllowed = ts(last.At), last.Allow
		resp.LastSignInReason, resp.LastSignInDeviceId = last.Reason, last.DeviceID
	}
	return resp, nil
}

// How a user is tied to a Mac (UserDevice.sources), in the order listed.
const (
	boundAdmin        = "admin"
	boundLocalAccount = "local_account"
	boundSignIn       = "sign_in"
	// userSignIns is how many of a user's latest Okta sign-ins are read
	// for the Macs they came from.
	userSignIns = 1000
)

// AccountBinder names the local account in a report that binds a user to
// its Mac, by the rule sign-in binds by; *access.Gate implements it.
type AccountBinder interface {
	BoundAccount(r *agentv1.PostureReport, u storage.User) string
}

var _ AccountBinder = (*access.Gate)(nil)

// fleetAccounts is an enrolled Mac's local accounts as its latest report
// lists them.
type fleetAccounts struct {
	deviceID, hostname string
	report             *agentv1.PostureReport // only the device id and the accounts
}

// maxFleetScans is how many calls that read the whole fleet for people
// (GetUser, ListUsers with details, ListDevices by person) or page
// through the audit log run at once, together.
const maxFleetScans = 2

// fleetTurn waits for one of the maxFleetScans turns, within ctx, and
// returns what gives it back. The work it guards grows with the fleet and
// the page: however many callers ask at once (any read token may), the
// database serves maxFleetScans of them.
func (s *Server) fleetTurn(ctx context.Context) (func(), error) {
	s.fleetScansOnce.Do(func() { s.fleetScans = make(chan struct{}, maxFleetScans) })
	return turn(ctx, s.fleetScans)
}

// auditTurn waits for a turn to list the audit log: one of the same
// maxFleetScans turns the fleet scans take, so that however many callers
// page through the log and read the fleet at once (any read token may,
// and a SIEM polls the log), those calls together hold at most
// maxFleetScans of the database's read connections (four at least), and
// sign-ins and health checks find the others free.
func (s *Server) auditTurn(ctx context.Context) (func(), error) {
	return s.fleetTurn(ctx)
}

// turn takes a place in turns within ctx and returns what gives it back.
func turn(ctx context.Context, turns chan struct{}) (func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	select {
	case turns <- struct{}{}:
		return func() { <-turns }, nil
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// fleetAccounts reads the local accounts of every unrevoked Mac that has
// reported, for the binding rule to match people to (no index maps an
// account to its Mac). nil when no binding rule is configured.
func (s *Server) fleetAccounts(ctx context.Context) ([]fleetAccounts, error) {
	if _, ok := s.Access.(AccountBinder); !ok {
		return nil, nil
	}
	var out []fleetAccounts
	after := ""
	for {
		devs, err := s.Store.ListDevices(ctx, after, statePage)
		if err != nil {
			return nil, s.internal("listing devices", err)
		}
		for _, d := range devs {
			if d.Revoked() || d.LastSeq == 0 {
				continue
			}
			latest, err := s.latest(ctx, d.ID)
			if err != nil {
				return nil, err
			}
			if r := latest.GetReport(); len(r.GetAccounts()) > 0 {
				out = append(out, fleetAccounts{d.ID, d.Hostname, &agentv1.PostureReport{DeviceId: r.GetDeviceId(), Accounts: r.GetAccounts()}})
			}
		}
		if len(devs) < statePage {
			return out, nil
		}
		after = devs[len(devs)-1].ID
	}
}

// userDevices are the Macs u uses, by device id, each with how: assigned,
// bound by a local account in fleet (as sign-in binds), signed in from
// among their latest userSignIns Okta sign-ins. last is the latest of
// those sign-ins, nil if none. A u with no ID is a username no user has:
// only its sign-ins tie it to Macs. Hostnames are those fleet gives, else
// empty: GetUser fills them in, ListUsers counts and needs none.
func (s *Server) userDevices(ctx context.Context, u storage.User, fleet []fleetAccounts) (devices []*adminv1.UserDevice, last *storage.DecisionRecord, err error) {
	byID := map[string]*adminv1.UserDevice{}
	tie := func(deviceID, hostname, how string) *adminv1.UserDevice {
		d := byID[deviceID]
		if d == nil {
			d = &adminv1.UserDevice{DeviceId: deviceID, Hostname: hostname, Source: how}
			byID[deviceID] = d
			devices = append(devices, d)
		}
		if !slices.Contains(d.Sources, how) {
			d.Sources = append(d.Sources, how)
		}
		return d
	}
	if u.ID != "" {
		assigned, err := s.Store.UserDevices(ctx, u.ID)
		if err != nil {
			return nil, nil, s.internal("reading user's devices", err)
		}
		for _, b := range assigned {
			tie(b.DeviceID, "", boundAdmin)
		}
	}
	if binder, ok := s.Access.(AccountBinder); ok {
		for _, f := range fleet {
			if name := binder.BoundAccount(f.report, u); name != "" {
				tie(f.deviceID, f.hostname, boundLocalAccount).LocalAccount = name
			}
		}
	}
	signIns, err := s.Store.ListDecisions(ctx, storage.DecisionFilter{Username: u.UserName, SignIns: true, Limit: userSignIns})
	if err != nil {
		return nil, nil, s.internal("reading user's sign-ins", err)
	}
	for _, r := range signIns {
		if r.DeviceID != "" {
			tie(r.DeviceID, "", boundSignIn)
		}
	}
	if len(signIns) > 0 {
		last = &signIns[0]
	}
	slices.SortFunc(devices, func(a, b *adminv1.UserDevice) int { return strings.Compare(a.DeviceId, b.DeviceId) })
	return devices, last, nil
}

// macsOf is the ids of the Macs the person ref names (a user id or
// username) uses, sorted: for a provisioned user, those userDevices
// lists, as GetUser does; for a name no user has, those its latest
// userSignIns sign-ins came from, which the decision log knows with no
// directory at all. A name neither knows has none; that is no error.
func (s *Server) macsOf(ctx context.Context, ref string) ([]string, error) {
	u, err := s.findUser(ctx, ref)
	var fleet []fleetAccounts
	switch status.Code(err) {
	case codes.OK:
		done, err := s.fleetTurn(ctx)
		if err != nil {
			return nil, err
		}
		defer done()
		if fleet, err = s.fleetAccounts(ctx); err != nil {
			return nil, err
		}
	case codes.NotFound:
		u = storage.User{UserName: ref}
	default:
		return nil, err
	}
	devices, _, err := s.userDevices(ctx, u, fleet)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(devices))
	for i, d := range devices {
		ids[i] = d.DeviceId
	}
	return ids, nil
}

// ListGroups implements AdminService.ListGroups.
func (s *Server) ListGroups(ctx context.Context, req *adminv1.ListGroupsRequest) (*adminv1.ListGroupsResponse, error) {
	size, after, err := peoplePage(req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	page, err := s.Store.ListGroups(ctx, storage.PeopleQuery{After: after, Limit: size + 1})
	if err != nil {
		return nil, s.internal("listing groups", err)
	}
	groups := page.Groups[:min(len(page.Groups), size)]
	resp := &adminv1.ListGroupsResponse{Total: uint32(page.Total)}
	if len(groups) > 0 {
		resp.NextPageToken = nextPeople(len(page.Groups), size, groups[len(groups)-1].ID)
	}
	for _, g := range groups {
		resp.Groups = append(resp.Groups, &adminv1.Group{GroupId: g.ID, DisplayName: g.DisplayName, Members: uint32(len(g.Members)), Source: g.Source})
	}
	return resp, nil
}

// AssignDevice implements AdminService.AssignDevice.
func (s *Server) AssignDevice(ctx context.Context, req *adminv1.AssignDeviceRequest) (*adminv1.AssignDeviceResponse, error) {
	u, err := s.findUser(ctx, req.GetUser())
	if err != nil {
		return nil, err
	}
	now := s.now()
	err = s.Store.BindDevice(ctx, storage.DeviceUser{DeviceID: req.GetDeviceId(), UserID: u.ID, Source: "admin", CreatedAt: now},
		storage.AuditEvent{At: now, Actor: actor(ctx), Action: "device.assign", DeviceID: req.GetDeviceId(),
			Detail: "assigned to user " + u.ID + " (" + u.UserName + ")", Subjects: subjectOf(u)})
	if errors.Is(err, storage.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "no device %q", req.GetDeviceId())
	}
	if err != nil {
		return nil, s.internal("assigning device", err)
	}
	return &adminv1.AssignDeviceResponse{User: userProto(u)}, nil
}

// subjectOf names u as the person an audit event is about.
func subjectOf(u storage.User) []storage.AuditSubject {
	return []storage.AuditSubject{{UserID: u.ID, UserName: u.UserName}}
}

// UnassignDevice implements AdminService.UnassignDevice.
func (s *Server) UnassignDevice(ctx context.Context, req *adminv1.UnassignDeviceRequest) (*adminv1.UnassignDeviceResponse, error) {
	u, err := s.findUser(ctx, req.GetUser())
	if err != nil {
		return nil, err
	}
	now := s.now()
	err = s.Store.UnbindDevice(ctx, req.GetDeviceId(), u.ID, storage.AuditEvent{At: now, Actor: actor(ctx),
		Action: "device.unassign", DeviceID: req.GetDeviceId(), Detail: "unassigned from user " + u.ID + " (" + u.UserName + ")",
		Subjects: subjectOf(u)})
	if errors.Is(err, storage.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "device %q is not assigned to %q", req.GetDeviceId(), u.UserName)
	}
	if err != nil {
		return nil, s.internal("unassigning device", err)
	}
	return &adminv1.UnassignDeviceResponse{}, nil
}
