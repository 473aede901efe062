-- Every key a device has held, so that a revoked Mac's earlier key (one it
-- rotated away from) cannot bring it back any more than its last one can.
-- Keys held before this table are known only as each device's current one.

-- +goose Up
CREATE TABLE device_keys (
    device_id  TEXT NOT NULL,
    public_key BLOB NOT NULL,
    PRIMARY KEY (device_id, public_key)
) WITHOUT ROWID;
INSERT INTO device_keys (device_id, public_key) SELECT id, public_key FROM devices;

-- +goose Down
DROP TABLE device_keys;
