-- An enrollment request records the revocation of the device it was made
-- against (0: none), so that approving a revoked Mac's request reinstates
-- exactly the revocation the approver read, and nothing else.

-- +goose Up
ALTER TABLE pending_enrollments ADD COLUMN device_revoked_at INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE pending_enrollments DROP COLUMN device_revoked_at;
