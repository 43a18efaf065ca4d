-- Rule sets as versioned data (docs/rules.md). A version is immutable: the
-- document (built-in rule settings + custom rules) with its author, time,
-- comment and digest. rule_pointers names the version that decides ('active')
-- and the one evaluated beside it without deciding ('shadow'); the job re-reads
-- them every few seconds and switches between batches. Every scored row records
-- the version that decided it.
CREATE TABLE IF NOT EXISTS rule_versions (
    version      integer PRIMARY KEY,
    created_at   timestamptz NOT NULL DEFAULT now(),
    author       text NOT NULL,
    comment      text NOT NULL,
    digest       text NOT NULL,
    document     jsonb NOT NULL
);

CREATE TABLE IF NOT EXISTS rule_pointers (
    name         text PRIMARY KEY CHECK (name IN ('active', 'shadow')),
    version      integer NOT NULL REFERENCES rule_versions (version),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    updated_by   text NOT NULL
);

-- Append-only audit trail of changes made by people (rule sets now; the
-- console's cases and lists later): who did what to what, before and after.
CREATE TABLE IF NOT EXISTS audit_log (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text NOT NULL,
    action       text NOT NULL,
    subject      text NOT NULL,
    before       jsonb,
    after        jsonb
);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at);

ALTER TABLE scored_events ADD COLUMN IF NOT EXISTS rules_version integer;
ALTER TABLE scored_events ADD COLUMN IF NOT EXISTS shadow_rules_version integer;
ALTER TABLE scored_events ADD COLUMN IF NOT EXISTS shadow_rules_score real;
ALTER TABLE scored_events ADD COLUMN IF NOT EXISTS shadow_triggered_rules jsonb;
