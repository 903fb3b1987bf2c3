-- The sweeper re-announces submissions stuck between stages (their message lost after the
-- outbox row was deleted): `announced_at` is when it last did, so it waits as long again
-- before the next try. The partial index keeps the sweep to the few rows in flight.
ALTER TABLE submission ADD COLUMN announced_at timestamptz;

CREATE INDEX submission_in_flight_idx ON submission (received_at)
    WHERE status IN ('ingested', 'embedded', 'approved');
