-- Each report keeps the device key its signature was verified with, and a
-- one-row table takes the health check's write probe. Times are BIGINT
-- unix nanoseconds UTC, as in 00001.

-- +goose Up
-- Empty for reports stored before keys were kept.
ALTER TABLE reports ADD COLUMN device_key BYTEA NOT NULL DEFAULT ''::bytea;

-- /healthz commits a write here: a replica that can read but not write
-- (a full disk, a primary turned read-only) must not look healthy.
CREATE TABLE health_probe (
    id        INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    probed_at BIGINT  NOT NULL
);

-- +goose Down
DROP TABLE health_probe;
ALTER TABLE reports DROP COLUMN device_key;
