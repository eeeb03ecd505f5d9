-- iotwatch store, schema version 3: restart in constant time. A session saves its evaluator's
-- state with the events it reflects, and every configuration it evaluated under, so a restart
-- loads the newest state and evaluates only what came after it, exactly as the session did.

-- Every configuration a session evaluated under, from the event after last_event on: the one
-- in force when the first event was evaluated has last_event 0. config is TOML text.
CREATE TABLE config_log (
    id         INTEGER PRIMARY KEY,
    last_event INTEGER NOT NULL,            -- events.id of the last event evaluated before it
    at_us      INTEGER NOT NULL,            -- the wall clock the change was applied at
    config     TEXT NOT NULL
);

-- The evaluator's state after the event last_event, under configuration config (config_log.id);
-- only the newest is kept. state is MessagePack (engine/checkpoint.py), checked before use.
CREATE TABLE checkpoints (
    id         INTEGER PRIMARY KEY,
    last_event INTEGER NOT NULL,
    config     INTEGER NOT NULL,
    at_us      INTEGER NOT NULL,
    state      BLOB NOT NULL
);
