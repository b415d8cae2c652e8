-- schema.sql - the device-to-agency mapping in PostgreSQL (docs/mapping.md).
--
-- Applied by the operator: psql -v ON_ERROR_STOP=1 -f schema.sql. Idempotent: applying it
-- again changes nothing in existing tables and re-creates the functions and triggers.
--
-- gpsrelayd LISTENs on gpsrelay_mapping and reloads the whole mapping when told; the
-- payload is only the table name (a hint for logs, never needed). Triggers are
-- statement-level: a 10,000-row import is one notification per statement, not 10,000,
-- and PostgreSQL folds identical notifications of one transaction into one anyway.

BEGIN;

-- The CHECKs mirror what gpsrelayd accepts (src/mapping/), so a bad row is refused when
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

-- gpsrelayd takes an IPv4-mapped IPv6 address (::ffff:10.0.0.7) as the IPv4 address
-- (a dual-stack socket reports IPv4 senders so), but inet holds two different values, so
-- UNIQUE would let two devices share one sender. Added apart from CREATE TABLE so that it
-- reaches tables made by an older schema.sql too: NOT VALID first (existing rows are not
-- checked), then VALIDATE, which warns instead of failing when a row already breaks it;
-- the daemon leaves such an address to neither device (gpsrelay_mapping_rows_rejected_total)
-- until it is fixed and this file applied again.
DO $$
BEGIN
    BEGIN
        ALTER TABLE devices ADD CONSTRAINT devices_source_addr_not_v4_mapped
            CHECK (NOT (family(source_addr) = 6 AND source_addr <<= '::ffff:0.0.0.0/96'))
            NOT VALID;
    EXCEPTION WHEN duplicate_object THEN
        NULL; -- added by an earlier run
    END;
    BEGIN
        ALTER TABLE devices VALIDATE CONSTRAINT devices_source_addr_not_v4_mapped;
    EXCEPTION WHEN check_violation THEN
        RAISE WARNING 'devices: some source_addr is an IPv4-mapped IPv6 address (::ffff:a.b.c.d); '
            'write it as a.b.c.d and apply schema.sql again';
    END;
END;
$$;

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
