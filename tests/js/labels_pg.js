// labels_pg.js - unit labels from a PostgreSQL mapping whose database is not UTF-8: the
// daemon asks for UTF-8 (client_encoding), so a LATIN1 database's "Médic ün" reaches a
// console's join reply as "Médic ün"; an operator who overrides client_encoding with
// LATIN1 gets the row left out and counted (a label that is not UTF-8 would break a
// browser's WebSocket), the other units unharmed.
//
// usage: node labels_pg.js /path/to/gpsrelayd
"use strict";

const path = require("node:path");
const { Socket } = require("phoenix");
const WebSocket = require("ws");
const { Daemon, check, report, WAIT_MS } = require("./daemon");
const { Pg } = require("./pg");

const BINARY = process.argv[2];
const SCHEMA = path.join(__dirname, "..", "..", "config", "schema.sql");

function joinUnits(d, topic) {
    return new Promise((resolve, reject) => {
        const socket = new Socket(`ws://127.0.0.1:${d.ports.ws}/socket`, { transport: WebSocket });
        socket.connect();
        const timer = setTimeout(() => reject(new Error(`no join reply on ${topic}`)), WAIT_MS);
        socket.channel(topic, {}).join().receive("ok", (r) => {
            clearTimeout(timer);
            socket.disconnect();
            resolve(r.units);
        });
    });
}

async function withDaemon(conninfo, body) {
    const d = await Daemon.create(BINARY, "device_id,agency_id,label,source_addr\n");
    d.write("gpsrelay.conf", `listen_udp 127.0.0.1:${d.ports.udp}\nlisten_ws 127.0.0.1:${d.ports.ws}\n` +
        `postgres "${conninfo}"\nauth none\nlog_level warning\n`);
    await d.start();
    try {
        await body(d);
    } finally {
        check(await d.stop() === 0, "daemon exits 0");
        d.cleanup();
    }
}

async function main() {
    const pg = await Pg.create();
    try {
        await pg.sql("CREATE DATABASE l1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' " +
            "TEMPLATE template0");
        await pg.psql(["-d", "l1", "-q", "-f", SCHEMA]);
        // psql sends each statement on its own, so the SET applies to the INSERTs' text.
        await pg.psql(["-d", "l1", "-q", "-f", "-"], "SET client_encoding TO 'UTF8';\n" +
            "INSERT INTO agencies (id) VALUES ('ems');\n" +
            "INSERT INTO devices (id, label) VALUES ('AMB-1', 'Médic ün'), ('AMB-2', 'Medic 2');\n" +
            "INSERT INTO device_agencies VALUES ('AMB-1', 'ems'), ('AMB-2', 'ems');\n");
        const stored = await pg.psql(["-d", "l1", "-A", "-t", "-c",
            "SELECT convert_to(label, 'LATIN1') FROM devices WHERE id = 'AMB-1'"]);
        check(stored.trim() === "\\x4de964696320fc6e", `stored as LATIN1 bytes (${stored.trim()})`);

        const conninfo = pg.conninfo.replace("dbname=postgres", "dbname=l1");
        await withDaemon(conninfo, async (d) => {
            const units = await joinUnits(d, "agency:ems");
            check(JSON.stringify(units) === JSON.stringify([{ device: "AMB-1", label: "Médic ün" },
                { device: "AMB-2", label: "Medic 2" }]), `converted to UTF-8: ${JSON.stringify(units)}`);
        });
        await withDaemon(`${conninfo} client_encoding=LATIN1`, async (d) => {
            const units = await joinUnits(d, "agency:ems");
            check(JSON.stringify(units) === JSON.stringify([{ device: "AMB-2", label: "Medic 2" }]),
                `LATIN1 asked for: AMB-1 left out (${JSON.stringify(units)})`);
            check(await d.metric("gpsrelay_mapping_rows_rejected_total") === 1, "and counted");
        });
    } finally {
        await pg.destroy();
    }
    report();
}

main().catch((e) => { console.error(e); process.exit(1); });
