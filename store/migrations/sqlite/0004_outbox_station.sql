-- Many stations can share one database: each drains only its own outbox
-- rows. Rows written before this migration take the station of their record.

ALTER TABLE outbox ADD COLUMN station TEXT NOT NULL DEFAULT '';
UPDATE outbox SET station = COALESCE(
    (SELECT station FROM verdicts WHERE verdicts.id = outbox.verdict_id),
    (SELECT station FROM part_verdicts WHERE part_verdicts.id = outbox.verdict_id),
    '');
CREATE INDEX outbox_pending_by_station ON outbox (station, seq) WHERE published_at IS NULL;
