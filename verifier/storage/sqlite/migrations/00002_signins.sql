-- Sign-in state shared by every SSO request: the AuthnRequest replay cache
-- and the denied sign-ins that "Check again" can resume. Times are INTEGER
-- unix nanoseconds UTC, as in 00001.

-- +goose Up
-- An entry stays until swept, past expires_at too: a replay is refused for
-- as long as its ID is remembered. IDs are compared byte for byte (BINARY).
CREATE TABLE saml_request_ids (
    issuer     TEXT    NOT NULL,
    id         TEXT    NOT NULL CHECK (id <> ''),
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (issuer, id)
) STRICT, WITHOUT ROWID;

CREATE INDEX saml_request_ids_expires_at ON saml_request_ids (expires_at);

-- token_hash is the SHA-256 of the token the browser holds; the token
-- itself is never stored. relay_state is a blob: it is returned byte for
-- byte. No foreign key on device_id: a pending sign-in only names the
-- device it must be resumed from.
CREATE TABLE pending_sign_ins (
    token_hash  BLOB    NOT NULL PRIMARY KEY CHECK (length(token_hash) = 32),
    device_id   TEXT    NOT NULL,
    cert_serial TEXT    NOT NULL,
    username    TEXT    NOT NULL,
    request     BLOB    NOT NULL,
    relay_state BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;

CREATE INDEX pending_sign_ins_expires_at ON pending_sign_ins (expires_at);

-- +goose Down
DROP TABLE pending_sign_ins;
DROP TABLE saml_request_ids;
