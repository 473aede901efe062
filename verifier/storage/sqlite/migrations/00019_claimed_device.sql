-- A refused proof of presence names a device it was not signed by: the
-- name is kept here, not in device_id, so that the named device's
-- decisions hold only sign-ins bound to it.

-- +goose Up
ALTER TABLE decisions ADD COLUMN claimed_device_id TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE decisions DROP COLUMN claimed_device_id;
