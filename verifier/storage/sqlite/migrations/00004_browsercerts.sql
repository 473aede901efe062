-- Browser certificates (issued through SCEP) and one-time SCEP challenges.
-- Times are INTEGER unix nanoseconds UTC, 0 meaning "not set", as in 00001.

-- +goose Up
-- A browser certificate is a certs row of kind 'browser', so GetCert finds
-- it as it finds agent certificates; these columns are its own and keep
-- their defaults on agent certificates. revoke_after only moves earlier.
ALTER TABLE certs ADD COLUMN hardware_uuid  TEXT    NOT NULL DEFAULT '';
ALTER TABLE certs ADD COLUMN sha1           TEXT    NOT NULL DEFAULT '';
ALTER TABLE certs ADD COLUMN revoke_after   INTEGER NOT NULL DEFAULT 0;
ALTER TABLE certs ADD COLUMN revoked_reason TEXT    NOT NULL DEFAULT '';

-- A device's certificates of a kind by not_before: the browser certificate
-- list, the rate-limit count and the grace-period update. It leads with
-- device_id, so it replaces certs_device_id (foreign key checks included).
CREATE INDEX certs_device_id_kind_not_before ON certs (device_id, kind, not_before);
DROP INDEX certs_device_id;

-- hash is the challenge's SHA-256; the challenge itself is never stored.
-- A consumed challenge stays (used_at set) until it is swept after
-- expires_at, so a reuse is told apart from a challenge never issued.
CREATE TABLE scep_challenges (
    hash       BLOB    NOT NULL PRIMARY KEY CHECK (length(hash) = 32),
    expires_at INTEGER NOT NULL,
    used_at    INTEGER NOT NULL DEFAULT 0
) STRICT, WITHOUT ROWID;

CREATE INDEX scep_challenges_expires_at ON scep_challenges (expires_at);

-- +goose Down
DROP TABLE scep_challenges;
CREATE INDEX certs_device_id ON certs (device_id);
DROP INDEX certs_device_id_kind_not_before;
ALTER TABLE certs DROP COLUMN revoked_reason;
ALTER TABLE certs DROP COLUMN revoke_after;
ALTER TABLE certs DROP COLUMN sha1;
ALTER TABLE certs DROP COLUMN hardware_uuid;
