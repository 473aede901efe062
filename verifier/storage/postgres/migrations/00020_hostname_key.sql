-- Cloudflare names a Mac by hostname when its serial number matches
-- nothing: hostnames compare as storage.HostnameKey folds them, A-Z to
-- a-z and every other code point as it is. hostname_key is that fold,
-- computed by the database for every row; lookups compare it with the key
-- Go computes from the name asked for.
--
-- The lookup compared lower(hostname) before: lower() follows the
-- database's LC_CTYPE, and on a UTF-8 one it maps every letter with a case,
-- so a look-alike (a Kelvin sign for a k) matched the name it imitates,
-- and a name with a non-ASCII capital matched here and not on SQLite.
-- translate() maps exactly A-Z to a-z, whatever the locale, and is
-- immutable, as a generated column must be.

-- +goose Up
ALTER TABLE devices ADD COLUMN hostname_key TEXT COLLATE "C" NOT NULL
    GENERATED ALWAYS AS (translate(hostname, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')) STORED;
DROP INDEX devices_hostname_lower;
CREATE INDEX devices_hostname_key ON devices (hostname_key);

-- +goose Down
DROP INDEX devices_hostname_key;
ALTER TABLE devices DROP COLUMN hostname_key;
CREATE INDEX devices_hostname_lower ON devices ((lower(hostname)));
