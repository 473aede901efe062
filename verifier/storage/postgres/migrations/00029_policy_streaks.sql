-- Since when each policy's result on each device has been what it is: the
-- observation time of the first report of an unbroken run that judged the
-- policy the same way for the same query. One row per policy in force per
-- device, and the device's own (policy_id '*compliance': PASS while every
-- required policy passes); a policy no longer in force loses its row at
-- the device's next change. Rows are written with the report that changes
-- them, in its transaction. Times are BIGINT unix nanoseconds UTC, as in
-- 00001.

-- +goose Up
CREATE TABLE policy_streaks (
    device_id    TEXT COLLATE "C" NOT NULL CHECK (device_id <> ''),
    policy_id    TEXT COLLATE "C" NOT NULL CHECK (policy_id <> ''),
    status       TEXT   NOT NULL CHECK (status IN ('PASS', 'FAIL', 'ERROR', 'MISSING')),
    query_sha256 BYTEA  NOT NULL,
    since        BIGINT NOT NULL CHECK (since <> 0),
    PRIMARY KEY (device_id, policy_id)
);

-- +goose Down
DROP TABLE policy_streaks;
