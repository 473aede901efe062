-- Each directory user and group records who manages it: "scim" (Okta
-- pushes it) or "okta_api" (the verifier pulls it from Okta's management
-- API). Records stored before had only one source, SCIM.

-- +goose Up
ALTER TABLE directory_users ADD COLUMN source TEXT NOT NULL DEFAULT 'scim';
ALTER TABLE directory_groups ADD COLUMN source TEXT NOT NULL DEFAULT 'scim';

-- +goose Down
ALTER TABLE directory_groups DROP COLUMN source;
ALTER TABLE directory_users DROP COLUMN source;
