-- Champion/challenger: the challenger's ensemble score, computed in shadow on
-- the same events (never used for the decision), and every promotion decision
-- with the numbers it was taken on.
ALTER TABLE scored_events ADD COLUMN IF NOT EXISTS challenger_version text;
ALTER TABLE scored_events ADD COLUMN IF NOT EXISTS challenger_score real;

CREATE TABLE IF NOT EXISTS model_promotions (
    id                   bigserial PRIMARY KEY,
    decided_at           timestamptz NOT NULL DEFAULT now(),
    champion_version     text NOT NULL,
    challenger_version   text NOT NULL,
    promoted             boolean NOT NULL,
    reason               text NOT NULL,
    champion_ap          double precision,
    challenger_ap        double precision,
    margin               double precision NOT NULL,
    events               integer NOT NULL,
    frauds               integer NOT NULL,
    window_start         timestamptz,
    window_end           timestamptz
);
