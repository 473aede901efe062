-- Sign-in state shared by every replica: the AuthnRequest replay cache and
-- the denied sign-ins that "Check again" can resume. Times are BIGINT unix
-- nanoseconds UTC, as in 00001.

-- +goose Up
-- An entry stays until swept, past expires_at too: a replay is refused for
-- as long as its ID is remembered. COLLATE "C": IDs compare byte for byte.
CREATE TABLE saml_request_ids (
    issuer     TEXT COLLATE "C" NOT NULL,
    id         TEXT COLLATE "C" NOT NULL CHECK (id <> ''),
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, id)
);

CREATE INDEX saml_request_ids_expires_at ON saml_request_ids (expires_at);

-- token_hash is the SHA-256 of the token the browser holds; the token
-- itself is never stored. relay_state is BYTEA: it is returned byte for
-- byte, and text cannot hold every byte. No foreign key on device_id: a
-- pending sign-in only names the device it must be resumed from.
CREATE TABLE pending_sign_ins (
    token_hash  BYTEA  NOT NULL PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    device_id   TEXT COLLATE "C" NOT NULL,
    cert_serial TEXT   NOT NULL,
    username    TEXT   NOT NULL,
    request     BYTEA  NOT NULL,
    relay_state BYTEA  NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

CREATE INDEX pending_sign_ins_expires_at ON pending_sign_ins (expires_at);

-- +goose Down
DROP TABLE pending_sign_ins;
DROP TABLE saml_request_ids;
