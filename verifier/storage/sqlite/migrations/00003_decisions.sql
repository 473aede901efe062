-- The decision log: one row per access decision, listed newest (highest
-- id) first and filtered by username, device or time.

-- +goose Up
-- AUTOINCREMENT: an id is never reused, even after retention deleted the
-- newest rows, so a paging cursor can never point at a different record.
-- results is the policy outcomes as a JSON array; latency_ns a duration in
-- nanoseconds.
CREATE TABLE decisions (
    id                 INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    at                 INTEGER NOT NULL,
    username           TEXT    NOT NULL,
    device_id          TEXT    NOT NULL,
    cert_serial        TEXT    NOT NULL,
    allow              INTEGER NOT NULL CHECK (allow IN (0, 1)),
    reason             TEXT    NOT NULL,
    results            TEXT    NOT NULL,
    policy_set_version TEXT    NOT NULL,
    report_seq         INTEGER NOT NULL CHECK (report_seq >= 0),
    live_check         TEXT    NOT NULL,
    latency_ns         INTEGER NOT NULL,
    source             TEXT    NOT NULL,
    request_id         TEXT    NOT NULL
) STRICT;

-- (x, id): the rows of one user or device, already newest first.
CREATE INDEX decisions_username_id ON decisions (username, id);
CREATE INDEX decisions_device_id_id ON decisions (device_id, id);
-- Time bounds and retention.
CREATE INDEX decisions_at ON decisions (at);

-- +goose Down
DROP TABLE decisions;
