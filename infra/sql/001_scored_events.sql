-- One row per scored event. event_id is the idempotency key: a re-delivered
-- event never creates a second row (the job inserts with ON CONFLICT DO NOTHING).
CREATE TABLE IF NOT EXISTS scored_events (
    event_id                text PRIMARY KEY,
    user_id                 text NOT NULL,
    amount                  numeric(12, 2) NOT NULL CHECK (amount >= 0),
    currency                char(3) NOT NULL,
    event_time              timestamptz NOT NULL,
    merchant_name           text,
    merchant_category       text,
    latitude                double precision,
    longitude               double precision,
    country                 char(2),
    city                    text,
    device_id               text,
    ip_address              text,
    user_agent              text,
    attributes              jsonb NOT NULL DEFAULT '{}'::jsonb,
    fraud_score             real NOT NULL CHECK (fraud_score BETWEEN 0 AND 100),
    risk_level              text NOT NULL CHECK (risk_level IN ('LOW', 'MEDIUM', 'HIGH')),
    decision                text NOT NULL CHECK (decision IN ('approve', 'review', 'block')),
    is_blocked              boolean NOT NULL,
    triggered_rules         jsonb NOT NULL,
    reasons                 jsonb NOT NULL,
    rules_score             real,
    isolation_forest_score  real,
    autoencoder_score       real,
    model_version           text NOT NULL,
    features                jsonb NOT NULL,
    ingested_at             timestamptz,
    scored_at               timestamptz NOT NULL,
    processing_ms           real NOT NULL,
    written_at              timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS scored_events_user_time ON scored_events (user_id, event_time DESC);
CREATE INDEX IF NOT EXISTS scored_events_alerts ON scored_events (event_time DESC)
    WHERE risk_level <> 'LOW';
CREATE INDEX IF NOT EXISTS scored_events_scored_at ON scored_events (scored_at);
