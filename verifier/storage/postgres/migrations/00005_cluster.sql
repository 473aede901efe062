-- Replicas and the agent streams each holds (cluster.Relay's presence).
-- Unlike the other tables, times here are timestamptz set by the database's
-- own now(): they are compared only with each other, so the replicas' clocks
-- never enter into it.

-- +goose Up
-- One row per running replica, its heartbeat refreshed every few seconds
-- by the replica's listening connection.
CREATE TABLE cluster_replicas (
    replica_id   TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    started_at   TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL
);

-- A device's stream on a replica; session tells a reconnection's row from
-- the one its predecessor leaves behind. A row counts only while its
-- replica's heartbeat is fresh, so a replica that died stops claiming
-- devices without anyone deleting its rows first.
CREATE TABLE cluster_presence (
    device_id  TEXT COLLATE "C" NOT NULL,
    replica_id TEXT COLLATE "C" NOT NULL,
    session    TEXT NOT NULL,
    since      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (device_id, replica_id)
);

CREATE INDEX cluster_presence_replica_id ON cluster_presence (replica_id);

-- +goose Down
DROP TABLE cluster_presence;
DROP TABLE cluster_replicas;
