-- People: SCIM bearer tokens, the users and groups Okta provisions, group
-- memberships, and which directory users the security team assigned to
-- which Mac. Times are BIGINT unix nanoseconds
-- UTC, 0 meaning "not set", as in 00001.

-- +goose Up
CREATE TABLE scim_tokens (
    id          TEXT COLLATE "C" NOT NULL PRIMARY KEY CHECK (id <> ''),
    description TEXT    NOT NULL,
    hash        BYTEA   NOT NULL,
    created_at  BIGINT  NOT NULL,
    revoked_at  BIGINT  NOT NULL DEFAULT 0
);

-- user_name_key is the user name folded to lower case: Okta's usernames
-- are unique regardless of case.
CREATE TABLE directory_users (
    id            TEXT COLLATE "C" NOT NULL PRIMARY KEY CHECK (id <> ''),
    user_name     TEXT    NOT NULL CHECK (user_name <> ''),
    user_name_key TEXT COLLATE "C" NOT NULL UNIQUE,
    external_id   TEXT    NOT NULL,
    display_name  TEXT    NOT NULL,
    email         TEXT    NOT NULL,
    active        BOOLEAN NOT NULL,
    resource      BYTEA   NOT NULL,
    version       BIGINT  NOT NULL CHECK (version >= 1),
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL
);

CREATE INDEX directory_users_external_id ON directory_users (external_id, id);

CREATE TABLE directory_groups (
    id               TEXT COLLATE "C" NOT NULL PRIMARY KEY CHECK (id <> ''),
    display_name     TEXT    NOT NULL CHECK (display_name <> ''),
    display_name_key TEXT COLLATE "C" NOT NULL UNIQUE,
    external_id      TEXT    NOT NULL,
    version          BIGINT  NOT NULL CHECK (version >= 1),
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL
);

CREATE TABLE group_members (
    group_id TEXT COLLATE "C" NOT NULL REFERENCES directory_groups (id) ON DELETE CASCADE,
    user_id  TEXT COLLATE "C" NOT NULL REFERENCES directory_users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);

CREATE INDEX group_members_user_id ON group_members (user_id, group_id);

CREATE TABLE device_users (
    device_id  TEXT COLLATE "C" NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES directory_users (id) ON DELETE CASCADE,
    source     TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    PRIMARY KEY (device_id, user_id)
);

CREATE INDEX device_users_user_id ON device_users (user_id, device_id);

-- +goose Down
DROP TABLE device_users;
DROP TABLE group_members;
DROP TABLE directory_groups;
DROP TABLE directory_users;
DROP TABLE scim_tokens;
