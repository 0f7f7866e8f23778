-- Keys of data subjects for crypto-shredding (docs/events.md, "Personal data and erasure").
-- Numbered 0021 after the issue that introduced it (20), apart from the 000N series.
--
-- One row per subject and generation. `wrapped_key` is the subject's AES-256 key encrypted with a
-- master key that is not in the database, so a dump of this table reveals nothing by itself.
-- Erasure sets it to NULL: the personal fields sealed with it can never be read again, while the
-- events that hold them (and their hashes) stay as they are. Rows are never deleted, so when and
-- how often a subject was erased stays visible.
CREATE TABLE privacy_subject_keys (
    subject      text        NOT NULL CHECK (length(subject) BETWEEN 1 AND 300),
    generation   integer     NOT NULL CHECK (generation >= 1),
    wrapped_key  bytea       CHECK (wrapped_key IS NULL OR length(wrapped_key) = 60),
    created_at   timestamptz NOT NULL DEFAULT now(),
    erased_at    timestamptz,
    PRIMARY KEY (subject, generation),
    CHECK ((wrapped_key IS NULL) = (erased_at IS NOT NULL))
);

-- A destroyed key stays destroyed, and rows are never deleted.
CREATE FUNCTION privacy_keys_only_erase() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.wrapped_key IS NULL OR NEW.wrapped_key IS NOT NULL
       OR NEW.subject <> OLD.subject OR NEW.generation <> OLD.generation THEN
        RAISE EXCEPTION 'subject keys can only be erased: % not allowed', TG_OP
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER privacy_subject_keys_only_erase BEFORE UPDATE OR DELETE ON privacy_subject_keys
    FOR EACH ROW EXECUTE FUNCTION privacy_keys_only_erase();

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'payledger_app') THEN
        REVOKE ALL ON privacy_subject_keys FROM PUBLIC;
        GRANT SELECT, INSERT, UPDATE ON privacy_subject_keys TO payledger_app;
    END IF;
END
$$;
