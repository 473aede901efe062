-- What the verifier reads from Okta's System Log: polling cursors that
-- survive restarts, and sign-in events matched to the decisions they
-- followed. Decisions gain the browser's address and User-Agent, which the
-- matching compares. Times are INTEGER unix nanoseconds UTC, as in 00001.

-- +goose Up
ALTER TABLE decisions ADD COLUMN client_ip TEXT NOT NULL DEFAULT '';
ALTER TABLE decisions ADD COLUMN user_agent TEXT NOT NULL DEFAULT '';

-- One row per cursor (e.g. "logs"): the System Log next link to poll.
CREATE TABLE okta_cursors (
    name       TEXT    NOT NULL PRIMARY KEY CHECK (name <> ''),
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

-- uuid is Okta's: an event read twice is stored once. decision_id is 0
-- when no decision matched (no foreign key: retention deletes decisions
-- and events on their own schedules).
CREATE TABLE okta_sign_ins (
    uuid        TEXT    NOT NULL PRIMARY KEY CHECK (uuid <> ''),
    published   INTEGER NOT NULL,
    event_type  TEXT    NOT NULL,
    username    TEXT    NOT NULL,
    client_ip   TEXT    NOT NULL,
    user_agent  TEXT    NOT NULL,
    os          TEXT    NOT NULL,
    outcome     TEXT    NOT NULL,
    decision_id INTEGER NOT NULL CHECK (decision_id >= 0),
    unmatched   INTEGER NOT NULL CHECK (unmatched IN (0, 1)),
    seen_at     INTEGER NOT NULL
) STRICT;

CREATE INDEX okta_sign_ins_published ON okta_sign_ins (published);
CREATE INDEX okta_sign_ins_decision ON okta_sign_ins (decision_id) WHERE decision_id <> 0;
CREATE INDEX okta_sign_ins_unmatched ON okta_sign_ins (published) WHERE unmatched;

-- +goose Down
DROP TABLE okta_sign_ins;
DROP TABLE okta_cursors;
ALTER TABLE decisions DROP COLUMN user_agent;
ALTER TABLE decisions DROP COLUMN client_ip;
