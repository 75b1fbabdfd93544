-- PostgreSQL twin of ../sqlite/0010_shadow_verdicts.sql (only the types differ).
-- Shadow mode: a candidate model judges the frames the running model judges;
-- one row per frame compared, beside the published verdict, never published.
-- The panel counts agreement per candidate; disagreements are listed for review.
CREATE TABLE shadow_verdicts (
    verdict_id        TEXT PRIMARY KEY REFERENCES verdicts (id),
    station           TEXT NOT NULL,
    candidate_name    TEXT NOT NULL,
    candidate_version TEXT NOT NULL,
    candidate_sha256  TEXT NOT NULL,
    decision          TEXT NOT NULL CHECK (decision IN ('PASS', 'FAIL', 'REVIEW')),
    running_decision  TEXT NOT NULL CHECK (running_decision IN ('PASS', 'FAIL', 'REVIEW')),
    agrees            BIGINT NOT NULL,
    inference_ms      DOUBLE PRECISION NOT NULL,
    judged_at         TEXT NOT NULL,
    record            TEXT NOT NULL
);
CREATE INDEX shadow_by_candidate ON shadow_verdicts (station, candidate_sha256, agrees, judged_at);
