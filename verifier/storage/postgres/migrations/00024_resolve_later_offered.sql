-- A held sign-in records the policies its latest page offered to resolve
-- later (comma-separated ids, '' for none): a press of Resolve later skips
-- only those, never one whose grace ended after the page was shown.

-- +goose Up
ALTER TABLE pending_sign_ins ADD COLUMN resolve_later TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE pending_sign_ins DROP COLUMN resolve_later;
