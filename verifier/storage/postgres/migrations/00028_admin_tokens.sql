-- Named admin tokens: one per person or system, each with a role, so the
-- audit log names who made a change. Only the token's SHA-256 is kept.
-- No two unrevoked tokens share a name, in any case of its letters (names
-- are ASCII: lower() is the same in both engines).

-- +goose Up
CREATE TABLE admin_tokens (
    id         TEXT COLLATE "C" NOT NULL PRIMARY KEY CHECK (id <> ''),
    name       TEXT COLLATE "C" NOT NULL CHECK (name <> ''),
    role       TEXT    NOT NULL CHECK (role IN ('read', 'admin')),
    hash       BYTEA   NOT NULL,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL DEFAULT 0,
    revoked_at BIGINT  NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX admin_tokens_active_name ON admin_tokens (lower(name)) WHERE revoked_at = 0;

-- +goose Down
DROP TABLE admin_tokens;
