package admin

import (
	"context"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
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

// peoplePage reads a page size and an offset page token.
func peoplePage(size int32, token string) (limit, offset int, err error) {
	switch {
	case size < 0:
		return 0, 0, status.Error(codes.InvalidArgument, "page_size must not be negative")
	case size == 0:
		limit = 100
	default:
		limit = min(int(size), 500)
	}
	if token != "" {
		n, perr := strconv.Atoi(token)
		if perr != nil || n < 0 || n > 1<<30 {
			return 0, 0, status.Error(codes.InvalidArgument, "page_token is not one this server returned")
		}
		offset = n
	}
	return limit, offset, nil
}

func nextToken(offset, got, total int) string {
	if offset+got >= total || got == 0 {
		return ""
	}
	return strconv.Itoa(offset + got)
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
	limit, offset, err := peoplePage(req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	page, err := s.Store.ListUsers(ctx, storage.PeopleQuery{Name: req.GetUserName(), Offset: offset, Limit: limit})
	if err != nil {
		return nil, s.internal("listing users", err)
	}
	resp := &adminv1.ListUsersResponse{Total: uint32(page.Total), NextPageToken: nextToken(offset, len(page.Users), page.Total)}
	for _, u := range page.Users {
		resp.Users = append(resp.Users, userProto(u))
	}
	return resp, nil
}

// GetUser implements AdminService.GetUser.
func (s *Server) GetUser(ctx context.Context, req *adminv1.GetUserRequest) (*adminv1.GetUserResponse, error) {
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
	bound, err := s.Store.UserDevices(ctx, u.ID)
	if err != nil {
		return nil, s.internal("reading user's devices", err)
	}
	for _, b := range bound {
		d := &adminv1.UserDevice{DeviceId: b.DeviceID, Source: b.Source}
		if dev, err := s.Store.GetDevice(ctx, b.DeviceID); err == nil {
			d.Hostname = dev.Hostname
		}
		resp.Devices = append(resp.Devices, d)
	}
	last, err := s.Store.ListDecisions(ctx, storage.DecisionFilter{Username: u.UserName, SignIns: true, Limit: 1})
	if err != nil {
		return nil, s.internal("reading user's sign-ins", err)
	}
	if len(last) == 1 {
		resp.LastSignInAt, resp.LastSignInAllowed = ts(last[0].At), last[0].Allow
		resp.LastSignInReason, resp.LastSignInDeviceId = last[0].Reason, last[0].DeviceID
	}
	return resp, nil
}

// ListGroups implements AdminService.ListGroups.
func (s *Server) ListGroups(ctx context.Context, req *adminv1.ListGroupsRequest) (*adminv1.ListGroupsResponse, error) {
	limit, offset, err := peoplePage(req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	page, err := s.Store.ListGroups(ctx, storage.PeopleQuery{Offset: offset, Limit: limit})
	if err != nil {
		return nil, s.internal("listing groups", err)
	}
	resp := &adminv1.ListGroupsResponse{Total: uint32(page.Total), NextPageToken: nextToken(offset, len(page.Groups), page.Total)}
	for _, g := range page.Groups {
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
			Detail: "assigned to user " + u.ID + " (" + u.UserName + ")"})
	if errors.Is(err, storage.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "no device %q", req.GetDeviceId())
	}
	if err != nil {
		return nil, s.internal("assigning device", err)
	}
	return &adminv1.AssignDeviceResponse{User: userProto(u)}, nil
}

// UnassignDevice implements AdminService.UnassignDevice.
func (s *Server) UnassignDevice(ctx context.Context, req *adminv1.UnassignDeviceRequest) (*adminv1.UnassignDeviceResponse, error) {
	u, err := s.findUser(ctx, req.GetUser())
	if err != nil {
		return nil, err
	}
	now := s.now()
	err = s.Store.UnbindDevice(ctx, req.GetDeviceId(), u.ID, storage.AuditEvent{At: now, Actor: actor(ctx),
		Action: "device.unassign", DeviceID: req.GetDeviceId(), Detail: "unassigned from user " + u.ID + " (" + u.UserName + ")"})
	if errors.Is(err, storage.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "device %q is not assigned to %q", req.GetDeviceId(), u.UserName)
	}
	if err != nil {
		return nil, s.internal("unassigning device", err)
	}
	return &adminv1.UnassignDeviceResponse{}, nil
}
