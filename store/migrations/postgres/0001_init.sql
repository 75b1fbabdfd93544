-- PostgreSQL twin of ../sqlite/0001_init.sql: the same tables, columns and
-- indexes; only the types differ (BIGINT, DOUBLE PRECISION, an identity
-- column for the outbox sequence) so both decode to the same Rust types.
-- Verdicts, their findings and images, ingest errors, the MQTT outbox, and
-- the standard versions verdicts were judged against.

CREATE TABLE standard_versions (
    sha256      TEXT PRIMARY KEY,
    recipe      TEXT NOT NULL,
    text        TEXT NOT NULL,
    first_seen  TEXT NOT NULL
);

CREATE TABLE images (
    sha256          TEXT PRIMARY KEY,
    path            TEXT NOT NULL,
    bytes           BIGINT NOT NULL,
    width           BIGINT,
    height          BIGINT,
    retention_class TEXT NOT NULL,
    created_at      TEXT NOT NULL
);

CREATE TABLE verdicts (
    id              TEXT PRIMARY KEY,
    station         TEXT NOT NULL,
    camera          TEXT NOT NULL,
    part_id         TEXT,
    trigger_id      TEXT,
    recipe          TEXT NOT NULL,
    standard_sha256 TEXT NOT NULL REFERENCES standard_versions (sha256),
    decision        TEXT NOT NULL CHECK (decision IN ('PASS', 'FAIL', 'REVIEW')),
    confidence      DOUBLE PRECISION NOT NULL,
    model_name      TEXT NOT NULL,
    model_version   TEXT NOT NULL,
    model_sha256    TEXT NOT NULL,
    image_sha256    TEXT NOT NULL REFERENCES images (sha256),
    captured_at     TEXT NOT NULL,
    decided_at      TEXT NOT NULL,
    published_at    TEXT,
    record          TEXT NOT NULL
);
CREATE INDEX verdicts_by_time ON verdicts (decided_at);
CREATE INDEX verdicts_by_part ON verdicts (part_id);

CREATE TABLE findings (
    verdict_id  TEXT NOT NULL REFERENCES verdicts (id),
    idx         BIGINT NOT NULL,
    defect      TEXT NOT NULL,
    x0          DOUBLE PRECISION NOT NULL,
    y0          DOUBLE PRECISION NOT NULL,
    x1          DOUBLE PRECISION NOT NULL,
    y1          DOUBLE PRECISION NOT NULL,
    size_mm     DOUBLE PRECISION NOT NULL,
    clause      BIGINT,
    clause_text TEXT,
    confidence  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (verdict_id, idx)
);

CREATE TABLE ingest_errors (
    id          TEXT PRIMARY KEY,
    station     TEXT NOT NULL,
    camera      TEXT NOT NULL,
    source      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    bytes       BIGINT NOT NULL,
    kept_path   TEXT,
    created_at  TEXT NOT NULL
);

CREATE TABLE outbox (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    verdict_id   TEXT NOT NULL,
    topic        TEXT NOT NULL,
    payload      TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    published_at TEXT
);
CREATE INDEX outbox_pending ON outbox (seq) WHERE published_at IS NULL;
