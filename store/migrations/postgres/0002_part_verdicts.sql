-- PostgreSQL twin of ../sqlite/0002_part_verdicts.sql: the same tables, columns and
-- indexes; only the types differ (BIGINT, DOUBLE PRECISION, an identity
-- column for the outbox sequence) so both decode to the same Rust types.
-- Multi-view parts: the combined verdict per part id, with the views it was
-- combined from and the views that never arrived.

CREATE TABLE part_verdicts (
    id          TEXT PRIMARY KEY,
    station     TEXT NOT NULL,
    part_id     TEXT NOT NULL,
    decision    TEXT NOT NULL,
    reason      TEXT,
    views       TEXT NOT NULL,
    missing     TEXT NOT NULL,
    decided_at  TEXT NOT NULL
);
CREATE INDEX part_verdicts_part ON part_verdicts (part_id);
