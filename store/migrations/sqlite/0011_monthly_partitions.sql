-- SQLite side of ../postgres/0011_monthly_partitions.sql. SQLite has no
-- partitions: `store::months` deletes a month's rows by the same id range
-- that a PostgreSQL partition holds. Both need to find the verdicts that
-- still show an image before the image's row goes.
CREATE INDEX verdicts_by_image ON verdicts (image_sha256);
