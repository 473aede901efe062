-- People: SCIM bearer tokens, the users and groups Okta provisions, group
-- memberships, and which directory users the security team assigned to
-- which Mac. Times are INTEGER unix nanoseconds
-- UTC, 0 meaning "not set", as in 00001.

-- +goose Up
CREATE TABLE scim_tokens (
    id          TEXT    NOT NULL PRIMARY KEY CHECK (id <> ''),
    description TEXT    NOT NULL,
    hash        BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER NOT NULL DEFAULT 0
) STRICT;

-- user_name_key is the user name folded to lower case: Okta's usernames
-- are unique regardless of case.
CREATE TABLE directory_users (
    id            TEXT    NOT NULL PRIMARY KEY CHECK (id <> ''),
    user_name     TEXT    NOT NULL CHECK (user_name <> ''),
    user_name_key TEXT    NOT NULL UNIQUE,
    external_id   TEXT    NOT NULL,
    display_name  TEXT    NOT NULL,
    email         TEXT    NOT NULL,
    active        INTEGER NOT NULL CHECK (active IN (0, 1)),
    resource      BLOB    NOT NULL,
    version       INTEGER NOT NULL CHECK (version >= 1),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;

CREATE INDEX directory_users_external_id ON directory_users (external_id, id);

CREATE TABLE directory_groups (
    id               TEXT    NOT NULL PRIMARY KEY CHECK (id <> ''),
    display_name     TEXT    NOT NULL CHECK (display_name <> ''),
    display_name_key TEXT    NOT NULL UNIQUE,
    external_id      TEXT    NOT NULL,
    version          INTEGER NOT NULL CHECK (version >= 1),
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
) STRICT;

CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES directory_groups (id) ON DELETE CASCADE,
    user_id  TEXT NOT NULL REFERENCES directory_users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
) STRICT;

CREATE INDEX group_members_user_id ON group_members (user_id, group_id);

CREATE TABLE device_users (
    device_id  TEXT    NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    user_id    TEXT    NOT NULL REFERENCES directory_users (id) ON DELETE CASCADE,
    source     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (device_id, user_id)
) STRICT;

CREATE INDEX device_users_user_id ON device_users (user_id, device_id);

-- +goose Down
DROP TABLE device_users;
DROP TABLE group_members;
DROP TABLE directory_groups;
DROP TABLE directory_users;
DROP TABLE scim_tokens;
