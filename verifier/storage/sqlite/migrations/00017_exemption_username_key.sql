-- An exemption for a user covers that user name in any ASCII case and
-- nothing else, as user names compare (storage.UserNameKey): A-Z fold to
-- a-z, every other code point stays as it is. username_key is that fold,
-- computed by the database from username for every row, whoever writes it;
-- lookups compare it with the key Go computes from the name asked for.
-- SQLite's built-in lower() is exactly this fold: it changes the ASCII
-- letters only. The key replaces lower(username) in the index so that
-- both engines' queries are the same SQL. VIRTUAL, as ALTER TABLE can add
-- no other: the index holds the values.

-- +goose Up
ALTER TABLE exemptions ADD COLUMN username_key TEXT GENERATED ALWAYS AS (lower(username)) VIRTUAL;
DROP INDEX exemptions_username;
CREATE INDEX exemptions_username_key ON exemptions (username_key, expires_at);

-- +goose Down
DROP INDEX exemptions_username_key;
ALTER TABLE exemptions DROP COLUMN username_key;
CREATE INDEX exemptions_username ON exemptions (lower(username), expires_at);
