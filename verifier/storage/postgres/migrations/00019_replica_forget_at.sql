-- Until when a replica's presence rows count at all. heartbeat_at says a
-- replica can hear signals (its listening connection is up): only then is
-- a live check routed to it. But a replica whose listening connection is
-- down, or never came up, may still hold agent streams, and under
-- --browser-binding either "this Mac has no agent connected" lets its
-- certificate decide alone: its rows must count as "cannot tell" for as
-- long as it may be alive. forget_at is pushed an hour ahead by every
-- heartbeat and also by a beat over the replica's ordinary connections,
-- which work without the listening one; a replica that stops cleanly sets
-- it a few minutes ahead, long enough for its agents to reconnect
-- elsewhere. Rows of a replica whose forget_at has passed are deleted.

-- +goose Up
ALTER TABLE cluster_replicas ADD COLUMN forget_at TIMESTAMPTZ NOT NULL DEFAULT now() + interval '1 hour';

-- +goose Down
ALTER TABLE cluster_replicas DROP COLUMN forget_at;
