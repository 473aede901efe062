-- An exemption for a user covers that user name in any ASCII case and
-- nothing else, as user names compare (storage.UserNameKey): A-Z fold to
-- a-z, every other code point stays as it is. username_key is that fold,
-- computed by the database from username for every row, whoever writes it;
-- lookups compare it with the key Go computes from the name asked for.
--
-- The lookups compared lower(username) before: lower() follows the
-- database's LC_CTYPE, and on a UTF-8 one it maps every letter with a case,
-- so a look-alike (a Kelvin sign for the k of kate, a dotted capital I)
-- matched the name it imitates. translate() maps exactly A-Z to a-z,
-- whatever the locale, and is immutable, as a generated column must be.

-- +goose Up
ALTER TABLE exemptions ADD COLUMN username_key TEXT COLLATE "C" NOT NULL
    GENERATED ALWAYS AS (translate(username, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')) STORED;
DROP INDEX exemptions_username;
CREATE INDEX exemptions_username_key ON exemptions (username_key, expires_at);

-- +goose Down
DROP INDEX exemptions_username_key;
ALTER TABLE exemptions DROP COLUMN username_key;
CREATE INDEX exemptions_username ON exemptions (lower(username), expires_at);
