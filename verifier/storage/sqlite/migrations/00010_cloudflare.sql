-- Cloudflare device posture: Cloudflare names devices by serial number (and
-- hostname), so both are looked up by their canonical spelling; and the
-- decision log keeps the score each Cloudflare evaluation answered.

-- +goose Up
-- The expressions are exactly those the lookups compare (sqlstore
-- devices_lookup.go), so the indexes serve them.
CREATE INDEX devices_serial_canonical ON devices (upper(trim(serial_number)));
CREATE INDEX devices_hostname_lower ON devices (lower(hostname));
-- 0 to 100 for source 'cloudflare'; 0 for every other decision.
ALTER TABLE decisions ADD COLUMN score INTEGER NOT NULL DEFAULT 0 CHECK (score BETWEEN 0 AND 100);

-- +goose Down
ALTER TABLE decisions DROP COLUMN score;
DROP INDEX devices_hostname_lower;
DROP INDEX devices_serial_canonical;
