-- The decision log: one row per access decision, listed newest (highest
-- id) first and filtered by username, device or time.

-- +goose Up
-- An identity never hands out a value twice, so an id is never reused and
-- a paging cursor can never point at a different record. results is the
-- policy outcomes as a JSON array (text: kept as written); latency_ns a
-- duration in nanoseconds.
CREATE TABLE decisions (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at                 BIGINT  NOT NULL,
    username           TEXT COLLATE "C" NOT NULL,
    device_id          TEXT COLLATE "C" NOT NULL,
    cert_serial        TEXT    NOT NULL,
    allow              BOOLEAN NOT NULL,
    reason             TEXT    NOT NULL,
    results            TEXT    NOT NULL,
    policy_set_version TEXT    NOT NULL,
    report_seq         BIGINT  NOT NULL CHECK (report_seq >= 0),
    live_check         TEXT    NOT NULL,
    latency_ns         BIGINT  NOT NULL,
    source             TEXT    NOT NULL,
    request_id         TEXT    NOT NULL
);

-- (x, id): the rows of one user or device, already newest first.
CREATE INDEX decisions_username_id ON decisions (username, id);
CREATE INDEX decisions_device_id_id ON decisions (device_id, id);
-- Time bounds and retention.
CREATE INDEX decisions_at ON decisions (at);

-- +goose Down
DROP TABLE decisions;
