-- iotwatch store, schema version 1. Times are integer microseconds since the Unix epoch (UTC).

CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- The 20 rule types (ids are stable; events and alerts refer to them).
CREATE TABLE rule_types (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,      -- Azure ruleType
    kind         TEXT NOT NULL,             -- range | allowlist
    source       TEXT NOT NULL,             -- IoT Hub | Agent
    alert_type   TEXT NOT NULL,             -- IoT_CA_<ruleType>
    display_name TEXT NOT NULL
);

-- One row per input stream: a file (by identity), a serial port, a capture.
CREATE TABLE streams (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,              -- file | serial | capture
    format      TEXT,                       -- hub-log | hub-events | security-messages | serial
    name        TEXT NOT NULL,              -- path or port as configured
    identity    TEXT,                       -- files: device:inode:fingerprint of the first bytes
    offset      INTEGER NOT NULL DEFAULT 0, -- committed position: resume here
    records     INTEGER NOT NULL DEFAULT 0,
    events      INTEGER NOT NULL DEFAULT 0,
    late        INTEGER NOT NULL DEFAULT 0,
    quarantined INTEGER NOT NULL DEFAULT 0,
    latest_us   INTEGER,                    -- latest event time seen (late detection)
    state       TEXT NOT NULL DEFAULT 'open'
);

CREATE TABLE devices (
    id       INTEGER PRIMARY KEY,
    name     TEXT NOT NULL UNIQUE,
    grp      TEXT NOT NULL,                 -- security group key (lower case)
    declared INTEGER NOT NULL DEFAULT 0,    -- named by exact id in the configuration
    first_us INTEGER,                       -- known from (earliest non-late event, or T_first)
    last_us  INTEGER                        -- latest non-late event
);

-- One row per event (a payload item of a security message, a resource-log record, ...).
CREATE TABLE events (
    id           INTEGER PRIMARY KEY,
    stream       INTEGER NOT NULL,          -- streams.id
    pos          INTEGER NOT NULL,          -- position of the record in its stream
    time_us      INTEGER NOT NULL,
    device       INTEGER NOT NULL,          -- devices.id
    name         TEXT NOT NULL,             -- event name / category/operation / hub-events op
    rule         INTEGER,                   -- rule_types.id of the range rule it counts toward
    unauthorized INTEGER NOT NULL,          -- 1: also counts toward UnauthorizedOperations...
    allow        INTEGER,                   -- rule_types.id of the allow-list rule checking value
    value        TEXT,                      -- remote address, user, executable, or protocol
    weight       INTEGER NOT NULL,          -- HitCount / count / 1
    late         INTEGER NOT NULL,          -- 1: stored, not counted into windows
    host_timed   INTEGER NOT NULL           -- 1: time replaced by the host's receive time
);
CREATE INDEX events_device_time ON events (device, time_us);

-- Records that could not be decoded: kept, counted, skipped.
CREATE TABLE quarantine (
    id     INTEGER PRIMARY KEY,
    stream INTEGER NOT NULL,
    pos    INTEGER NOT NULL,
    reason TEXT NOT NULL,
    raw    BLOB NOT NULL                     -- the first 64 KiB
);

-- Console text that serial boards print between frames.
CREATE TABLE console (
    id      INTEGER PRIMARY KEY,
    stream  INTEGER NOT NULL,
    pos     INTEGER NOT NULL,
    time_us INTEGER NOT NULL,               -- host receive time
    line    TEXT NOT NULL
);

-- The configuration in force: groups, range rules, allow-lists, device mapping.
CREATE TABLE groups (
    key  TEXT PRIMARY KEY,                  -- lower case
    name TEXT NOT NULL
);
CREATE TABLE rules (
    grp      TEXT NOT NULL,
    rule     INTEGER NOT NULL,
    enabled  INTEGER NOT NULL,
    min      INTEGER,
    max      INTEGER,
    window_s INTEGER,
    severity TEXT NOT NULL,
    PRIMARY KEY (grp, rule)
);
CREATE TABLE allowlist (
    grp   TEXT NOT NULL,
    rule  INTEGER NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (grp, rule, value)
);
CREATE TABLE device_map (
    ord     INTEGER PRIMARY KEY,            -- file order: exact ids first, then patterns
    pattern TEXT NOT NULL,
    exact   INTEGER NOT NULL,
    grp     TEXT NOT NULL
);

CREATE TABLE alerts (
    id           INTEGER PRIMARY KEY,
    rule         INTEGER NOT NULL,
    device       TEXT NOT NULL,
    grp          TEXT NOT NULL,
    value        TEXT,                      -- allow-list alerts: the offending value
    start_us     INTEGER NOT NULL,
    end_us       INTEGER NOT NULL,
    state        TEXT NOT NULL,             -- open | resolved
    severity     TEXT NOT NULL,
    window_s     INTEGER,                   -- range alerts
    min          INTEGER,
    max          INTEGER,
    counts       TEXT,                      -- JSON list, one count per window
    occurrences  INTEGER,                   -- allow-list alerts: summed weight
    acknowledged_us INTEGER,                -- operator actions
    closed_by_hand_us INTEGER,
    silenced     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX alerts_device ON alerts (device, rule);

CREATE TABLE alert_notes (
    id    INTEGER PRIMARY KEY,
    alert INTEGER NOT NULL,
    at_us INTEGER NOT NULL,
    text  TEXT NOT NULL
);

CREATE TABLE silences (
    id       INTEGER PRIMARY KEY,
    rule     INTEGER NOT NULL,
    device   TEXT NOT NULL,
    value    TEXT,                          -- NULL: every value
    from_us  INTEGER NOT NULL,
    until_us INTEGER NOT NULL
);
