-- PostgreSQL side of ../sqlite/0011_monthly_partitions.sql (which only adds
-- verdicts_by_image; SQLite keeps plain tables and `store::months` deletes its
-- old rows by the same id ranges).
-- Monthly partitions, so that years of verdicts
-- stay as fast to read as the first month and retention drops a whole month
-- in one statement instead of deleting millions of rows.
--
-- The tables of a verdict (verdicts, findings, shadow_verdicts, part_verdicts)
-- are partitioned by RANGE of the verdict's id. Ids are UUIDv7, minted when
-- the verdict is decided, so their text sorts by the millisecond they were
-- made: a month is the id range from the first UUIDv7 of its first millisecond
-- to that of the next month. Partitioning by id rather than by `decided_at`
-- keeps `id` a primary key on its own, so findings, reviews and shadow
-- judgements still reference `verdicts (id)`.
--
-- The existing tables become the DEFAULT partitions as they are (no row is
-- copied, so the upgrade is quick on a plant's database) and stay the place
-- where a row outside every month partition lands (a station clock far off),
-- so no verdict is ever refused for want of a partition. `store::months`
-- creates each month's partitions ahead of time and drops them at retention.
-- Reviews stay one table: they are few and are deleted with their verdicts.

ALTER TABLE findings DROP CONSTRAINT findings_verdict_id_fkey;
ALTER TABLE reviews DROP CONSTRAINT reviews_verdict_id_fkey;
ALTER TABLE shadow_verdicts DROP CONSTRAINT shadow_verdicts_verdict_id_fkey;

-- verdicts: the old table, its indexes and constraints renamed, becomes the default partition
ALTER TABLE verdicts RENAME TO verdicts_default;
ALTER TABLE verdicts_default RENAME CONSTRAINT verdicts_pkey TO verdicts_default_pkey;
ALTER TABLE verdicts_default DROP CONSTRAINT verdicts_standard_sha256_fkey;
ALTER TABLE verdicts_default DROP CONSTRAINT verdicts_image_sha256_fkey;
ALTER INDEX verdicts_by_part RENAME TO verdicts_default_by_part;
ALTER INDEX verdicts_by_time RENAME TO verdicts_default_by_time;
ALTER INDEX verdicts_by_decision RENAME TO verdicts_default_by_decision;
ALTER INDEX verdicts_by_station RENAME TO verdicts_default_by_station;
ALTER INDEX verdicts_by_camera RENAME TO verdicts_default_by_camera;
ALTER INDEX verdicts_by_recipe RENAME TO verdicts_default_by_recipe;
ALTER INDEX verdicts_source RENAME TO verdicts_default_source;
CREATE TABLE verdicts (LIKE verdicts_default INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (id);
ALTER TABLE verdicts ADD PRIMARY KEY (id);
ALTER TABLE verdicts ADD FOREIGN KEY (standard_sha256) REFERENCES standard_versions (sha256);
ALTER TABLE verdicts ADD FOREIGN KEY (image_sha256) REFERENCES images (sha256);
CREATE INDEX verdicts_by_part ON verdicts (part_id);
CREATE INDEX verdicts_by_time ON verdicts (decided_at, id);
CREATE INDEX verdicts_by_decision ON verdicts (decision, decided_at, id);
CREATE INDEX verdicts_by_station ON verdicts (station, decided_at, id);
CREATE INDEX verdicts_by_camera ON verdicts (camera, decided_at, id);
CREATE INDEX verdicts_by_recipe ON verdicts (recipe, decided_at, id);
CREATE INDEX verdicts_source ON verdicts (camera, source) WHERE source IS NOT NULL;
CREATE INDEX verdicts_by_image ON verdicts (image_sha256);
ALTER TABLE verdicts ATTACH PARTITION verdicts_default DEFAULT;

-- findings
ALTER TABLE findings RENAME TO findings_default;
ALTER TABLE findings_default RENAME CONSTRAINT findings_pkey TO findings_default_pkey;
ALTER INDEX findings_by_defect RENAME TO findings_default_by_defect;
CREATE TABLE findings (LIKE findings_default INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (verdict_id);
ALTER TABLE findings ADD PRIMARY KEY (verdict_id, idx);
CREATE INDEX findings_by_defect ON findings (defect, verdict_id);
ALTER TABLE findings ATTACH PARTITION findings_default DEFAULT;

-- shadow_verdicts
ALTER TABLE shadow_verdicts RENAME TO shadow_verdicts_default;
ALTER TABLE shadow_verdicts_default RENAME CONSTRAINT shadow_verdicts_pkey TO shadow_verdicts_default_pkey;
ALTER INDEX shadow_by_candidate RENAME TO shadow_verdicts_default_by_candidate;
CREATE TABLE shadow_verdicts (LIKE shadow_verdicts_default INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (verdict_id);
ALTER TABLE shadow_verdicts ADD PRIMARY KEY (verdict_id);
CREATE INDEX shadow_by_candidate ON shadow_verdicts (station, candidate_sha256, agrees, judged_at);
ALTER TABLE shadow_verdicts ATTACH PARTITION shadow_verdicts_default DEFAULT;

-- part_verdicts
ALTER TABLE part_verdicts RENAME TO part_verdicts_default;
ALTER TABLE part_verdicts_default RENAME CONSTRAINT part_verdicts_pkey TO part_verdicts_default_pkey;
ALTER INDEX part_verdicts_part RENAME TO part_verdicts_default_part;
CREATE TABLE part_verdicts (LIKE part_verdicts_default INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (id);
ALTER TABLE part_verdicts ADD PRIMARY KEY (id);
CREATE INDEX part_verdicts_part ON part_verdicts (part_id);
ALTER TABLE part_verdicts ATTACH PARTITION part_verdicts_default DEFAULT;

-- The references back, now to the partitioned verdicts.
ALTER TABLE findings ADD FOREIGN KEY (verdict_id) REFERENCES verdicts (id);
ALTER TABLE reviews ADD FOREIGN KEY (verdict_id) REFERENCES verdicts (id);
ALTER TABLE shadow_verdicts ADD FOREIGN KEY (verdict_id) REFERENCES verdicts (id);
