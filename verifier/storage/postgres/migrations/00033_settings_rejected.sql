-- What each device's latest report said of its agent's settings
-- (PostureReport.settings_rejection): when the agent rejected the settings
-- it was given and runs on others, and why; 0 and '' while it runs on them.
-- SaveReport sets both in the one update it makes to the device, so they
-- cost a report no statement of their own. Devices from before start with
-- none: their next report says. Times are BIGINT unix nanoseconds UTC, as
-- in 00001.

-- +goose Up
ALTER TABLE devices ADD COLUMN settings_rejected_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN settings_rejected TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE devices DROP COLUMN settings_rejected;
ALTER TABLE devices DROP COLUMN settings_rejected_at;
