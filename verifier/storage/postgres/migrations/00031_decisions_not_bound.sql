-- A sign-in by someone the Mac is not bound to (--user-binding warn lets it
-- through): kept on the decision, so that the decision log answers "who
-- signs in from a Mac that is not theirs?". Few rows have it, so the index
-- holds only those.

-- +goose Up
ALTER TABLE decisions ADD COLUMN user_not_bound BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX decisions_user_not_bound ON decisions (id) WHERE user_not_bound;

-- +goose Down
DROP INDEX decisions_user_not_bound;
ALTER TABLE decisions DROP COLUMN user_not_bound;
