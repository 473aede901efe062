-- Sign-ins bound by the agent's proof of presence, the keys replicas share,
-- and hardware UUIDs in one canonical form (upper case). Times are INTEGER
-- unix nanoseconds UTC, as in 00001.

-- +goose Up
-- A sign-in waiting for the Mac's proof: challenge_hash is the SHA-256 of
-- the challenge sent to the agent, browser_hash of the browser's sign-in
-- cookie; neither value itself is stored. used_at is 0 until a proof
-- completes it.
CREATE TABLE sign_in_challenges (
    challenge_hash BLOB    NOT NULL PRIMARY KEY CHECK (length(challenge_hash) = 32),
    browser_hash   BLOB    NOT NULL CHECK (length(browser_hash) = 32),
    username       TEXT    NOT NULL,
    request        BLOB    NOT NULL,
    relay_state    BLOB    NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    used_at        INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX sign_in_challenges_expires_at ON sign_in_challenges (expires_at);

-- Small secret keys every replica must share.
CREATE TABLE server_keys (
    name TEXT NOT NULL PRIMARY KEY CHECK (name <> ''),
    key  BLOB NOT NULL CHECK (length(key) >= 16)
) STRICT;

-- A held sign-in bound by the agent's proof is resumed only from the same
-- browser; empty for one bound by a certificate.
ALTER TABLE pending_sign_ins ADD COLUMN browser_hash BLOB NOT NULL DEFAULT x'';

-- How each decision's sign-in was bound to the Mac: agent, certificate, or
-- empty (nothing bound it).
ALTER TABLE decisions ADD COLUMN binding TEXT NOT NULL DEFAULT '';

-- Hardware UUIDs become upper case everywhere. A device whose UUID differs
-- only in letter case from another device's was enrolled around a check
-- that compared them exactly (a revoked Mac re-enrolling in lower case):
-- it keeps its spelling, is revoked, and can no longer be found by UUID.
UPDATE devices
   SET revoked_at = CAST(strftime('%s', 'now') AS INTEGER) * 1000000000,
       revoked_reason = 'hardware UUID differs only in letter case from another device''s (revoked when hardware UUIDs became upper case)'
 WHERE revoked_at = 0
   AND hardware_uuid <> upper(hardware_uuid)
   AND EXISTS (SELECT 1 FROM devices o WHERE upper(o.hardware_uuid) = upper(devices.hardware_uuid) AND o.id <> devices.id);
UPDATE devices SET hardware_uuid = upper(hardware_uuid)
 WHERE hardware_uuid <> upper(hardware_uuid)
   AND NOT EXISTS (SELECT 1 FROM devices o WHERE upper(o.hardware_uuid) = upper(devices.hardware_uuid) AND o.id <> devices.id);
UPDATE certs SET hardware_uuid = upper(hardware_uuid) WHERE hardware_uuid <> upper(hardware_uuid);

-- +goose Down
ALTER TABLE decisions DROP COLUMN binding;
ALTER TABLE pending_sign_ins DROP COLUMN browser_hash;
DROP TABLE server_keys;
DROP TABLE sign_in_challenges;
