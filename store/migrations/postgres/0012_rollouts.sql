-- PostgreSQL twin of ../sqlite/0012_rollouts.sql (only the types differ).
-- Rollouts from a plant server: each message sent to a station (the whole of
-- what it should run, `rollout/v1`), who sent it and when, and the station's
-- answer on cmd/reply once heard.
CREATE TABLE rollouts (
    id          TEXT PRIMARY KEY,
    station     TEXT NOT NULL,
    payload     TEXT NOT NULL,
    sent_by     TEXT NOT NULL,
    sent_at     TEXT NOT NULL,
    answer_ok   BIGINT,
    answer      TEXT,
    answered_at TEXT
);
CREATE INDEX rollouts_by_station ON rollouts (station, sent_at);
CREATE INDEX rollouts_by_time ON rollouts (sent_at);
