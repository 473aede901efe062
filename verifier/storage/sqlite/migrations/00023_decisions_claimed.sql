-- Decisions listed by the device a refused proof claimed: few rows have
-- one, so the index holds only those and costs other sign-ins nothing.

-- +goose Up
CREATE INDEX decisions_claimed_device_id ON decisions (claimed_device_id, id) WHERE claimed_device_id <> '';

-- +goose Down
DROP INDEX decisions_claimed_device_id;
