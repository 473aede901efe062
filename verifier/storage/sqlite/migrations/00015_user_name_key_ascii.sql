-- A user name's key (user_name_key: what makes user names unique and finds
-- a user by name) now folds ASCII letters only, A-Z to a-z, and keeps every
-- other code point as it is (storage.UserNameKey). Keys stored before were
-- folded over the whole of Unicode (Go's strings.ToLower), so a name that
-- holds a non-ASCII letter with a lower case (Ä, İ, a Kelvin sign, a
-- fullwidth Ｋ) has a key that is no longer its own: each key is computed
-- again from user_name. SQLite's built-in lower() is exactly this fold: it
-- changes the ASCII letters only.
--
-- No two users can come to share a key: two names whose ASCII-folded keys
-- are equal differ only in the case of ASCII letters, so their
-- Unicode-folded keys were equal too, and the UNIQUE key kept the second
-- one out. The new keys only tell apart names the old ones merged (kate
-- and a Kelvin-sign "Kate" are two users now), never merge names that
-- were apart, so every stored user is found exactly once afterwards.
--
-- UNIQUE is checked row by row as the update goes, so the keys that change
-- first become 'A:' || id (no two rows share an id, and no key holds an
-- upper-case A) and then their new value.
--
-- Groups keep their Unicode-folded display_name_key (storage.GroupNameKey).

-- +goose Up
UPDATE directory_users SET user_name_key = 'A:' || id WHERE user_name_key <> lower(user_name);
UPDATE directory_users SET user_name_key = lower(user_name) WHERE user_name_key <> lower(user_name);

-- +goose Down
-- Nothing: SQL cannot compute Go's Unicode fold, and users apart under the
-- new keys may share an old one. The keys stay ASCII-folded, which an
-- older verifier reads correctly for every name with no upper-case
-- non-ASCII letter.
