-- Each report keeps the device key its signature was verified with, and a
-- one-row table takes the health check's write probe. Times are INTEGER
-- unix nanoseconds UTC, as in 00001.

-- +goose Up
-- Empty for reports stored before keys were kept.
ALTER TABLE reports ADD COLUMN device_key BLOB NOT NULL DEFAULT x'';

-- /healthz commits a write here: a store that can be read but not written
-- (a full disk) must not look healthy.
CREATE TABLE health_probe (
    id        INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    probed_at INTEGER NOT NULL
) STRICT;

-- +goose Down
DROP TABLE health_probe;
ALTER TABLE reports DROP COLUMN device_key;
