-- Version-2 checkpoints (docs/auditing.md, "Inclusion proofs"): the Merkle root of the events a
-- checkpoint covers since the previous one, signed with it, so one event can be proven part of a
-- signed checkpoint without seeing the others. NULL for the version-1 checkpoints sealed before.
ALTER TABLE audit_checkpoints
    ADD COLUMN events_root bytea CHECK (events_root IS NULL OR length(events_root) = 32);
