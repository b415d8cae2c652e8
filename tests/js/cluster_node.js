// cluster_node.js - one cluster node against one real nats-server (JetStream, started and
// stopped here on loopback): a single daemon maps no libnats; -t and the directives; seq and
// epoch from the stream; bad messages on the stream counted and skipped; a restart catching
// up; a second node resuming a console's since; a node cut off from NATS (503, fixes queued,
// delivered when NATS is back). The three-node failures are in cluster.js.
"use strict";

const { spawn, spawnSync } = require("node:child_process");
const fs = require("node:fs");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");
const { Socket } = require("phoenix");
const WebSocket = require("ws");
const { Daemon, rmc, check, report, freePort, WAIT_MS } = require("./daemon");
const { waitFor } = require("./cluster_lib");
const { Pg } = require("./pg");

const binary = process.argv[2];
const CSV = "device_id,agency_id,label,source_addr\nAMB-12,ems,Medic 12,\nAMB-7,ems,Medic 7,\n";
// Whatever happens, nothing started here outlives the test.
const children = new Set();
const daemons = [];
process.on("exit", () => {
    for (const c of children) c.kill("SIGKILL");
    for (const d of daemons) if (d.child && d.child.exitCode === null) d.child.kill("SIGKILL");
});
async function daemon(conf) {
    const d = await Daemon.create(binary, CSV, conf);
    daemons.push(d);
    return d;
}

// One nats-server with JetStream; start() again after kill() reuses its store.
class Nats {
    constructor(dir, port, mport) { Object.assign(this, { dir, port, mport }); }
    async start() {
        this.child = spawn("nats-server", ["-js", "-sd", this.dir, "-a", "127.0.0.1",
            "-p", String(this.port), "-m", String(this.mport), "-n", "solo"],
            { stdio: ["ignore", "ignore", "ignore"] });
        children.add(this.child);
        this.exited = new Promise((r) => this.child.on("exit", r));
        await waitFor("nats-server", WAIT_MS, async () => {
            const r = await fetch(`http://127.0.0.1:${this.mport}/healthz?js-enabled-only=true`);
            return r.status === 200;
        });
    }
    async kill() {
        this.child.kill("SIGKILL");
        await this.exited;
        children.delete(this.child);
    }
}

// A raw NATS client: publishes with headers (HPUB) straight onto the stream's subjects, the
// way a buggy or hostile publisher would, then PING/PONG so the server has taken them.
function natsPublish(port, msgs) {
    return new Promise((resolve, reject) => {
        const s = net.connect(port, "127.0.0.1");
        let out = 'CONNECT {"verbose":false,"headers":true}\r\n';
        for (const { subject, headers, body } of msgs) {
            const h = "NATS/1.0\r\n" + Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join("") + "\r\n";
            out += `HPUB ${subject} ${Buffer.byteLength(h)} ${Buffer.byteLength(h) + Buffer.byteLength(body)}\r\n${h}${body}\r\n`;
        }
        let got = "";
        s.on("data", (d) => {
            got += d;
            if (got.includes("PONG")) { s.end(); resolve(); }
            if (got.includes("-ERR")) { s.destroy(); reject(new Error(got)); }
        });
        s.on("error", reject);
        s.write(out + "PING\r\n");
    });
}

async function readyz(d) {
    const r = await fetch(`http://127.0.0.1:${d.ports.ws}/readyz`);
    return { status: r.status, body: (await r.text()).trim() };
}

// A phoenix console on agency:ems, joined with since (or not): its reply and its positions.
async function console_(d, since) {
    const socket = new Socket(`ws://127.0.0.1:${d.ports.ws}/socket`,
        { transport: WebSocket, params: {}, reconnectAfterMs: () => 60000 });
    socket.connect();
    const c = { socket, positions: [] };
    const ch = socket.channel("agency:ems", since ? { since } : {});
    ch.on("positions", (m) => c.positions.push(...m.positions));
    c.reply = await new Promise((resolve, reject) => {
        ch.join().receive("ok", resolve).receive("error", reject).receive("timeout", reject);
    });
    return c;
}

function clusterConf(natsPort, node) {
    return `cluster_nats nats://127.0.0.1:${natsPort}\ncluster_replicas 1\nnode_name ${node}\nauth none\nmerge_window 0\n`;
}

function runT(d) {
    return spawnSync(binary, ["-t", "-c", path.join(d.dir, "gpsrelay.conf")], { encoding: "utf8", timeout: 20000 });
}

// Two nodes archiving into one PostgreSQL: both write every position of the stream, and each
// lands once; a node killed while a batch is in flight (PostgreSQL frozen under it) loses
// nothing, since the other writes the same positions.
async function archiveOnce(nats) {
    const pg = await Pg.create();
    try {
        await pg.applyArchive();
        const conf = (node) => clusterConf(nats.port, node) + "cluster_name arch\ningest_rate_limit 10000\n" +
            `archive_postgres "${pg.conninfo}"\narchive_spool archive.spool\n`;
        const a = await daemon(conf("a1")), b = await daemon(conf("b1"));
        await a.start();
        await b.start();
        const t0 = Date.now() - 600000;
        let sent = 0;
        const send = async (n) => {
            for (let i = 0; i < n; i++, sent++) {
                await a.send(rmc("AMB-12", 40.71 + sent * 1e-6, -74.0, t0 + sent * 1000));
                await b.send(rmc("AMB-7", 40.72 + sent * 1e-6, -74.0, t0 + sent * 1000));
            }
        };
        const rows = async () => Number((await pg.sql("SELECT count(*) FROM positions")).trim());
        const sum = async (m) => (await a.metric(m)) + (await b.metric(m));
        const applied = async (n) => waitFor(`${n} applied on both`, 20000, async () =>
            (await a.metric("gpsrelay_cluster_applied_total")) === n &&
            (await b.metric("gpsrelay_cluster_applied_total")) === n);
        const drained = (d) => waitFor("archive drained", 60000, async () =>
            (await d.metric("gpsrelay_archive_queued")) === 0 &&
            (await d.metric("gpsrelay_archive_up")) === 1);

        await send(100);
        await applied(2 * sent);
        await drained(a);
        await drained(b);
        check(await rows() === 2 * sent, `two nodes, one archive: ${await rows()} rows for ${2 * sent} positions`);
        check(await sum("gpsrelay_archive_written_total") === 2 * sent &&
            await sum("gpsrelay_archive_duplicates_total") === 2 * sent,
            "each position written by one node, skipped by the other");

        await pg.freeze();
        await send(100);
        await applied(2 * sent);
        a.child.kill("SIGKILL");
        await a.exited;
        await pg.thaw();
        await drained(b);
        check(await rows() === 2 * sent, `a node killed mid-batch: ${await rows()} rows for ${2 * sent} positions`);
        check((await pg.sql(`SELECT count(*) FROM (SELECT device, time FROM positions
            GROUP BY 1, 2 HAVING count(*) > 1) x`)).trim() === "0", "none twice");
        check(await b.stop() === 0, "the other node exits 0");
        a.cleanup();
        b.cleanup();
    } finally {
        await pg.destroy();
    }
}

async function main() {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gpsrelay-nats-"));
    const nats = new Nats(tmp, await freePort(), await freePort());
    const deadPort = await freePort();
    try {
        // A single daemon never maps libnats or the cluster module.
        const single = await daemon("auth none\n");
        await single.start();
        const maps = fs.readFileSync(`/proc/${single.child.pid}/maps`, "utf8");
        check(!/libnats|gpsrelay-cluster/.test(maps), "a daemon without cluster_nats maps no libnats");
        check(await single.metric("gpsrelay_cluster_up") === 0, "gpsrelay_cluster_up is 0 without a cluster");
        await single.stop();
        single.cleanup();

        // The directives are checked like every other: file:line, exit 78 (EX_CONFIG).
        for (const [line, what] of [["cluster_nats http://127.0.0.1:4222", "nats://HOST:PORT"],
            ["cluster_nats nats://127.0.0.1:0", "nats://HOST:PORT"], ["cluster_name a.b", "cluster_name"],
            ["node_name \"a b\"", "node_name"], ["cluster_replicas 0", "1 to 5"], ["cluster_replicas 6", "1 to 5"],
            ["cluster_history 59", "60 to"]]) {
            const bad = await daemon(`auth none\n${line}\n`);
            const r = runT(bad);
            check(r.status === 78 && r.stderr.includes("gpsrelay.conf:") && r.stderr.includes(what),
                `"${line}" refused with file:line (${r.status}: ${r.stderr.trim()})`);
            bad.cleanup();
        }

        // -t: servers that do not answer are an error; the real one is usable.
        const dead = await daemon(clusterConf(deadPort, "x"));
        let r = runT(dead);
        check(r.status === 1 && /cluster: cannot connect to NATS/.test(r.stderr), `-t with no NATS fails (${r.status}: ${r.stderr.trim()})`);
        dead.cleanup();
        await nats.start();

        const a = await daemon(clusterConf(nats.port, "na"));
        r = runT(a);
        check(r.status === 0 && r.stdout.includes("cluster stream usable"), `-t passes with NATS (${r.status}: ${r.stdout.trim()} ${r.stderr.trim()})`);
        await a.start();
        const ca = await console_(a);
        check(/^[0-9a-f]{16}$/.test(ca.reply.epoch) && ca.reply.node === "na" && ca.reply.seq === 0,
            `join reply: the stream's epoch, seq 0, node "na" (${JSON.stringify(ca.reply)})`);
        const t0 = Date.now() - 60000;
        await a.send(rmc("AMB-12", 40.71, -74.0, t0));
        await waitFor("the first position", WAIT_MS, async () => ca.positions.length === 1);
        check(ca.positions[0].seq === 1 && ca.positions[0].device === "AMB-12", "the first position has the stream's seq 1");
        check(await a.metric("gpsrelay_cluster_published_total") === 1 && await a.metric("gpsrelay_cluster_applied_total") === 1,
            "one published, one applied");

        // Bad input on the stream: counted and skipped, never fatal; seqs go on from the stream.
        // (On a unit's own subject, as here, the bad message is also the unit's last one, which
        // a node catching up gets instead of the unit's position, until the unit reports again.)
        const body = (id, ms) => JSON.stringify({ id, time: new Date(ms).toISOString(), lat: 40.7101, lon: -74.0 });
        await natsPublish(nats.port, [
            { subject: "gpsrelay.pos.AMB-12", headers: { "Gr-Rx": String(Date.now()), "Gr-Src": "nmea" }, body: "not json" },
            { subject: "gpsrelay.pos.AMB-12", headers: { "Gr-Src": "nmea" }, body: body("AMB-12", t0 + 1000) },
            { subject: "gpsrelay.pos.AMB-12", headers: { "Gr-Rx": "1", "Gr-Src": "morse" }, body: body("AMB-12", t0 + 1000) },
            { subject: "gpsrelay.pos.NOPE", headers: { "Gr-Rx": String(Date.now()), "Gr-Src": "json" }, body: body("NOPE", t0 + 1000) },
        ]);
        await waitFor("the skips", WAIT_MS, async () =>
            await a.metric('gpsrelay_cluster_skipped_total{reason="malformed"}') === 3 &&
            await a.metric('gpsrelay_cluster_skipped_total{reason="unknown_device"}') === 1);
        await a.send(rmc("AMB-7", 40.73, -74.0, t0 + 2000));
        await waitFor("the next position", WAIT_MS, async () => ca.positions.length === 2);
        check(ca.positions[1].seq === 6 && ca.positions[1].device === "AMB-7", `seq 6 after five stored messages (${ca.positions[1].seq})`);
        check((await readyz(a)).status === 200, "the node stays ready through bad messages");

        // A second node catches up from the stream and answers a since the same way.
        const b = await daemon(clusterConf(nats.port, "nb"));
        await b.start();
        const cb = await console_(b, { epoch: ca.reply.epoch, seq: 1 });
        check(cb.reply.epoch === ca.reply.epoch && cb.reply.recovered === true && cb.reply.seq === 6,
            `node b: same epoch, recovered from seq 1 (${JSON.stringify(cb.reply)})`);
        check(cb.reply.positions.length === 1 && cb.reply.positions[0].seq === 6, "node b sends only what is newer than since");
        const full = await console_(b);
        const latest = full.reply.positions.map((p) => p.seq).join();
        check(latest === "6", `node b caught up: AMB-7's latest; AMB-12's last message is a bad one (${latest})`);
        check(await b.metric('gpsrelay_cluster_skipped_total{reason="malformed"}') === 1, "node b skipped it");

        // Cut off from NATS: 503 within 5 s, fixes queued, delivered when NATS is back.
        await nats.kill();
        const cut = Date.now();
        await waitFor("503 without NATS", 5000, async () => (await readyz(a)).body === "cluster: no NATS connection");
        check(Date.now() - cut <= 5000, `/readyz said 503 ${Date.now() - cut} ms after NATS went`);
        for (let k = 0; k < 3; k++)
            await a.send(rmc("AMB-12", 40.7101 + k * 0.0001, -74.0, t0 + 3000 + k * 1000));
        await waitFor("three queued", WAIT_MS, async () => await a.metric("gpsrelay_cluster_queued") >= 3);
        await nats.start();
        await waitFor("ready again", 15000, async () => (await readyz(a)).status === 200);
        // Stored in order as 7, 8, 9 and applied on both nodes; consoles get the newest of the
        // unit at least (they conflate what arrives in one burst: docs/protocol.md).
        const last = (c) => c.positions.length && c.positions[c.positions.length - 1].seq;
        await waitFor("the queued fixes on both nodes", 15000, async () => last(ca) === 9 && last(cb) === 9)
            .catch(async (e) => {
                console.error(`a got ${ca.positions.map((p) => p.seq)}, b got ${cb.positions.map((p) => p.seq)}; ` +
                    `a: queued ${await a.metric("gpsrelay_cluster_queued")} published ${await a.metric("gpsrelay_cluster_published_total")}`);
                throw e;
            });
        check(await a.metric("gpsrelay_cluster_applied_total") === 5 && await b.metric("gpsrelay_cluster_applied_total") === 4,
            "a applied 1, 6, 7, 8, 9; b, started later, 6 to 9");
        const rising = (c) => c.positions.every((p, i) => i === 0 || p.seq > c.positions[i - 1].seq);
        check(rising(ca) && rising(cb), `no seq twice or backwards (${ca.positions.map((p) => p.seq)} / ${cb.positions.map((p) => p.seq)})`);

        // Restart: the node catches up with the same epoch before it says ready.
        check(await a.stop() === 0, "SIGTERM: exit 0");
        await a.start();
        const again = await console_(a, { epoch: ca.reply.epoch, seq: 8 });
        check(again.reply.recovered === true && again.reply.positions.map((p) => p.seq).join() === "9",
            `after a restart: same epoch, recovered (${JSON.stringify(again.reply)})`);
        for (const c of [ca, cb, full, again]) c.socket.disconnect();
        check(await a.stop() === 0 && await b.stop() === 0, "both nodes exit 0");
        a.cleanup();
        b.cleanup();
        await archiveOnce(nats);
    } finally {
        if (nats.child) await nats.kill().catch(() => {});
        fs.rmSync(tmp, { recursive: true, force: true });
    }
    report();
}

main().catch((e) => { console.error(e); process.exit(1); });
