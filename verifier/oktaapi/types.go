package oktaapi

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// PageSize is the page size the verifier asks for: 200 is Okta's maximum
// for users and group members, and keeps requests (and rate-limit use) low.
const PageSize = 200

// User is the part of an Okta user the verifier keeps.
type User struct {
	ID          string      `json:"id"`
	Status      string      `json:"status"` // ACTIVE, PROVISIONED, STAGED, SUSPENDED, DEPROVISIONED, ...
	Created     time.Time   `json:"created"`
	LastUpdated time.Time   `json:"lastUpdated"`
	Profile     UserProfile `json:"profile"`
}

// UserProfile is the profile fields the verifier reads.
type UserProfile struct {
	Login     string `json:"login"`
	Email     string `json:"email"`
	FirstName string `json:"firstName"`
	LastName  string `json:"lastName"`
}

// Group is an Okta group.
type Group struct {
	ID                    string       `json:"id"`
	Type                  string       `json:"type"` // OKTA_GROUP, APP_GROUP, BUILT_IN
	LastUpdated           time.Time    `json:"lastUpdated"`
	LastMembershipUpdated time.Time    `json:"lastMembershipUpdated"`
	Profile               GroupProfile `json:"profile"`
}

// GroupProfile is a group's name and description.
type GroupProfile struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// App is an app integration, only to tell whether apps can be read.
type App struct {
	ID    string `json:"id"`
	Label string `json:"label"`
}

// oktaTime formats t as Okta's filter expressions want it.
func oktaTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// UsersURL lists users. Without a search Okta leaves DEPROVISIONED users out;
// search, when set, is a search expression (which includes them).
func (c *Client) UsersURL(search string) string {
	q := url.Values{"limit": {strconv.Itoa(PageSize)}}
	if search != "" {
		q.Set("search", search)
	}
	return c.URL("/api/v1/users", q)
}

// UsersUpdatedSince is the search for users changed after t.
func UsersUpdatedSince(t time.Time) string {
	return `lastUpdated gt "` + oktaTime(t) + `"`
}

// GroupsURL lists groups; filter, when set, is a filter expression.
func (c *Client) GroupsURL(filter string) string {
	q := url.Values{"limit": {strconv.Itoa(PageSize)}}
	if filter != "" {
		q.Set("filter", filter)
	}
	return c.URL("/api/v1/groups", q)
}

// GroupsChangedSince is the filter for groups whose profile or members
// changed after t.
func GroupsChangedSince(t time.Time) string {
	return `lastUpdated gt "` + oktaTime(t) + `" or lastMembershipUpdated gt "` + oktaTime(t) + `"`
}

// MembersURL lists a group's members.
func (c *Client) MembersURL(groupID string) string {
	return c.URL("/api/v1/groups/"+url.PathEscape(groupID)+"/users", url.Values{"limit": {strconv.Itoa(PageSize)}})
}

// Users lists users (see UsersURL).
func (c *Client) Users(ctx context.Context, search string, fn func([]User) error) error {
	return List(ctx, c, c.UsersURL(search), fn)
}

// Groups lists groups (see GroupsURL).
func (c *Client) Groups(ctx context.Context, filter string, fn func([]Group) error) error {
	return List(ctx, c, c.GroupsURL(filter), fn)
}

// Members returns the IDs of a group's members: ErrNotStored, and no
// more is read, past storage.MaxGroupMembers (the most a group keeps).
func (c *Client) Members(ctx context.Context, groupID string) ([]string, error) {
	var ids []string
	err := List(ctx, c, c.MembersURL(groupID), func(us []User) error {
		for _, u := range us {
			if len(ids) == maxMembers {
				return fmt.Errorf("%w: group %s has more than %d members", ErrNotStored, groupID, maxMembers)
			}
			ids = append(ids, u.ID)
		}
		return nil
	})
	return ids, err
}
