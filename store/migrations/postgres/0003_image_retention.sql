-- PostgreSQL twin of ../sqlite/0003_image_retention.sql.
-- Retention: an image file deleted by age or quota (or never written, the
-- disk being full) keeps its row, saying when and why, so a verdict can tell
-- its reviewer where its picture went.

ALTER TABLE images ADD COLUMN deleted_at TEXT;
ALTER TABLE images ADD COLUMN deleted_reason TEXT;
CREATE INDEX images_eviction ON images (retention_class, created_at) WHERE deleted_at IS NULL;
