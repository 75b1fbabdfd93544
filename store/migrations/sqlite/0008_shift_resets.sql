-- The line view's shift counters: a supervisor may reset them mid-shift;
-- counting starts at the later of the shift's start and the last reset.
CREATE TABLE shift_resets (
    station  TEXT NOT NULL,
    at       TEXT NOT NULL,
    by_user  TEXT NOT NULL
);
CREATE INDEX shift_resets_by_station ON shift_resets (station, at);
