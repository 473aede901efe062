-- Enrollment that a shared secret alone cannot complete: enroll secrets
-- with an expiry and a use limit, the secret each device's current key was
-- enrolled with, requests waiting for the security team's approval, and the
-- list of serial numbers the security team manages. Times are BIGINT unix
-- nanoseconds UTC, 0 meaning "not set", as in 00001.

-- +goose Up
ALTER TABLE enroll_secrets ADD COLUMN expires_at BIGINT NOT NULL DEFAULT 0;
-- 0: no limit.
ALTER TABLE enroll_secrets ADD COLUMN max_uses INTEGER NOT NULL DEFAULT 0 CHECK (max_uses >= 0);

-- Empty for devices enrolled before it was kept.
ALTER TABLE devices ADD COLUMN secret_id TEXT COLLATE "C" NOT NULL DEFAULT '';
-- Revoking a leaked secret lists the devices it enrolled.
CREATE INDEX devices_secret_id ON devices (secret_id, id);

-- One request per hardware UUID and candidate key: the agent's polls
-- refresh it. A rejected request stays (rejected_at <> 0) so that the same
-- key asking again is refused instead of waiting anew.
CREATE TABLE pending_enrollments (
    id              TEXT COLLATE "C" NOT NULL PRIMARY KEY CHECK (id <> ''),
    hardware_uuid   TEXT    NOT NULL CHECK (hardware_uuid <> ''),
    serial_number   TEXT    NOT NULL,
    model           TEXT    NOT NULL,
    os_name         TEXT    NOT NULL,
    os_version      TEXT    NOT NULL,
    hostname        TEXT    NOT NULL,
    platform        TEXT    NOT NULL,
    agent_version   TEXT    NOT NULL,
    public_key      BYTEA   NOT NULL,
    secret_id       TEXT    NOT NULL,
    device_id       TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    source          TEXT    NOT NULL,
    requested_at    BIGINT  NOT NULL,
    last_request_at BIGINT  NOT NULL,
    requests        INTEGER NOT NULL CHECK (requests >= 1),
    rejected_at     BIGINT  NOT NULL DEFAULT 0,
    UNIQUE (hardware_uuid, public_key)
);

CREATE INDEX pending_enrollments_rejected_at ON pending_enrollments (rejected_at, id);

-- serial_number is canonical (upper case, trimmed).
CREATE TABLE known_devices (
    serial_number TEXT COLLATE "C" NOT NULL PRIMARY KEY CHECK (serial_number <> ''),
    name          TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    imported_at   BIGINT  NOT NULL
);

-- +goose Down
DROP TABLE known_devices;
DROP TABLE pending_enrollments;
DROP INDEX devices_secret_id;
ALTER TABLE devices DROP COLUMN secret_id;
ALTER TABLE enroll_secrets DROP COLUMN max_uses;
ALTER TABLE enroll_secrets DROP COLUMN expires_at;
