-- The people an audit event is about (storage.AuditSubject): one row per
-- subject, written with its event, in its transaction, and removed with
-- it by retention (at is the event's). user_name is the username as it
-- was when the event was recorded; user_name_key is its
-- storage.UserNameKey, what the audit log's user filter compares.
-- Events recorded before this table have no subjects. Times are INTEGER
-- unix nanoseconds UTC, as in 00001.

-- +goose Up
CREATE TABLE audit_subjects (
    audit_id      INTEGER NOT NULL REFERENCES audit (id) ON DELETE CASCADE,
    n             INTEGER NOT NULL,
    at            INTEGER NOT NULL,
    user_id       TEXT    NOT NULL,
    user_name     TEXT    NOT NULL,
    user_name_key TEXT    NOT NULL,
    PRIMARY KEY (audit_id, n),
    CHECK (user_id <> '' OR user_name <> '')
) STRICT;

CREATE INDEX audit_subjects_user_id ON audit_subjects (user_id, audit_id);
CREATE INDEX audit_subjects_user_name_key ON audit_subjects (user_name_key, audit_id);
CREATE INDEX audit_subjects_at ON audit_subjects (at);

-- +goose Down
DROP TABLE audit_subjects;
