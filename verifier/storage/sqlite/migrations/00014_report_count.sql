-- Each device counts its stored reports, so that SaveReport knows without
-- walking them whether retention has any to delete: report_count is how
-- many it holds, over_keep how many of its oldest the latest report made
-- retention delete (SaveReport sets both in the one update it makes to the
-- device, and deletes over_keep reports after it). Devices from before
-- start with the count of what they hold.

-- +goose Up
ALTER TABLE devices ADD COLUMN report_count INTEGER NOT NULL DEFAULT 0 CHECK (report_count >= 0);
ALTER TABLE devices ADD COLUMN over_keep INTEGER NOT NULL DEFAULT 0 CHECK (over_keep >= 0);
UPDATE devices SET report_count = (SELECT count(*) FROM reports WHERE reports.device_id = devices.id);

-- +goose Down
ALTER TABLE devices DROP COLUMN over_keep;
ALTER TABLE devices DROP COLUMN report_count;
