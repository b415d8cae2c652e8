-- schema.sql - the device-to-agency mapping in PostgreSQL (SPEC section 7).
--
-- Applied by the operator: psql -v ON_ERROR_STOP=1 -f schema.sql. Idempotent: applying it
-- again changes nothing in existing tables and re-creates the functions and triggers.
--
-- gpsrelayd LISTENs on gpsrelay_mapping and reloads the whole mapping when told; the
-- payload is only the table name (a hint for logs, never needed). Triggers are
-- statement-level: a 10,000-row import is one notification per statement, not 10,000,
-- and PostgreSQL folds identical notifications of one transaction into one anyway.

BEGIN;

-- The CHECKs mirror what gpsrelayd accepts (src/mapping.c), so a bad row is refused when
-- it is written instead of failing the daemon's next reload. Ids end up in topic names
-- ("agency:<id>"), so agency ids get no ':' or '@'.
CREATE TABLE IF NOT EXISTS agencies (
    id   text PRIMARY KEY
         CONSTRAINT agencies_id_format CHECK (id ~ '^[A-Za-z0-9._-]{1,64}$'),
    name text NOT NULL DEFAULT ''
);

CREATE TABLE IF NOT EXISTS devices (
    id          text PRIMARY KEY
                CONSTRAINT devices_id_format CHECK (id ~ '^[A-Za-z0-9._:@-]{1,64}$'),
    label       text NOT NULL DEFAULT ''
                -- 128 bytes (GR_LABEL_MAX); no line breaks, so the CSV cache holds it.
                CONSTRAINT devices_label_format
                    CHECK (octet_length(label) <= 128 AND label !~ '[\r\n]'),
    -- A single host, not a network: positions are matched by the sender's address.
    source_addr inet UNIQUE
                CONSTRAINT devices_source_addr_host
                    CHECK (masklen(source_addr) = CASE family(source_addr)
                                                  WHEN 4 THEN 32 ELSE 128 END)
);

CREATE TABLE IF NOT EXISTS device_agencies (
    device_id text NOT NULL REFERENCES devices ON DELETE CASCADE,
    agency_id text NOT NULL REFERENCES agencies ON DELETE CASCADE,
    PRIMARY KEY (device_id, agency_id)
);

-- The primary key serves lookups by device; this one serves "devices of an agency" and
-- the cascade when an agency is deleted (otherwise a sequential scan per agency row).
CREATE INDEX IF NOT EXISTS device_agencies_agency_id_idx ON device_agencies (agency_id);

CREATE OR REPLACE FUNCTION gpsrelay_mapping_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('gpsrelay_mapping', TG_TABLE_NAME);
    RETURN NULL;
END;
$$;

-- Cascaded deletes run as their own statements on device_agencies, so its trigger fires
-- for them too (tests/pg/test_schema.sh checks it). TRUNCATE is a change like any other.
DROP TRIGGER IF EXISTS gpsrelay_mapping_notify ON agencies;
CREATE TRIGGER gpsrelay_mapping_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON agencies
    FOR EACH STATEMENT EXECUTE FUNCTION gpsrelay_mapping_notify();

DROP TRIGGER IF EXISTS gpsrelay_mapping_notify ON devices;
CREATE TRIGGER gpsrelay_mapping_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON devices
    FOR EACH STATEMENT EXECUTE FUNCTION gpsrelay_mapping_notify();

DROP TRIGGER IF EXISTS gpsrelay_mapping_notify ON device_agencies;
CREATE TRIGGER gpsrelay_mapping_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON device_agencies
    FOR EACH STATEMENT EXECUTE FUNCTION gpsrelay_mapping_notify();

COMMIT;
