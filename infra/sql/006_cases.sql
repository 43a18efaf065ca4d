-- The console's review queue (docs/console.md). Every MEDIUM/HIGH alert becomes
-- one case, keyed by event_id (a re-delivered alert adds nothing). A case moves
-- open -> assigned -> closed; every change is a case_events row, and every
-- change made by a person is also an audit_log row. Changes are announced on the
-- NOTIFY channel fraudstream_cases, so every console replica can push them live.
CREATE TABLE IF NOT EXISTS cases (
    event_id       text PRIMARY KEY,
    user_id        text NOT NULL,
    risk_level     text NOT NULL CHECK (risk_level IN ('MEDIUM', 'HIGH')),
    fraud_score    real NOT NULL,
    priority       integer NOT NULL,
    decision       text NOT NULL,
    status         text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'assigned', 'closed')),
    assignee       text,
    disposition    text CHECK (disposition IN ('fraud', 'legitimate')),
    resolution     text,
    resolved_by    text,
    resolved_at    timestamptz,
    decided_at     timestamptz NOT NULL,
    due_at         timestamptz NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    alert          jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS cases_queue ON cases (status, priority DESC, due_at) WHERE status <> 'closed';
CREATE INDEX IF NOT EXISTS cases_user ON cases (user_id);

CREATE TABLE IF NOT EXISTS case_events (
    id         bigserial PRIMARY KEY,
    event_id   text NOT NULL REFERENCES cases (event_id),
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,
    action     text NOT NULL,
    detail     jsonb
);
CREATE INDEX IF NOT EXISTS case_events_case ON case_events (event_id, id);

-- Analysts and their bearer tokens (only the SHA-256 of a token is kept).
CREATE TABLE IF NOT EXISTS analysts (
    name          text PRIMARY KEY,
    role          text NOT NULL CHECK (role IN ('analyst', 'admin')),
    token_sha256  text NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL,
    revoked_at    timestamptz
);

-- Who put each value on a live list and why; the Redis sets stay what the job
-- reads (a value added to Redis directly shows up without a row here).
CREATE TABLE IF NOT EXISTS list_entries (
    list       text NOT NULL,
    value      text NOT NULL,
    added_by   text NOT NULL,
    reason     text NOT NULL,
    added_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (list, value)
);

CREATE OR REPLACE FUNCTION fraudstream_case_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('fraudstream_cases', json_build_object(
        'event_id', NEW.event_id, 'change', lower(TG_OP), 'status', NEW.status,
        'risk_level', NEW.risk_level, 'assignee', NEW.assignee)::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS cases_changed ON cases;
CREATE TRIGGER cases_changed AFTER INSERT OR UPDATE ON cases
    FOR EACH ROW EXECUTE FUNCTION fraudstream_case_changed();
