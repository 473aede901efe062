-- Which presence rows a replica's resync may touch. A resync leaves alone
-- every row written after it began: such a row's Join came after the
-- snapshot of the streams could see its stream. It told them apart by
-- since, the database's now(), which steps backwards when the database
-- host's clock is set back: a Join written after the resync began could
-- then read as older, and the resync deleted the record of a live stream.
-- rev is drawn from a sequence by every write of a row, and a sequence
-- hands out its numbers in the order they are asked for, whatever the
-- clock does. since stays, for forgetting rows of no known replica.

-- +goose Up
CREATE SEQUENCE cluster_presence_rev AS BIGINT;
ALTER TABLE cluster_presence ADD COLUMN rev BIGINT NOT NULL DEFAULT nextval('cluster_presence_rev');
ALTER SEQUENCE cluster_presence_rev OWNED BY cluster_presence.rev;

-- +goose Down
ALTER TABLE cluster_presence DROP COLUMN rev;
