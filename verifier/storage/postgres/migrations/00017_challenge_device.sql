-- A sign-in sent to the agent because the browser's certificate named a
-- Mac whose agent is connected may be completed only by that Mac's proof:
-- device_id names it. Empty when any enrolled Mac's proof counts (nothing
-- named a Mac before the browser was sent).

-- +goose Up
ALTER TABLE sign_in_challenges ADD COLUMN device_id TEXT COLLATE "C" NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE sign_in_challenges DROP COLUMN device_id;
