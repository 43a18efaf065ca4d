-- Analyst explanations of alerts, written by `fraudstream explain` (never by the scoring job).
CREATE TABLE IF NOT EXISTS alert_explanations (
    event_id         text PRIMARY KEY,
    text             text NOT NULL,
    model            text,
    source           text NOT NULL CHECK (source IN ('claude', 'template')),
    fallback_reason  text,
    latency_ms       real NOT NULL,
    input_tokens     integer NOT NULL DEFAULT 0,
    output_tokens    integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS alert_explanations_created ON alert_explanations (created_at);
