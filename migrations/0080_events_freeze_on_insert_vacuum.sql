-- `events` is append-only: PostgreSQL's insert-triggered autovacuum marks its new pages
-- all-visible but, with the default vacuum_freeze_min_age (50 M transactions), freezes none of
-- them, so every page waits for the aggressive anti-wraparound vacuum, which then rewrites the
-- whole table at once. Measured on 10 M events (docs/performance.md, issue 19): that burst took
-- 67 s and 4.3 GB of WAL, growing with the log; a second one, with every page frozen, took
-- 0.25 s. Freezing as the insert-triggered vacuums go spreads the same page writes over them.
ALTER TABLE events SET (autovacuum_freeze_min_age = 0);
