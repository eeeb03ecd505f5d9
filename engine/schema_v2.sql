-- iotwatch store, schema version 2 (contract version 2): late events became expired ones, and a
-- live session keeps and amends its alerts.

-- 1: stored, not counted into windows (older than the device's latest time in its stream, or the
-- wall clock, minus the horizon).
ALTER TABLE events RENAME COLUMN late TO expired;
ALTER TABLE streams RENAME COLUMN late TO expired;

-- Alert states are now open | resolved | withdrawn. A withdrawn alert keeps its record;
-- merged_into names the alert that took it over, if one did.
ALTER TABLE alerts ADD COLUMN amended INTEGER NOT NULL DEFAULT 0;
ALTER TABLE alerts ADD COLUMN merged_into INTEGER;

-- What amended an alert: an event counted into a window that was already judged. A row whose
-- counts are equal records a window judged again without a new count (its device turned out to
-- be known earlier); for allow-list alerts window_us is the violation's time.
CREATE TABLE amendments (
    id           INTEGER PRIMARY KEY,
    alert        INTEGER NOT NULL,
    at_us        INTEGER NOT NULL,          -- wall clock when it happened
    window_us    INTEGER NOT NULL,          -- start of the window judged again
    count_before INTEGER NOT NULL,
    count_after  INTEGER NOT NULL
);
CREATE INDEX amendments_alert ON amendments (alert);
