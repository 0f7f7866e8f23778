-- The console's service-level dashboard reads the last hours of the log by commit time
-- (payledger_store::recent). `recorded_at` grows with the log's physical order, so a BRIN index
-- finds those blocks while costing appends next to nothing (one summary per 128 pages, not an
-- entry per event).
CREATE INDEX IF NOT EXISTS events_recorded_at_brin ON events USING brin (recorded_at);
