-- Cloudflare names a Mac by hostname when its serial number matches
-- nothing: hostnames compare as storage.HostnameKey folds them, A-Z to
-- a-z and every other code point as it is. hostname_key is that fold,
-- computed by the database for every row; lookups compare it with the key
-- Go computes from the name asked for. SQLite's built-in lower() is
-- exactly this fold, so the lookups find what they found before; the key
-- replaces lower(hostname) in the index so that both engines' queries are
-- the same SQL. VIRTUAL, as ALTER TABLE can add no other: the index holds
-- the values.

-- +goose Up
ALTER TABLE devices ADD COLUMN hostname_key TEXT GENERATED ALWAYS AS (lower(hostname)) VIRTUAL;
DROP INDEX devices_hostname_lower;
CREATE INDEX devices_hostname_key ON devices (hostname_key);

-- +goose Down
DROP INDEX devices_hostname_key;
ALTER TABLE devices DROP COLUMN hostname_key;
CREATE INDEX devices_hostname_lower ON devices (lower(hostname));
