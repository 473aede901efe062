package oktaapi

import (
	"net/url"
	"strconv"
	"strings"
	"time"
)

// LogPageSize is the System Log page size asked for (Okta's maximum is 1000).
const LogPageSize = 1000

// LogEvent is the part of a System Log event the verifier reads.
type LogEvent struct {
	UUID           string      `json:"uuid"`
	Published      time.Time   `json:"published"`
	EventType      string      `json:"eventType"`
	DisplayMessage string      `json:"displayMessage"`
	Severity       string      `json:"severity"`
	Actor          LogActor    `json:"actor"`
	Client         LogClient   `json:"client"`
	Outcome        LogOutcome  `json:"outcome"`
	Target         []LogTarget `json:"target"`
}

// LogActor is who acted: for a sign-in, the user (alternateId is the login).
type LogActor struct {
	ID          string `json:"id"`
	Type        string `json:"type"`
	AlternateID string `json:"alternateId"`
	DisplayName string `json:"displayName"`
}

// LogClient is where the request came from.
type LogClient struct {
	IPAddress string       `json:"ipAddress"`
	UserAgent LogUserAgent `json:"userAgent"`
}

// LogUserAgent is Okta's reading of the User-Agent.
type LogUserAgent struct {
	RawUserAgent string `json:"rawUserAgent"`
	OS           string `json:"os"`
	Browser      string `json:"browser"`
}

// LogOutcome is what happened: result SUCCESS, FAILURE, ALLOW, DENY, CHALLENGE, ...
type LogOutcome struct {
	Result string `json:"result"`
	Reason string `json:"reason"`
}

// LogTarget is one thing the event acted on (an app, a policy, a user).
type LogTarget struct {
	ID          string `json:"id"`
	Type        string `json:"type"`
	AlternateID string `json:"alternateId"`
	DisplayName string `json:"displayName"`
}

// Sign-in event types the correlator reads.
const (
	EventSessionStart = "user.session.start"
	EventSSO          = "user.authentication.sso"
	EventAuthViaIdP   = "user.authentication.auth_via_IDP"
	EventPolicySignOn = "policy.evaluate_sign_on"
)

// SignInEventTypes are the events the System Log poller asks for.
var SignInEventTypes = []string{EventSessionStart, EventSSO, EventAuthViaIdP, EventPolicySignOn}

// LogsURL is the first URL of a polling query for eventTypes published
// since t: Okta answers a query without `until` with a next link even on
// the last page, which is then polled for new events.
func (c *Client) LogsURL(since time.Time, eventTypes []string) string {
	q := url.Values{
		"since":     {oktaTime(since)},
		"limit":     {strconv.Itoa(LogPageSize)},
		"sortOrder": {"ASCENDING"},
	}
	if len(eventTypes) > 0 {
		terms := make([]string, len(eventTypes))
		for i, t := range eventTypes {
			terms[i] = `eventType eq "` + t + `"`
		}
		q.Set("filter", strings.Join(terms, " or "))
	}
	return c.URL("/api/v1/logs", q)
}
