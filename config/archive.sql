-- archive.sql - the position archive in PostgreSQL (SPEC section 11): every published
-- position, one partition per UTC day.
--
-- Applied by the operator: psql -v ON_ERROR_STOP=1 -f archive.sql. Idempotent: applying it
-- again changes nothing in existing tables and re-creates the functions. It may go into the
-- mapping's database (schema.sql) or a database of its own.
--
-- gpsrelayd makes the coming days' partitions itself (gpsrelay_archive_add_days) and drops
-- expired days whole (gpsrelay_archive_drop_days): a day is one DROP TABLE, never a DELETE
-- of millions of rows that would leave as much dead space for VACUUM.
--
-- Writing, exactly once. COPY cannot skip rows that are already there, so a batch goes
-- into a staging table first and from there into positions with ON CONFLICT DO NOTHING,
-- in one transaction:
--
--     SELECT gpsrelay_archive_staging();          -- once per connection
--     BEGIN;
--     COPY pg_temp.gpsrelay_staging (device, time, ...) FROM STDIN;
--     SELECT * FROM gpsrelay_archive_move();      -- how many positions were new
--     COMMIT;
--
-- The staging table is emptied at every COMMIT (and a ROLLBACK takes its rows with it), so
-- COPY and the move must be in the same transaction: a COPY committed on its own is lost.
-- A batch written twice (a retry after a lost COMMIT, every node of a cluster offering the
-- same position) therefore adds each position once; the second move reports 0.

BEGIN;

-- A position as consoles receive it (docs/protocol.md "A position"), plus when the daemon
-- received it and the stream's epoch and seq at that moment (incident review: which
-- positions a console that reported {epoch, seq} had seen).
--
-- The natural key is (device, time): a unit has at most one position per fix time (the
-- daemon refuses a second one as a duplicate, and a cluster's message id is the same pair),
-- whichever node received it and however often it was sent; seq and rx_time differ between
-- nodes and retries, so they cannot be part of it. A unique index on a partitioned table
-- must hold the partition key, and time is both. The same index is the one a unit's track
-- wants (WHERE device = $1 AND time BETWEEN ... ORDER BY time), so there is no second one
-- to maintain on every insert.
--
-- device is COLLATE "C": ids are ASCII (schema.sql), and byte comparisons are the cheapest
-- for the index. No CHECKs: the daemon validated every value before publishing it, and a
-- row refused here is left out of the archive (the daemon logs and counts it).
CREATE TABLE IF NOT EXISTS positions (
    device  text COLLATE "C" NOT NULL,
    time    timestamptz NOT NULL,       -- fix time; microseconds hold the daemon's ms
    lat     double precision NOT NULL,  -- degrees, as the daemon holds them (not rounded)
    lon     double precision NOT NULL,
    speed   double precision,           -- m/s; NULL when the fix had none
    course  double precision,           -- degrees true
    alt     double precision,           -- metres above mean sea level
    hdop    double precision,
    sats    smallint,                   -- 0 to 255
    src     text NOT NULL,              -- nmea, taip or json
    attrs   jsonb,                      -- a JSON report's attrs object
    rx_time timestamptz NOT NULL,       -- when the accepting daemon received it
    epoch   text NOT NULL,              -- 16 hex digits, the stream's identity
    seq     bigint NOT NULL,
    CONSTRAINT positions_pkey PRIMARY KEY (device, time)
) PARTITION BY RANGE (time);

-- A position of a day with no partition (a modem's buffered fixes from last week, a clock
-- far off) lands here instead of failing its batch. gpsrelay_archive_add_days moves such
-- rows into their day's partition when it makes one; what remains here is never expired by
-- gpsrelay_archive_drop_days, and each partition made scans it, so it should stay small.
CREATE TABLE IF NOT EXISTS positions_default PARTITION OF positions DEFAULT;

-- The partitions of the UTC days from `today` to `today` + `ahead`; the daemon calls it on
-- each new connection and every 10 minutes. Days that have a partition are left alone (a
-- second call does nothing).
-- Returns the partitions made, and how many positions each took over from positions_default.
-- `today` is a parameter so that days in the past can be made (tests, backfills).
--
-- PostgreSQL refuses a new partition whose range holds rows of the DEFAULT partition. So
-- the day is made as a plain table, those rows are moved into it, and then it is attached.
-- positions_default is locked first (ACCESS EXCLUSIVE, which ATTACH needs anyway) so that
-- no writer can put another row of that day there in between; ATTACH itself needs only
-- SHARE UPDATE EXCLUSIVE on positions, which does not wait for writers. The lock is held
-- to the end of the caller's transaction, so call it in a short one of its own.
CREATE OR REPLACE FUNCTION gpsrelay_archive_add_days(
    ahead integer,
    today date DEFAULT (now() AT TIME ZONE 'UTC')::date)
RETURNS TABLE (partition text, moved bigint)
LANGUAGE plpgsql AS $$
DECLARE
    day date;
    lo  text;
    hi  text;
BEGIN
    IF ahead IS NULL OR ahead < 0 OR today IS NULL THEN
        RAISE EXCEPTION 'gpsrelay_archive_add_days: ahead must be 0 or more, today not NULL';
    END IF;
    FOR day IN SELECT d::date FROM generate_series(today, today + ahead, interval '1 day') d
    LOOP
        partition := 'positions_' || to_char(day, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(quote_ident(partition)) IS NOT NULL;
        LOCK TABLE positions_default IN ACCESS EXCLUSIVE MODE;
        -- Another session may have made it while this one waited for the lock.
        CONTINUE WHEN to_regclass(quote_ident(partition)) IS NOT NULL;
        -- Bounds written in UTC, whatever the session's TimeZone.
        lo := to_char(day, 'YYYY-MM-DD') || ' 00:00:00+00';
        hi := to_char(day + 1, 'YYYY-MM-DD') || ' 00:00:00+00';
        EXECUTE format('CREATE TABLE %I (LIKE positions INCLUDING DEFAULTS)', partition);
        EXECUTE format('WITH m AS (DELETE FROM positions_default
                                   WHERE time >= %L AND time < %L RETURNING *)
                        INSERT INTO %I SELECT * FROM m', lo, hi, partition);
        GET DIAGNOSTICS moved = ROW_COUNT;
        EXECUTE format('ALTER TABLE positions ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                       partition, lo, hi);
        RETURN NEXT;
    END LOOP;
END;
$$;

-- Drops every partition of positions whose range ends at or before `today` - `retention_days`
-- (00:00 UTC): those that hold only positions older than the retention. Today and the
-- retention_days whole days before it are kept. DROP TABLE, never DELETE. Returns the
-- partitions dropped. The bound is read from the catalogue, not the name, so a partition
-- the operator made by hand (a week, a month) goes once it has expired entirely; the
-- DEFAULT partition and one that ends at MAXVALUE never do.
CREATE OR REPLACE FUNCTION gpsrelay_archive_drop_days(
    retention_days integer,
    today date DEFAULT (now() AT TIME ZONE 'UTC')::date)
RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    cutoff timestamptz;
    part   text;
BEGIN
    IF retention_days IS NULL OR retention_days < 1 OR today IS NULL THEN
        RAISE EXCEPTION 'gpsrelay_archive_drop_days: retention_days must be 1 or more';
    END IF;
    cutoff := (today - retention_days)::timestamp AT TIME ZONE 'UTC';
    FOR part IN
        SELECT c.oid::regclass::text
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'positions'::regclass
          AND (substring(pg_get_expr(c.relpartbound, c.oid)
                         FROM 'TO \(''([^'']+)''\)'))::timestamptz <= cutoff
        ORDER BY c.relname
    LOOP
        -- IF EXISTS: another node may have dropped it since the loop read the catalogue.
        EXECUTE format('DROP TABLE IF EXISTS %s', part);
        RETURN NEXT part;
    END LOOP;
END;
$$;

-- Makes this connection's staging table, if it has none: a temporary table, not a shared
-- UNLOGGED one. Each connection (each node of a cluster) has its own, so batches never mix
-- and emptying one takes no lock that another writer waits for; a temporary table writes no
-- WAL, like UNLOGGED, and vanishes with its connection, so a daemon killed mid-batch leaves
-- nothing behind. ON COMMIT DELETE ROWS empties it at every commit without a TRUNCATE (no
-- new file, no catalogue change per batch). It has the columns of positions, none of its
-- keys: COPY takes duplicates, and the move drops them.
CREATE OR REPLACE FUNCTION gpsrelay_archive_staging() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF to_regclass('pg_temp.gpsrelay_staging') IS NULL THEN
        CREATE TEMPORARY TABLE gpsrelay_staging (LIKE positions) ON COMMIT DELETE ROWS;
    END IF;
END;
$$;

-- Moves the staged batch into positions, in the caller's transaction. Returns how many
-- positions were new (`moved`: those already archived, and repeats within the batch, are
-- skipped), and how many of those went into positions_default because their day has no
-- partition (`undated`: the daemon counts them). Rows go in key order: two nodes moving the
-- same positions at once then wait for each other key by key in the same order, where any
-- other order could deadlock (each holding an uncommitted key the other needs).
-- plpgsql, not sql: the staging table exists only in the writer's session, so the body
-- must not be checked when the function is made.
CREATE OR REPLACE FUNCTION gpsrelay_archive_move(OUT moved bigint, OUT undated bigint)
LANGUAGE plpgsql AS $$
BEGIN
    WITH added AS (
        INSERT INTO positions (device, time, lat, lon, speed, course, alt, hdop, sats, src,
                               attrs, rx_time, epoch, seq)
        SELECT device, time, lat, lon, speed, course, alt, hdop, sats, src, attrs,
               rx_time, epoch, seq
        FROM pg_temp.gpsrelay_staging
        ORDER BY device, time
        ON CONFLICT (device, time) DO NOTHING
        RETURNING tableoid)
    SELECT count(*), count(*) FILTER (WHERE tableoid = 'positions_default'::regclass)
    INTO moved, undated
    FROM added;
END;
$$;

COMMIT;
