-- scored_events.features holds json, not jsonb. The job writes one features
-- document (about 1.2 KB: the user's features and the 27 risk-window counts) per
-- event and reads it back rarely and whole (the console's case view, champion
-- training, evaluation). jsonb parses every document into its binary form on
-- write: about 12 of Postgres's 23 microseconds per row in the job's COPY, against
-- about 6 as json, which keeps the text (docs/benchmarks.md, "scored_events.features
-- as json"). ->> and the other json operators read it as before.
--
-- This rewrites the table once; on a large table, run it in a maintenance window.
ALTER TABLE scored_events ALTER COLUMN features TYPE json USING features::json;
ALTER TABLE scored_events_labelled ALTER COLUMN features TYPE json USING features::json;
