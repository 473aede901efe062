-- Times are BIGINT unix nanoseconds UTC, 0 meaning "not set": timestamptz
-- keeps only microseconds, and the storage contract promises nanoseconds.
-- Keys that are listed in order use COLLATE "C" so they sort by bytes, as
-- in SQLite, whatever the database's locale.

-- +goose Up
CREATE TABLE enroll_secrets (
    id          TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    description TEXT    NOT NULL,
    hash        BYTEA   NOT NULL,
    created_at  BIGINT  NOT NULL,
    revoked_at  BIGINT  NOT NULL DEFAULT 0,
    uses        INTEGER NOT NULL DEFAULT 0 CHECK (uses >= 0)
);

CREATE TABLE devices (
    id             TEXT COLLATE "C" NOT NULL PRIMARY KEY CHECK (id <> ''),
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
    public_key     BYTEA   NOT NULL,
    cert_serial    TEXT    NOT NULL,
    cert_not_after BIGINT  NOT NULL,
    enrolled_at    BIGINT  NOT NULL,
    enrollments    INTEGER NOT NULL CHECK (enrollments >= 1),
    last_seen      BIGINT  NOT NULL DEFAULT 0,
    last_seq       BIGINT  NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    last_report_at BIGINT  NOT NULL DEFAULT 0,
    revoked_at     BIGINT  NOT NULL DEFAULT 0,
    revoked_reason TEXT    NOT NULL DEFAULT ''
);

CREATE TABLE certs (
    serial     TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    device_id  TEXT COLLATE "C" NOT NULL REFERENCES devices (id),
    kind       TEXT   NOT NULL,
    not_before BIGINT NOT NULL,
    not_after  BIGINT NOT NULL,
    der        BYTEA  NOT NULL
);

CREATE INDEX certs_device_id ON certs (device_id);

-- enrollment is the device's Enrollments count when the report was stored.
-- Re-enrollment restarts seq at 1 while keeping history, so seq alone does
-- not order a device's reports (nor identify one): (enrollment, seq) does.
CREATE TABLE reports (
    device_id   TEXT COLLATE "C" NOT NULL REFERENCES devices (id),
    enrollment  INTEGER NOT NULL,
    seq         BIGINT  NOT NULL CHECK (seq > 0),
    observed_at BIGINT  NOT NULL,
    received_at BIGINT  NOT NULL,
    payload     BYTEA   NOT NULL,
    signature   BYTEA   NOT NULL,
    PRIMARY KEY (device_id, enrollment, seq)
);

-- A consumed nonce stays (used) until it expires, so a replay is told
-- apart from a nonce that was never issued.
CREATE TABLE nonces (
    nonce      BYTEA   NOT NULL PRIMARY KEY,
    device_id  TEXT COLLATE "C" NOT NULL REFERENCES devices (id),
    expires_at BIGINT  NOT NULL,
    used       BOOLEAN NOT NULL DEFAULT false,
    used_at    BIGINT  NOT NULL DEFAULT 0
);

CREATE INDEX nonces_expires_at ON nonces (expires_at);

-- No foreign key on device_id: audit outlives and may precede devices.
-- id orders events appended at the same time.
CREATE TABLE audit (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        BIGINT NOT NULL,
    actor     TEXT   NOT NULL,
    action    TEXT   NOT NULL,
    device_id TEXT COLLATE "C" NOT NULL,
    detail    TEXT   NOT NULL
);

CREATE INDEX audit_at ON audit (at, id);
CREATE INDEX audit_device_id_at ON audit (device_id, at, id);

-- +goose Down
DROP TABLE audit;
DROP TABLE nonces;
DROP TABLE reports;
DROP TABLE certs;
DROP TABLE devices;
DROP TABLE enroll_secrets;
