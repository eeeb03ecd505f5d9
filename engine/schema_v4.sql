-- iotwatch store, schema version 4 (real Azure data): hub-wide resource-log records, and where in
-- its record a quarantined part was. The rule types' display names are rewritten from the
-- catalogue by the migration itself (they became Defender's exact names).

-- Resource-log records that have no device by design (Routes, JobsOperations, TwinQueries,
-- Configurations, DistributedTracing, ...): valid, stored, counted toward no rule.
CREATE TABLE hub_records (
    id        INTEGER PRIMARY KEY,
    stream    INTEGER NOT NULL,             -- streams.id
    pos       INTEGER NOT NULL,             -- position of the record (its line) in its stream
    time_us   INTEGER NOT NULL,
    category  TEXT NOT NULL,
    operation TEXT NOT NULL,                -- operationName
    result    TEXT,                         -- resultType; NULL when absent or empty
    raw       BLOB NOT NULL                 -- the record as read (first 64 KiB)
);

-- Which part of the record at pos was quarantined: the element of a {"records": [...]} batch,
-- the event of a security message, the record of an Avro block. NULL: the record as a whole.
-- Reasons never carry it, so that they group by cause.
ALTER TABLE quarantine ADD COLUMN part INTEGER;
