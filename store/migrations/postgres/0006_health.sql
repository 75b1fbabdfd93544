-- Monitoring: the health figures' history for the panel (one row per
-- station every monitoring.history_every) and the alerts, reloads,
-- escalations and recoveries self-healing went through. The SQLite and
-- PostgreSQL twins differ only in types.

CREATE TABLE health_samples (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    station                TEXT NOT NULL,
    at                     TEXT NOT NULL,
    state                  TEXT NOT NULL,
    latency_p99            DOUBLE PRECISION,
    latency_threshold      DOUBLE PRECISION NOT NULL,
    context_loss           DOUBLE PRECISION,
    context_loss_threshold DOUBLE PRECISION NOT NULL,
    consistency            DOUBLE PRECISION,
    consistency_threshold  DOUBLE PRECISION NOT NULL,
    -- verdicts per second since the previous row
    throughput             DOUBLE PRECISION NOT NULL,
    -- p95 seconds from capture to each stage since the previous row
    queued_p95             DOUBLE PRECISION,
    inference_p95          DOUBLE PRECISION,
    decided_p95            DOUBLE PRECISION,
    published_p95          DOUBLE PRECISION
);
CREATE INDEX health_samples_by_station ON health_samples (station, at);

CREATE TABLE health_events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    station   TEXT NOT NULL,
    at        TEXT NOT NULL,
    -- alert, reload, reload_failed, reload_skipped, escalated, recovered,
    -- golden, golden_error
    kind      TEXT NOT NULL,
    figure    TEXT,
    value     DOUBLE PRECISION,
    threshold DOUBLE PRECISION,
    detail    TEXT NOT NULL
);
CREATE INDEX health_events_by_station ON health_events (station, at);
