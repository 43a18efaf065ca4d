-- scored_events partitioned by event day (UTC), so a month of history is thirty
-- tables, and retention drops whole days instead of deleting rows
-- (docs/operations.md, "Retention"). A partition is created when the first event
-- of its day is written (fraudstream_day_partition, called by the job's sink).
-- The primary key must hold the partition key: (event_id, event_time). A
-- re-delivered event has the same time, so it still adds nothing; the job's
-- id memory keeps an event_id to one verdict (docs/contract.md).
--
-- Existing rows move into the new table, one day partition each. On a large
-- table this migration takes a while (it copies every row once); run it in a
-- maintenance window.
ALTER TABLE scored_events RENAME TO scored_events_unpartitioned;
ALTER TABLE scored_events_unpartitioned RENAME CONSTRAINT scored_events_pkey TO scored_events_unpartitioned_pkey;
ALTER INDEX scored_events_user_time RENAME TO scored_events_unpartitioned_user_time;
ALTER INDEX scored_events_alerts RENAME TO scored_events_unpartitioned_alerts;
ALTER INDEX scored_events_scored_at RENAME TO scored_events_unpartitioned_scored_at;

CREATE TABLE scored_events (LIKE scored_events_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (event_time);
ALTER TABLE scored_events ADD PRIMARY KEY (event_id, event_time);
CREATE INDEX scored_events_user_time ON scored_events (user_id, event_time DESC);
CREATE INDEX scored_events_alerts ON scored_events (event_time DESC) WHERE risk_level <> 'LOW';
CREATE INDEX scored_events_scored_at ON scored_events (scored_at);

-- The partition that holds `day` (UTC), created if missing; its name.
CREATE OR REPLACE FUNCTION fraudstream_day_partition(day date) RETURNS text AS $$
DECLARE
    name text := format('scored_events_%s', to_char(day, 'YYYYMMDD'));
BEGIN
    IF to_regclass(name) IS NULL THEN
        PERFORM pg_advisory_xact_lock(hashtext('fraudstream_day_partition'));
        EXECUTE format(
            'CREATE TABLE IF NOT EXISTS %I PARTITION OF scored_events FOR VALUES FROM (%L) TO (%L)',
            name, (day::timestamp AT TIME ZONE 'UTC'), ((day + 1)::timestamp AT TIME ZONE 'UTC'));
    END IF;
    RETURN name;
END;
$$ LANGUAGE plpgsql;

SELECT fraudstream_day_partition(d)
FROM (SELECT DISTINCT (event_time AT TIME ZONE 'UTC')::date AS d FROM scored_events_unpartitioned) days;
INSERT INTO scored_events SELECT * FROM scored_events_unpartitioned;
DROP TABLE scored_events_unpartitioned;

-- Labelled events outlive retention: before a day is dropped, its rows that
-- carry a label move here, so training and evaluation keep them.
CREATE TABLE IF NOT EXISTS scored_events_labelled (LIKE scored_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE scored_events_labelled ADD PRIMARY KEY (event_id, event_time);
