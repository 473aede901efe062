-- A reinstall the security team expects: until expires_at, the device's next
-- enrollment with a new key that proves nothing (a Mac wiped and set up
-- again) replaces its key without approval, once. Any change of the
-- device's key removes the row. Times are BIGINT unix nanoseconds UTC, as
-- in 00001.

-- +goose Up
CREATE TABLE reinstall_expected (
    device_id  TEXT COLLATE "C" NOT NULL PRIMARY KEY CHECK (device_id <> ''),
    expires_at BIGINT NOT NULL CHECK (expires_at <> 0),
    created_at BIGINT NOT NULL,
    created_by TEXT   NOT NULL
);

-- +goose Down
DROP TABLE reinstall_expected;
