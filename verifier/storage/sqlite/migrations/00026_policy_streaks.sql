-- Since when each policy's result on each device has been what it is: the
-- observation time of the first report of an unbroken run that judged the
-- policy the same way for the same query. One row per policy in force per
-- device, and the device's own (policy_id '*compliance': PASS while every
-- required policy passes); a policy no longer in force loses its row at
-- the device's next change. Rows are written with the report that changes
-- them, in its transaction. Times are INTEGER unix nanoseconds UTC, as in
-- 00001.

-- +goose Up
CREATE TABLE policy_streaks (
    device_id    TEXT    NOT NULL CHECK (device_id <> ''),
    policy_id    TEXT    NOT NULL CHECK (policy_id <> ''),
    status       TEXT    NOT NULL CHECK (status IN ('PASS', 'FAIL', 'ERROR', 'MISSING')),
    query_sha256 BLOB    NOT NULL,
    since        INTEGER NOT NULL CHECK (since <> 0),
    PRIMARY KEY (device_id, policy_id)
) STRICT;

-- +goose Down
DROP TABLE policy_streaks;
