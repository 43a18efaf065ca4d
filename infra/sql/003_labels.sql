-- Fraud labels (chargebacks, analyst decisions, confirmations), written by the
-- job as they arrive on the labels topic and by `fraudstream label`. A label is
-- identified by (event_id, source, label_time): the same label sent twice adds
-- nothing. An event's label at time T is its latest label with label_time <= T.
CREATE TABLE IF NOT EXISTS labels (
    event_id     text NOT NULL,
    is_fraud     boolean NOT NULL,
    label_time   timestamptz NOT NULL,
    source       text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, source, label_time)
);
CREATE INDEX IF NOT EXISTS labels_label_time ON labels (label_time);

-- The merchant or terminal id of the event (the key of merchant risk windows,
-- with merchant_name as the fallback), and the supervised model's score.
ALTER TABLE scored_events ADD COLUMN IF NOT EXISTS merchant_id text;
ALTER TABLE scored_events ADD COLUMN IF NOT EXISTS supervised_score real;
