-- PostgreSQL twin of ../sqlite/0005_reviews_and_accounts.sql (the same SQL).
-- Operator review: people with roles, their browser sessions, API tokens for
-- the MES, and every review of a verdict (never overwriting the verdict).

CREATE TABLE users (
    name          TEXT PRIMARY KEY,
    role          TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    disabled      BIGINT NOT NULL DEFAULT 0
);

-- Only hashes of session and API tokens are stored.
CREATE TABLE sessions (
    token_sha256 TEXT PRIMARY KEY,
    user_name    TEXT NOT NULL REFERENCES users (name),
    csrf         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL
);

CREATE TABLE api_tokens (
    token_sha256 TEXT PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    role         TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    created_at   TEXT NOT NULL
);

CREATE TABLE reviews (
    id          TEXT PRIMARY KEY,
    verdict_id  TEXT NOT NULL REFERENCES verdicts (id),
    reviewer    TEXT NOT NULL,
    decision    TEXT NOT NULL CHECK (decision IN ('PASS', 'FAIL', 'REVIEW')),
    agrees      BIGINT NOT NULL,
    reason      TEXT NOT NULL,
    corrections TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX reviews_by_verdict ON reviews (verdict_id, created_at);

-- The review inbox and the list's filters: each equality filter has an
-- index that also yields the list's order (newest first, id breaking ties),
-- so a page reads about as many index entries as it shows rows.
DROP INDEX verdicts_by_time;
CREATE INDEX verdicts_by_time ON verdicts (decided_at, id);
CREATE INDEX verdicts_by_decision ON verdicts (decision, decided_at, id);
CREATE INDEX verdicts_by_station ON verdicts (station, decided_at, id);
CREATE INDEX verdicts_by_camera ON verdicts (camera, decided_at, id);
CREATE INDEX verdicts_by_recipe ON verdicts (recipe, decided_at, id);
CREATE INDEX findings_by_defect ON findings (defect, verdict_id);
