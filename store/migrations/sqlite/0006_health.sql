-- Monitoring: the health figures' history for the panel (one row per
-- station every monitoring.history_every) and the alerts, reloads,
-- escalations and recoveries self-healing went through. The SQLite and
-- PostgreSQL twins differ only in types.

CREATE TABLE health_samples (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    station                TEXT NOT NULL,
    at                     TEXT NOT NULL,
    state                  TEXT NOT NULL,
    latency_p99            REAL,
    latency_threshold      REAL NOT NULL,
    context_loss           REAL,
    context_loss_threshold REAL NOT NULL,
    consistency            REAL,
    consistency_threshold  REAL NOT NULL,
    -- verdicts per second since the previous row
    throughput             REAL NOT NULL,
    -- p95 seconds from capture to each stage since the previous row
    queued_p95             REAL,
    inference_p95          REAL,
    decided_p95            REAL,
    published_p95          REAL
);
CREATE INDEX health_samples_by_station ON health_samples (station, at);

CREATE TABLE health_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    station   TEXT NOT NULL,
    at        TEXT NOT NULL,
    -- alert, reload, reload_failed, reload_skipped, escalated, recovered,
    -- golden, golden_error
    kind      TEXT NOT NULL,
    figure    TEXT,
    value     REAL,
    threshold REAL,
    detail    TEXT NOT NULL
);
CREATE INDEX health_events_by_station ON health_events (station, at);
