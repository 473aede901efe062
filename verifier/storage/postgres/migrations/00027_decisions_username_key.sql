-- Decisions listed by username in any case of A-Z, as sign-ins compare
-- usernames: the index is on the expression the query compares, in place
-- of the one on the username as written, so a sign-in writes no more.
-- translate(), not lower(): lower() follows the locale beyond A-Z.

-- +goose Up
CREATE INDEX decisions_username_key_id ON decisions
  (translate(username, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz'), id);
DROP INDEX decisions_username_id;

-- +goose Down
CREATE INDEX decisions_username_id ON decisions (username, id);
DROP INDEX decisions_username_key_id;
