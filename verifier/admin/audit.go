package admin

import (
	"context"
	"encoding/base64"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/storage"
)

// ListAuditEvents implements AdminService.ListAuditEvents.
func (s *Server) ListAuditEvents(ctx context.Context, req *adminv1.ListAuditEventsRequest) (*adminv1.ListAuditEventsResponse, error) {
	f, size, err := auditFilter(req)
	if err != nil {
		return nil, err
	}
	// One extra row tells whether another page exists, except at the
	// backends' cap: there a full page is taken to mean there may be more.
	f.Limit = min(size+1, storage.MaxAuditLimit)
	done, err := s.auditTurn(ctx)
	if err != nil {
		return nil, err
	}
	events, err := s.Store.ListAudit(ctx, f)
	done()
	if err != nil {
		return nil, s.internal("listing audit events", err)
	}
	more := len(events) > size || (len(events) == size && f.Limit == size)
	if len(events) > size {
		events = events[:size]
	}
	resp := &adminv1.ListAuditEventsResponse{Events: make([]*adminv1.AuditEvent, 0, len(events))}
	for _, e := range events {
		// Detail is returned as stored: part of it is outside text (a SCIM
		// username, a reason an admin typed), and whoever shows it escapes it.
		pe := &adminv1.AuditEvent{
			Id: e.ID, At: ts(e.At), Actor: e.Actor, Action: e.Action, DeviceId: e.DeviceID, Detail: e.Detail,
			MoreSubjects: int32(e.MoreSubjects),
		}
		for _, sub := range e.Subjects {
			pe.Subjects = append(pe.Subjects, &adminv1.AuditSubject{UserId: sub.UserID, Username: sub.UserName})
		}
		resp.Events = append(resp.Events, pe)
	}
	if more && len(events) > 0 {
		last := events[len(events)-1]
		resp.NextPageToken = auditToken(last.At, last.ID)
	}
	return resp, nil
}

// auditFilter checks a ListAuditEvents request and turns it into the
// storage filter (without Limit) and the page size.
func auditFilter(req *adminv1.ListAuditEventsRequest) (storage.AuditFilter, int, error) {
	var f storage.AuditFilter
	for _, v := range []struct{ field, value string }{
		{"device_id", req.GetDeviceId()}, {"actor", req.GetActor()}, {"action", req.GetAction()}, {"user", req.GetUser()},
	} {
		if err := plainFilter(v.field, v.value); err != nil {
			return f, 0, err
		}
	}
	// Device ids are lowercase; the tables show them so, and a person may
	// type the start of one in capitals.
	f.DevicePrefix = strings.ToLower(req.GetDeviceId())
	f.Actor, f.Action = req.GetActor(), req.GetAction()
	// As given: ids compare exactly, and the store folds usernames.
	f.User = req.GetUser()

	var err error
	if f.Since, f.Until, err = window(req.GetSince(), req.GetUntil()); err != nil {
		return f, 0, err
	}
	size, err := pageSize(req.GetPageSize(), storage.DefaultAuditLimit, storage.MaxAuditLimit)
	if err != nil {
		return f, 0, err
	}

	if tok := req.GetPageToken(); tok != "" {
		at, id, ok := parseAuditToken(tok)
		if !ok {
			return f, 0, status.Error(codes.InvalidArgument, "page_token is not one this server returned")
		}
		f.BeforeAt, f.BeforeID = at, id
	}
	return f, size, nil
}

// plainFilter refuses a filter that could match nothing stored: longer
// than maxFilterLen (a person's name or id, "user": storage.MaxNameLen),
// or holding a control character (which no id, actor, action or username
// has, and which an error message must not echo).
func plainFilter(field, v string) error {
	check := bounded
	if field == "user" {
		check = boundedName
	}
	if err := check(field, v); err != nil {
		return err
	}
	if !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl) {
		return status.Errorf(codes.InvalidArgument, "%s holds a control character", field)
	}
	return nil
}

// An audit page token is the paging cursor (storage.AuditFilter's
// BeforeAt and BeforeID: the time, in unix nanoseconds, and the id of the
// last event returned) as base64url of "<nanoseconds>.<id>". Clients
// treat it as opaque.
func auditToken(at time.Time, id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(at.UnixNano(), 10) + "." + strconv.FormatInt(id, 10)))
}

// parseAuditToken accepts exactly what auditToken makes.
func parseAuditToken(tok string) (time.Time, int64, bool) {
	if len(tok) > 64 {
		return time.Time{}, 0, false
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return time.Time{}, 0, false
	}
	ns, idText, ok := strings.Cut(string(b), ".")
	if !ok {
		return time.Time{}, 0, false
	}
	n, err := strconv.ParseInt(ns, 10, 64)
	if err != nil || strconv.FormatInt(n, 10) != ns {
		return time.Time{}, 0, false
	}
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil || id <= 0 || strconv.FormatInt(id, 10) != idText {
		return time.Time{}, 0, false
	}
	return time.Unix(0, n).UTC(), id, true
}
