-- PostgreSQL twin of ../sqlite/0007_hardening.sql (the same SQL).
-- Hardening (issue 18). Credentials that can be taken back: API tokens
-- expire and can be revoked (the row stays, for the audit trail), and failed
-- sign-ins are kept across restarts, keyed by account, by address and by the
-- pair, with the time until the next attempt is taken. And a part judged
-- once: each verdict records the identity of the file it judged, so a file
-- found again after a power cut between commit and move is not judged twice.

ALTER TABLE api_tokens ADD COLUMN expires_at TEXT;
ALTER TABLE api_tokens ADD COLUMN revoked_at TEXT;

CREATE TABLE sign_in_failures (
    key        TEXT PRIMARY KEY,
    failures   BIGINT NOT NULL,
    last_at    TEXT NOT NULL,
    wait_until TEXT NOT NULL
);
CREATE INDEX sign_in_failures_last_at ON sign_in_failures (last_at);

ALTER TABLE verdicts ADD COLUMN source TEXT;
CREATE INDEX verdicts_source ON verdicts (camera, source) WHERE source IS NOT NULL;
