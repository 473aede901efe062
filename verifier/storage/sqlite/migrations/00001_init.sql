-- Times are INTEGER unix nanoseconds UTC, 0 meaning "not set". Tables are
-- STRICT so a wrongly typed value is an error instead of a silent coercion.

-- +goose Up
CREATE TABLE enroll_secrets (
    id          TEXT    NOT NULL PRIMARY KEY,
    description TEXT    NOT NULL,
    hash        BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER NOT NULL DEFAULT 0,
    uses        INTEGER NOT NULL DEFAULT 0 CHECK (uses >= 0)
) STRICT;

CREATE TABLE devices (
    id             TEXT    NOT NULL PRIMARY KEY CHECK (id <> ''),
    -- Re-enrollment finds the device by hardware UUID, so it must be unique
    -- and never empty (an empty one would merge unrelated machines).
    hardware_uuid  TEXT    NOT NULL UNIQUE CHECK (hardware_uuid <> ''),
    serial_number  TEXT    NOT NULL,
    model          TEXT    NOT NULL,
    os_name        TEXT    NOT NULL,
    os_version     TEXT    NOT NULL,
    hostname       TEXT    NOT NULL,
    platform       TEXT    NOT NULL,
    agent_version  TEXT    NOT NULL,
    public_key     BLOB    NOT NULL,
    cert_serial    TEXT    NOT NULL,
    cert_not_after INTEGER NOT NULL,
    enrolled_at    INTEGER NOT NULL,
    enrollments    INTEGER NOT NULL CHECK (enrollments >= 1),
    last_seen      INTEGER NOT NULL DEFAULT 0,
    last_seq       INTEGER NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    last_report_at INTEGER NOT NULL DEFAULT 0,
    revoked_at     INTEGER NOT NULL DEFAULT 0,
    revoked_reason TEXT    NOT NULL DEFAULT ''
) STRICT;

CREATE TABLE certs (
    serial     TEXT    NOT NULL PRIMARY KEY,
    device_id  TEXT    NOT NULL REFERENCES devices (id),
    kind       TEXT    NOT NULL,
    not_before INTEGER NOT NULL,
    not_after  INTEGER NOT NULL,
    der        BLOB    NOT NULL
) STRICT;

CREATE INDEX certs_device_id ON certs (device_id);

-- enrollment is the device's Enrollments count when the report was stored.
-- Re-enrollment restarts seq at 1 while keeping history, so seq alone does
-- not order a device's reports (nor identify one): (enrollment, seq) does.
CREATE TABLE reports (
    device_id   TEXT    NOT NULL REFERENCES devices (id),
    enrollment  INTEGER NOT NULL,
    seq         INTEGER NOT NULL CHECK (seq > 0),
    observed_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    payload     BLOB    NOT NULL,
    signature   BLOB    NOT NULL,
    PRIMARY KEY (device_id, enrollment, seq)
) STRICT;

-- A consumed nonce stays (used = 1) until it expires, so a replay is told
-- apart from a nonce that was never issued.
CREATE TABLE nonces (
    nonce      BLOB    NOT NULL PRIMARY KEY,
    device_id  TEXT    NOT NULL REFERENCES devices (id),
    expires_at INTEGER NOT NULL,
    used       INTEGER NOT NULL DEFAULT 0 CHECK (used IN (0, 1)),
    used_at    INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX nonces_expires_at ON nonces (expires_at);

-- No foreign key on device_id: audit outlives and may precede devices.
CREATE TABLE audit (
    id        INTEGER NOT NULL PRIMARY KEY,
    at        INTEGER NOT NULL,
    actor     TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    device_id TEXT    NOT NULL,
    detail    TEXT    NOT NULL
) STRICT;

CREATE INDEX audit_at ON audit (at, id);
CREATE INDEX audit_device_id_at ON audit (device_id, at, id);

-- +goose Down
DROP TABLE audit;
DROP TABLE nonces;
DROP TABLE reports;
DROP TABLE certs;
DROP TABLE devices;
DROP TABLE enroll_secrets;
