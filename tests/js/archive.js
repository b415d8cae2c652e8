// archive.js - the position archive against a real PostgreSQL (started here): positions in
// are rows out, value for value; partitions made and expired by the daemon; nothing lost
// and nothing twice through an outage of 30 s under load, a hung server, a SIGTERM and a
// kill -9 in the middle of a batch; a spool that is not one refused.
//
//   node archive.js GPSRELAYD
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const { spawnSync } = require("node:child_process");
const { Daemon, check, report, WAIT_MS } = require("./daemon");
const { waitFor } = require("./cluster_lib");
const { Pg } = require("./pg");

const binary = process.argv[2];
const UNITS = 20;
const csv = "device_id,agency_id,label,source_addr\n" +
    Array.from({ length: UNITS }, (_, i) => `U-${String(i).padStart(2, "0")},ems,Unit ${i},\n`)
        .join("");

function log(...args) { console.log(`[${new Date().toISOString()}]`, ...args); }

// Whatever happens, no daemon started here outlives the test (ctest would wait for it).
const daemons = [];
process.on("exit", () => {
    for (const d of daemons) if (d.child && d.child.exitCode === null) d.child.kill("SIGKILL");
});

async function archiveDaemon(pg, extra = "") {
    const d = await Daemon.create(binary, csv,
        `auth none\ningest_rate_limit 10000\n` +
        `archive_postgres "${pg.conninfo}"\n${extra}`);
    daemons.push(d);
    d.spool = path.join(d.dir, "archive.spool");
    d.write("gpsrelay.conf", fs.readFileSync(path.join(d.dir, "gpsrelay.conf"), "utf8") +
        `archive_spool ${d.spool}\n`);
    return d;
}

// A JSON report; every one the daemon accepts (a new fix time per unit, a few cm a second
// from the last: far under max_speed), so published counts them all.
const BASE_MS = Date.now() - 86400000;
function report1(id, ms, extra = {}) {
    return JSON.stringify({ id, time: new Date(ms).toISOString(), lat: 40 + (ms - BASE_MS) / 1e9,
        lon: -74 - (ms - BASE_MS) / 2e9, ...extra }) + "\n";
}

// Sends reports for every unit, one fix time per tick, `perSecond` reports a second,
// until stop() says so; resolves with how many were sent.
function load(d, perSecond, t0) {
    let sent = 0, stopped = false, tick = 0;
    const done = (async () => {
        const every = 1000 / (perSecond / UNITS);
        let next = Date.now();
        while (!stopped) {
            const ms = t0 + tick * 1000;
            for (let u = 0; u < UNITS; u++)
                await d.send(report1(`U-${String(u).padStart(2, "0")}`, ms));
            sent += UNITS;
            tick++;
            next += every;
            await new Promise((r) => setTimeout(r, Math.max(0, next - Date.now())));
        }
        return sent;
    })();
    return { stop: () => { stopped = true; return done; }, sent: () => sent };
}

const metric = (d, m) => d.metric(m);
const published = (d) => metric(d, "gpsrelay_positions_published_total");

// Sends `ticks` reports of every unit from fix time t0 on, one tick at a time, each once the
// daemon has published the last: no burst for the kernel to drop (a sanitizer build is slow
// to read its socket). Resolves with how many it sent, all of them published.
async function sendTicks(d, t0, ticks) {
    const before = await published(d);
    for (let i = 0; i < ticks; i++) {
        for (let u = 0; u < UNITS; u++)
            await d.send(report1(`U-${String(u).padStart(2, "0")}`, t0 + i * 1000));
        await waitFor("the tick published", WAIT_MS, async () =>
            (await published(d)) === before + (i + 1) * UNITS);
    }
    return ticks * UNITS;
}

// Waits until the daemon has taken in what was sent: its published count holding still for
// 200 ms (UDP gives no other end to wait for). Resolves with the count.
async function settled(d) {
    let last = -1, same = 0;
    await waitFor("published settled", WAIT_MS, async () => {
        const n = await published(d);
        same = n === last ? same + 1 : 0;
        last = n;
        return same >= 4;
    }, 50);
    return last;
}

// Every accepted position archived: nothing queued, written + what was there already.
async function drained(d, ms = 60000) {
    await waitFor("the archive drained", ms, async () =>
        (await metric(d, "gpsrelay_archive_queued")) === 0 &&
        (await metric(d, "gpsrelay_archive_up")) === 1);
}

async function rowCount(pg, where = "true") {
    return Number((await pg.sql(`SELECT count(*) FROM positions WHERE ${where}`)).trim());
}

// Waits until everything the daemon published has reached its spool file: the loop hands
// its appends over every 20 ms (GR_SPOOL_FLUSH_MS), so the backlog's size holding still for
// 200 ms after the last position was published means it is all in the file.
async function spooled(d) {
    await settled(d);
    let last = -1, same = 0;
    await waitFor("the spool written", WAIT_MS, async () => {
        const b = await metric(d, "gpsrelay_archive_spool_bytes");
        same = b === last ? same + 1 : 0;
        last = b;
        return same >= 4;
    }, 50);
}

async function exactValues(pg) {
    log("-t, then exact values");
    const d = await archiveDaemon(pg);
    const conf = path.join(d.dir, "gpsrelay.conf");
    let t = spawnSync(binary, ["-t", "-c", conf], { encoding: "utf8", timeout: WAIT_MS });
    check(t.status === 0 && /archive schema in place/.test(t.stdout), `-t: ${t.stdout}${t.stderr}`);
    await pg.sql("CREATE DATABASE empty");
    fs.writeFileSync(conf, fs.readFileSync(conf, "utf8").replace("dbname=postgres", "dbname=empty"));
    t = spawnSync(binary, ["-t", "-c", conf], { encoding: "utf8", timeout: WAIT_MS });
    check(t.status === 1 && /archive.sql is not applied/.test(t.stderr), `-t, no schema: ${t.stderr}`);
    fs.writeFileSync(conf, fs.readFileSync(conf, "utf8").replace("dbname=empty", "dbname=postgres"));
    await d.start();
    t = Date.now() - 5000;
    const sent = [
        { id: "U-01", time: new Date(t).toISOString(), lat: 40.712812345678901, lon: -74.00601234567891,
            speed: 12.34, course: 271.5, alt: -10.25, hdop: 0.9, sats: 9,
            attrs: { siren: true, note: "tab\there \\ and ü", n: 1.5 } },
        { id: "U-02", time: new Date(t + 1).toISOString(), lat: -33.8688197, lon: 151.2092955 },
        { id: "U-03", time: new Date(t + 2).toISOString(), lat: 0.1, lon: -179.9999999, speed: 0,
            course: 360, alt: -1000, hdop: 99.99, sats: 255 },
    ];
    for (const r of sent) await d.send(JSON.stringify(r) + "\n");
    await waitFor("3 written", WAIT_MS, async () =>
        (await metric(d, "gpsrelay_archive_written_total")) === 3);
    const rows = (await pg.sql(`SELECT device, to_char(time AT TIME ZONE 'UTC',
        'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), lat, lon, speed, course, alt, hdop, sats, src,
        attrs::text, seq, epoch, extract(epoch FROM rx_time) * 1000
        FROM positions ORDER BY seq`)).trim().split("\n").map((l) => l.split("|"));
    check(rows.length === 3, `3 rows (got ${rows.length})`);
    const num = (v) => (v === undefined ? "" : String(v));
    for (let i = 0; i < sent.length && i < rows.length; i++) {
        const r = sent[i], row = rows[i];
        const want = [r.id, r.time, num(r.lat), num(r.lon), num(r.speed), num(r.course),
            num(r.alt), num(r.hdop), num(r.sats), "json"];
        check(JSON.stringify(row.slice(0, 10)) === JSON.stringify(want),
            `row ${i} exact: ${row.slice(0, 10).join("|")} vs ${want.join("|")}`);
        const attrs = row[10] ? JSON.parse(row[10]) : undefined;
        check(JSON.stringify(attrs) === JSON.stringify(r.attrs === undefined ? undefined :
            Object.fromEntries(Object.entries(r.attrs).sort())), `row ${i} attrs: ${row[10]}`);
        check(/^[0-9a-f]{16}$/.test(row[12]), `row ${i} epoch ${row[12]}`);
        check(Math.abs(Number(row[13]) - Date.now()) < 60000, `row ${i} rx_time`);
    }
    check(rows.map((r) => Number(r[11])).join() === "1,2,3", "seqs 1, 2, 3");
    check((await d.stop()) === 0, "SIGTERM exits 0");
    d.cleanup();
    await pg.sql("TRUNCATE positions");
}

async function partitions(pg) {
    log("partitions made and expired");
    // Days 100 to 97 ago, as a daemon running then would have made them, with a position.
    await pg.sql("SELECT count(*) FROM gpsrelay_archive_add_days(3, current_date - 100)");
    await pg.sql(`INSERT INTO positions VALUES ('U-05', now() - interval '99 days', 1, 2, NULL,
        NULL, NULL, NULL, NULL, 'nmea', NULL, now() - interval '99 days', 'x', 1)`);
    const names = async () => (await pg.sql(`SELECT string_agg(c.relname, ' ' ORDER BY c.relname)
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'positions'::regclass`)).trim();
    const day = (n) => new Date(Date.now() + n * 86400000).toISOString().slice(0, 10)
        .replace(/-/g, "");
    const old = (await names()).split(" ").filter((n) => n < `positions_${day(-96)}`);
    check(old.length === 4, `4 old days: ${await names()}`);
    const d = await archiveDaemon(pg, "archive_retention_days 90\n");
    await d.start();
    const want = `positions_${day(0)} positions_${day(1)} positions_${day(2)} positions_default`;
    await waitFor("the partitions made and expired", WAIT_MS, async () => (await names()) === want);
    check((await rowCount(pg)) === 0, "the old day's position went with its partition");
    // A modem's buffered fix from 10 days ago: no partition for that day.
    await d.send(report1("U-06", Date.now() - 10 * 86400000));
    await waitFor("the undated position counted", WAIT_MS, async () =>
        (await metric(d, "gpsrelay_archive_undated_total")) === 1);
    check((await rowCount(pg, "tableoid = 'positions_default'::regclass")) === 1,
        "it is in positions_default");
    // One from before the retention would never expire there: not archived, counted.
    await d.send(report1("U-07", Date.now() - 95 * 86400000));
    await waitFor("the expired position counted", WAIT_MS, async () =>
        (await metric(d, "gpsrelay_archive_expired_total")) === 1);
    check((await rowCount(pg)) === 1, "...and not archived");
    check((await d.stop()) === 0, "SIGTERM exits 0");
    d.cleanup();
    await pg.sql("TRUNCATE positions");
}

// A batch with a position archived already (a batch sent again after its COMMIT went
// through unanswered): the fast COPY straight into positions conflicts, and the batch goes
// again through staging and the move, which skips that one.
async function conflict(pg) {
    log("a batch with a position archived already");
    const d = await archiveDaemon(pg);
    await d.start();
    const t0 = Date.now() - 30000;
    await pg.sql(`INSERT INTO positions VALUES ('U-04', '${new Date(t0 + 1000).toISOString()}',
        1, 2, NULL, NULL, NULL, NULL, NULL, 'nmea', NULL, now(), 'x', 1)`);
    const sent = await sendTicks(d, t0, 3);
    await drained(d);
    check((await rowCount(pg)) === sent, `every position once: ${await rowCount(pg)} of ${sent}`);
    check((await metric(d, "gpsrelay_archive_duplicates_total")) === 1 &&
        (await metric(d, "gpsrelay_archive_written_total")) === sent - 1,
        "the one there already skipped, the rest written");
    check((await pg.sql("SELECT lat FROM positions WHERE device = 'U-04' AND epoch = 'x'")).trim()
        === "1", "the first row of a key stays");
    check((await d.stop()) === 0, "SIGTERM exits 0");
    d.cleanup();
    await pg.sql("TRUNCATE positions");
}

// A row PostgreSQL refuses (here a CHECK the operator added) is left out, counted and
// logged; the rest of its batch is archived, and the archive goes on.
async function refusedRow(pg) {
    log("a row refused");
    await pg.sql("ALTER TABLE positions ADD CONSTRAINT not_u13 CHECK (device <> 'U-13')");
    const d = await archiveDaemon(pg);
    await d.start();
    const t0 = Date.now() - 60000;
    const sent = await sendTicks(d, t0, 3);
    await drained(d);
    check((await metric(d, "gpsrelay_archive_refused_total")) === 3, "U-13's 3 positions refused");
    check((await metric(d, "gpsrelay_archive_duplicates_total")) === 0, "...not counted as duplicates");
    check((await rowCount(pg)) === sent - 3, `the rest archived: ${await rowCount(pg)} of ${sent}`);
    await d.send(report1("U-01", t0 + 10000));
    await waitFor("and on", WAIT_MS, async () => (await rowCount(pg)) === sent - 2);
    check((await d.stop()) === 0, "SIGTERM exits 0");
    d.cleanup();
    await pg.sql("ALTER TABLE positions DROP CONSTRAINT not_u13; TRUNCATE positions");
}

// PostgreSQL stopped for 30 s, then frozen (SIGSTOP) past the daemon's bound on silence,
// all under load: afterwards every published position is a row, once.
async function outage(pg) {
    log("an outage of 30 s and a hung server, under load");
    const d = await archiveDaemon(pg);
    await d.start();
    const l = load(d, 200, Date.now() - 3600000);
    await waitFor("archiving", WAIT_MS, async () =>
        (await metric(d, "gpsrelay_archive_written_total")) > 100);
    await pg.stop();
    log("postgres stopped");
    await waitFor("archive down", WAIT_MS, async () => (await metric(d, "gpsrelay_archive_up")) === 0);
    await new Promise((r) => setTimeout(r, 30000));
    check((await metric(d, "gpsrelay_archive_spool_bytes")) > 0, "positions wait in the spool");
    await pg.start();
    log("postgres started");
    await waitFor("archive up", 40000, async () => (await metric(d, "gpsrelay_archive_up")) === 1);
    await pg.freeze();
    log("postgres frozen");
    await waitFor("the hung server noticed", 40000, async () =>
        (await metric(d, "gpsrelay_archive_timeouts_total")) >= 1);
    await pg.thaw();
    log("postgres thawed");
    const sent = await l.stop();
    const accepted = await settled(d);
    await drained(d, 90000);
    const rows = await rowCount(pg);
    check(rows === accepted && accepted > 0,
        `every position once after the outage: ${rows} rows, ${accepted} published (${sent} sent)`);
    check((await metric(d, "gpsrelay_archive_dropped_total")) === 0, "none dropped");
    check((await d.stop()) === 0, "SIGTERM exits 0");
    d.cleanup();
    await pg.sql("TRUNCATE positions");
}

// A restart of the daemon itself: SIGTERM while PostgreSQL is down, then kill -9 while a
// batch is in flight (PostgreSQL frozen under it). Everything comes back from the spool.
async function restarts(pg) {
    log("SIGTERM and kill -9 with positions waiting");
    const d = await archiveDaemon(pg);
    await d.start();
    await pg.stop();
    const t0 = Date.now() - 7200000;
    const sent = await sendTicks(d, t0, 50);
    await spooled(d);
    check((await d.stop()) === 0, "SIGTERM exits 0 with PostgreSQL down");
    await pg.start();

    await d.start();
    await drained(d);
    check((await rowCount(pg)) === sent, `after SIGTERM: ${await rowCount(pg)} rows, ${sent} sent`);

    // Frozen under a batch: the daemon sends one and waits for its answer, then dies.
    const l = load(d, 400, t0 + 100000);
    await waitFor("archiving", WAIT_MS, async () =>
        (await metric(d, "gpsrelay_archive_written_total")) > sent + 200);
    await pg.freeze();
    await new Promise((r) => setTimeout(r, 500)); // let positions queue behind the batch
    const more = await l.stop();
    const accepted = await spooled(d).then(() => published(d));
    const batches = await metric(d, "gpsrelay_archive_batch_seconds_count");
    d.child.kill("SIGKILL");
    await d.exited;
    log(`killed with ${accepted} published (${more} sent), ${batches} batches done`);
    await pg.thaw();
    await d.start();
    await drained(d);
    const rows = await rowCount(pg);
    check(rows === sent + accepted,
        `after kill -9: ${rows} rows, ${sent} + ${accepted} published (${more} sent to the killed daemon)`);
    check((await rowCount(pg, "true GROUP BY device, time HAVING count(*) > 1")) === 0,
        "no position twice");
    check((await d.stop()) === 0, "SIGTERM exits 0");

    // A file that is not a spool is refused, never truncated.
    fs.writeFileSync(d.spool, "not a spool\n");
    const r = spawnSync(binary, ["-c", path.join(d.dir, "gpsrelay.conf")], { encoding: "utf8",
        timeout: WAIT_MS });
    check(r.status !== 0 && /archive_spool/.test(r.stderr), `a foreign spool refused: ${r.stderr}`);
    check(fs.readFileSync(d.spool, "utf8") === "not a spool\n", "...and left as it was");
    d.cleanup();
    await pg.sql("TRUNCATE positions");
}

(async () => {
    const pg = await Pg.create();
    try {
        await pg.applyArchive();
        await exactValues(pg);
        await partitions(pg);
        await refusedRow(pg);
        await conflict(pg);
        await restarts(pg);
        await outage(pg);
    } catch (e) {
        check(false, e.stack);
    } finally {
        await pg.destroy();
    }
    report();
})();
