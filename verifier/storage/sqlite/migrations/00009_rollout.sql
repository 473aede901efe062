-- Rollout: grace periods, one-time bypasses ("Resolve later") and
-- exemptions, and each decision's enforcement outcome. Times are INTEGER
-- unix nanoseconds UTC, as in 00001.

-- +goose Up
-- When a device first failed a policy that has a grace period; the row goes
-- when the policy passes again.
CREATE TABLE policy_grace (
    device_id  TEXT    NOT NULL CHECK (device_id <> ''),
    policy_id  TEXT    NOT NULL CHECK (policy_id <> ''),
    started_at INTEGER NOT NULL CHECK (started_at <> 0),
    PRIMARY KEY (device_id, policy_id)
) STRICT;

-- The last "Resolve later" of each policy on each device.
CREATE TABLE policy_bypasses (
    device_id TEXT    NOT NULL CHECK (device_id <> ''),
    policy_id TEXT    NOT NULL CHECK (policy_id <> ''),
    username  TEXT    NOT NULL,
    used_at   INTEGER NOT NULL CHECK (used_at <> 0),
    PRIMARY KEY (device_id, policy_id)
) STRICT;

-- Exemptions the security team grants: for a device or a user (exactly
-- one), for the comma-separated policy_ids or all ('').
CREATE TABLE exemptions (
    id         INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    device_id  TEXT    NOT NULL,
    username   TEXT    NOT NULL,
    policy_ids TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    created_by TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER NOT NULL DEFAULT 0,
    revoked_by TEXT    NOT NULL DEFAULT '',
    CHECK ((device_id = '') <> (username = ''))
) STRICT;

CREATE INDEX exemptions_device_id ON exemptions (device_id, expires_at);
CREATE INDEX exemptions_username ON exemptions (lower(username), expires_at);

-- The decision's enforcement outcome (enforce, monitor, warn, warned,
-- bypassed, exempt); empty when no policy was judged.
ALTER TABLE decisions ADD COLUMN mode TEXT NOT NULL DEFAULT '';
CREATE INDEX decisions_mode_id ON decisions (mode, id);

-- +goose Down
DROP INDEX decisions_mode_id;
ALTER TABLE decisions DROP COLUMN mode;
DROP TABLE exemptions;
DROP TABLE policy_bypasses;
DROP TABLE policy_grace;
