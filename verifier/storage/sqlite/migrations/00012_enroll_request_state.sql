-- Enrollment requests record the device state they were made against, so
-- that approving one can never replace a key the request did not see; the
-- per-source limit counts requests by network; expiry and eviction find
-- the oldest requests by index; enrolled serial numbers are looked up in
-- their canonical form (ASCII upper case, letters and digits only).

-- +goose Up
-- Requests recorded before device_key was kept cannot say which key they
-- were made against: they are dropped, and the agents still asking record
-- them again on their next poll (every 30 seconds).
DELETE FROM pending_enrollments WHERE rejected_at = 0;
ALTER TABLE pending_enrollments ADD COLUMN device_key BLOB NOT NULL DEFAULT x'';
ALTER TABLE pending_enrollments ADD COLUMN source_net TEXT NOT NULL DEFAULT '';
CREATE INDEX pending_enrollments_source_net ON pending_enrollments (source_net, rejected_at, last_request_at);
CREATE INDEX pending_enrollments_last_request_at ON pending_enrollments (rejected_at, last_request_at);
CREATE INDEX pending_enrollments_hardware_uuid ON pending_enrollments (hardware_uuid, rejected_at, last_request_at);

UPDATE devices SET serial_number = upper(serial_number)
    WHERE serial_number <> '' AND length(serial_number) <= 64 AND serial_number NOT GLOB '*[^A-Za-z0-9]*';
CREATE INDEX devices_serial_number ON devices (serial_number);

-- +goose Down
DROP INDEX devices_serial_number;
DROP INDEX pending_enrollments_hardware_uuid;
DROP INDEX pending_enrollments_last_request_at;
DROP INDEX pending_enrollments_source_net;
ALTER TABLE pending_enrollments DROP COLUMN source_net;
ALTER TABLE pending_enrollments DROP COLUMN device_key;
