// phones.js - phones as modems (listen_http_ingest): requests shaped byte for byte as the
// clients send them (the classic Traccar Client's query form, the newer SDK's form POST,
// Traccar Client 9's JSON), each checked on a console joined with the official phoenix
// client; keep-alive, IPv6, TLS; a dead zone's buffered re-sends; every refusal (400 by
// reason, 403, 404, 405, 411, 413 unread, 429) and the slow sender, with their counters.
//
// usage: node phones.js /path/to/gpsrelayd
"use strict";

const { execFileSync } = require("node:child_process");
const net = require("node:net");
const path = require("node:path");
const tls = require("node:tls");
const { Socket } = require("phoenix");
const WebSocket = require("ws");
const { Daemon, check, report, freePort, WAIT_MS } = require("./daemon");

const BINARY = process.argv[2];
const CSV = "device_id,agency_id,label,source_addr\n" +
    "PHONE-1,county-ems,Medic 1,\nPHONE-2,county-ems,Medic 2,\n" +
    "PHONE-3,county-ems,Medic 3,\nFIRE-1,city-fire,Engine 1,\n";
const KNOT = 1852 / 3600;

// One client connection speaking raw bytes: request() writes them exactly and resolves
// with the answer { status, headers, body } (Content-Length framed), or null when the
// server closed the connection first.
class Raw {
    static open(port, { host = "127.0.0.1", localAddress, secure = false } = {}) {
        return new Promise((resolve, reject) => {
            const opts = { host, port, localAddress, rejectUnauthorized: false };
            const s = secure ? tls.connect(opts, () => resolve(new Raw(s)))
                : net.connect(opts, () => resolve(new Raw(s)));
            s.once("error", reject);
        });
    }

    constructor(s) {
        this.s = s;
        this.buf = Buffer.alloc(0);
        this.closed = false;
        this.waiter = null;
        s.on("data", (d) => { this.buf = Buffer.concat([this.buf, d]); this.poke(); });
        s.on("close", () => { this.closed = true; this.poke(); });
        s.on("error", () => {});
    }

    poke() { if (this.waiter) this.waiter(); }

    // The next whole answer in buf, taken off it, or undefined.
    take() {
        const end = this.buf.indexOf("\r\n\r\n");
        if (end < 0) return undefined;
        const head = this.buf.subarray(0, end).toString("latin1").split("\r\n");
        const headers = {};
        for (const line of head.slice(1)) {
            const i = line.indexOf(":");
            headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
        }
        const len = Number(headers["content-length"] || 0);
        if (this.buf.length < end + 4 + len) return undefined;
        const body = this.buf.subarray(end + 4, end + 4 + len).toString();
        this.buf = this.buf.subarray(end + 4 + len);
        return { status: Number(head[0].split(" ")[1]), headers, body };
    }

    next(ms = WAIT_MS) {
        return new Promise((resolve, reject) => {
            const timer = setTimeout(() => { this.waiter = null; reject(new Error("no answer")); }, ms);
            this.waiter = () => {
                const a = this.take();
                if (a === undefined && !this.closed) return;
                clearTimeout(timer);
                this.waiter = null;
                resolve(a === undefined ? null : a);
            };
            this.waiter();
        });
    }

    request(bytes) {
        this.s.write(bytes);
        return this.next();
    }

    // Resolves when the server closes the connection, with the ms it took.
    closedWithin(ms) {
        const t0 = Date.now();
        return new Promise((resolve) => {
            if (this.closed) return resolve(0);
            const timer = setTimeout(() => resolve(-1), ms);
            this.s.on("close", () => { clearTimeout(timer); resolve(Date.now() - t0); });
        });
    }

    end() { this.s.destroy(); }
}

// The three shapes of one report, as the clients put them on the wire.
const UA_ANDROID = "Dalvik/2.1.0 (Linux; U; Android 13; Pixel 7 Build/TQ3A.230805.001)";

function classicQuery(host, q) {
    // The classic Android client: HttpURLConnection, POST, parameters in the URL, no body.
    return `POST /?${q} HTTP/1.1\r\nUser-Agent: ${UA_ANDROID}\r\nHost: ${host}\r\n` +
        "Connection: Keep-Alive\r\nAccept-Encoding: gzip\r\nContent-Length: 0\r\n\r\n";
}

function sdkForm(host, form) {
    return `POST / HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/x-www-form-urlencoded\r\n` +
        `Content-Length: ${Buffer.byteLength(form)}\r\nConnection: keep-alive\r\n` +
        "Accept: */*\r\nAccept-Encoding: gzip, deflate, br\r\n" +
        "User-Agent: TraccarClient/9.5 CFNetwork/1494.0.7 Darwin/23.4.0\r\n\r\n" + form;
}

function client9Json(host, json) {
    return `POST / HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(json)}\r\nConnection: keep-alive\r\n` +
        "User-Agent: okhttp/4.12.0\r\nAccept-Encoding: gzip\r\n\r\n" + json;
}

// A console on agency:county-ems that keeps every position it is sent.
async function console_(d) {
    const socket = new Socket(`ws://127.0.0.1:${d.ports.ws}/socket`, { transport: WebSocket });
    socket.connect();
    const channel = socket.channel("agency:county-ems", {});
    const seen = [];
    const waiting = [];
    channel.on("positions", (p) => {
        for (const x of p.positions) {
            seen.push(x);
            for (const w of waiting.splice(0)) w();
        }
    });
    await new Promise((resolve, reject) => channel.join().receive("ok", resolve)
        .receive("error", (e) => reject(new Error(JSON.stringify(e)))));
    // The next position of device after the ones seen so far (index from).
    const next = (device, from = seen.length) => new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no position of ${device} after ${from}: ${JSON.stringify(seen)}`)), WAIT_MS);
        const look = () => {
            const p = seen.slice(from).find((x) => x.device === device);
            if (p) { clearTimeout(timer); resolve(p); } else waiting.push(look);
        };
        look();
    });
    return { socket, seen, next };
}

const near = (a, b, eps = 1e-9) => Math.abs(a - b) <= eps;
const iso = (ms) => new Date(ms).toISOString();

async function metrics(d) {
    const text = await (await fetch(`http://127.0.0.1:${d.ports.ws}/metrics`)).text();
    const m = {};
    for (const line of text.split("\n"))
        if (line && !line.startsWith("#")) m[line.split(" ")[0]] = Number(line.split(" ")[1]);
    return m;
}
const answered = (m, status) => m[`gpsrelay_ingest_http_requests_total{status="${status}"}`];
const rejected = (m, reason) => m[`gpsrelay_ingest_rejected_total{reason="${reason}"}`];

async function shapes(d, con) {
    const host = `127.0.0.1:${d.ports.phones}`;
    const t0 = Date.now() - 60000;
    const c = await Raw.open(d.ports.phones);
    const open = (await metrics(d)).gpsrelay_ingest_http_connections;
    check(open === 1, `a phone's connection counted (${open})`);

    // 1. The classic client, keep-alive: two reports on one connection.
    const q = `id=PHONE-1&timestamp=${Math.floor(t0 / 1000)}&lat=40.7128&lon=-74.006&speed=12.5` +
        "&bearing=271.5&altitude=10.2&accuracy=5.0&batt=87.0";
    let got = con.next("PHONE-1");
    let a = await c.request(classicQuery(host, q));
    check(a && a.status === 200 && a.body === "", `classic query: 200, empty body (${a && a.status})`);
    let p = await got;
    check(p.src === "osmand" && near(p.lat, 40.7128) && near(p.lon, -74.006), "classic: position");
    check(p.time === iso(Math.floor(t0 / 1000) * 1000), `classic: time ${p.time}`);
    check(near(p.speed, 12.5 * KNOT, 0.006), `classic: speed knots to m/s (${p.speed})`);
    check(p.course === 271.5 && p.alt === 10.2, "classic: course, altitude");
    check(JSON.stringify(p.attrs) === '{"accuracy":5.0,"battery":87.0}' ||
        (p.attrs.accuracy === 5 && p.attrs.battery === 87), `classic: attrs ${JSON.stringify(p.attrs)}`);
    got = con.next("PHONE-1");
    a = await c.request(`GET /?id=PHONE-1&timestamp=${t0 + 1000}&lat=40.7129&lon=-74.006 HTTP/1.1\r\n` +
        `Host: ${host}\r\n\r\n`);
    check(a && a.status === 200, "GET with epoch milliseconds on the same connection: 200");
    p = await got;
    check(p.time === iso(t0 + 1000) && near(p.lat, 40.7129), "GET: milliseconds read as such");

    // 2. The newer SDK's form POST, on the same connection.
    const form = `id=PHONE-2&timestamp=${encodeURIComponent(iso(t0))}&lat=40.75&lon=-73.99&speed=0` +
        "&bearing=0&altitude=5&accuracy=12&batt=54&charge=true";
    got = con.next("PHONE-2");
    a = await c.request(sdkForm(host, form));
    check(a && a.status === 200, "SDK form: 200");
    p = await got;
    check(p.src === "osmand" && near(p.lat, 40.75) && p.time === iso(t0) && p.speed === 0,
        "SDK form: position, RFC 3339 time");
    check(p.attrs.charge === true && p.attrs.accuracy === 12 && p.attrs.battery === 54,
        `SDK form: attrs ${JSON.stringify(p.attrs)}`);

    // 3. Traccar Client 9's JSON.
    const json = JSON.stringify({
        location: {
            timestamp: iso(t0 + 500), coords: { latitude: 40.76, longitude: -73.98, accuracy: 4.5,
                speed: 6.43, heading: 90, altitude: 12 },
            is_moving: true, odometer: 1234.5, event: "motionchange",
            battery: { level: 0.87, is_charging: false },
        },
        device_id: "PHONE-3",
    });
    got = con.next("PHONE-3");
    a = await c.request(client9Json(host, json));
    check(a && a.status === 200, "Traccar Client 9 JSON: 200");
    p = await got;
    check(near(p.lat, 40.76) && p.speed === 6.43 && p.course === 90 && p.alt === 12 &&
        p.time === iso(t0 + 500), "JSON: position in m/s");
    check(p.attrs.battery === 0.87 && p.attrs.charge === false && p.attrs.motion === true &&
        p.attrs.odometer === 1234.5 && p.attrs.event === "motionchange" && p.attrs.accuracy === 4.5,
    `JSON: attrs ${JSON.stringify(p.attrs)}`);
    c.end();

    // 4. IPv6. At least a second after the last (t0 + 1 s), so 11 m is no implausible speed.
    const c6 = await Raw.open(d.ports.phones, { host: "::1" });
    got = con.next("PHONE-1");
    a = await c6.request(classicQuery(`[::1]:${d.ports.phones}`,
        `id=PHONE-1&timestamp=${Math.floor(t0 / 1000) + 3}&lat=40.713&lon=-74.006`));
    check(a && a.status === 200 && (await got).lat === 40.713, "IPv6: 200 and on the console");
    c6.end();
}

// A phone out of coverage buffers its reports and sends them all when it is back, newest
// first or oldest first: the console never goes back in time, and each is answered 200
// (refused, the phone would send it for ever) and counted.
async function deadZone(d, con) {
    const host = `127.0.0.1:${d.ports.phones}`;
    const before = await metrics(d);
    const base = Math.floor(Date.now() / 1000) - 30;
    const c = await Raw.open(d.ports.phones, { localAddress: "127.0.0.3" });
    const send = (t, lat) => c.request(classicQuery(host, `id=PHONE-2&timestamp=${t}&lat=${lat}&lon=-73.99`));
    const from = con.seen.length;
    let a = await send(base + 20, 40.751);
    check(a.status === 200, "dead zone: the newest first");
    const statuses = [];
    for (const [t, lat] of [[base, 40.7501], [base + 10, 40.7505], [base + 20, 40.751]])
        statuses.push((await send(t, lat)).status);
    check(statuses.every((s) => s === 200), `dead zone: old and repeated answered 200 (${statuses})`);
    a = await send(base + 25, 40.7512);
    check(a.status === 200, "dead zone: a newer one after");
    await con.next("PHONE-2", from + 1);
    const shown = con.seen.slice(from).filter((x) => x.device === "PHONE-2").map((x) => x.time);
    check(JSON.stringify(shown) === JSON.stringify([iso((base + 20) * 1000), iso((base + 25) * 1000)]),
        `dead zone: the console saw only forward (${shown})`);
    const after = await metrics(d);
    check(rejected(after, "out_of_order") - (rejected(before, "out_of_order") || 0) === 2 &&
        rejected(after, "duplicate") - (rejected(before, "duplicate") || 0) === 1,
    "dead zone: 2 out_of_order, 1 duplicate counted");
    c.end();
}

async function refusals(d) {
    const host = `127.0.0.1:${d.ports.phones}`;
    const t = Math.floor(Date.now() / 1000);
    const before = await metrics(d);
    const c = await Raw.open(d.ports.phones, { localAddress: "127.0.0.4" });
    const cases = [
        [`id=PHONE-1&timestamp=${t}&lat=4O.7&lon=-74`, 400, "malformed"],
        [`id=PHONE-1&timestamp=${t}&lon=-74`, 400, "missing_field"],
        [`timestamp=${t}&lat=40.7&lon=-74`, 400, "missing_field"],
        [`id=PHONE-1&timestamp=${t}&lat=40&lon=-74&bearing=361`, 400, "bad_value"],
        [`id=PHONE-1&timestamp=2026-02-31T00:00:00Z&lat=40&lon=-74`, 400, "bad_date"],
        [`id=NOBODY&timestamp=${t}&lat=40.7&lon=-74`, 404, "unknown_device"],
    ];
    for (const [q, status, body] of cases) {
        const a = await c.request(classicQuery(host, q));
        check(a && a.status === status && a.body === `${body}\n`,
            `${q}: ${status} ${body} (got ${a && a.status} ${a && a.body.trim()})`);
    }
    // Outside the world: refused by the acceptance rules like a modem's, so taken and
    // counted (out_of_range), not answered 400.
    let a = await c.request(classicQuery(host, `id=PHONE-1&timestamp=${t}&lat=91&lon=-74`));
    check(a && a.status === 200 && a.body === "", "lat 91: 200, counted out_of_range");
    a = await c.request(client9Json(host, '{"device_id":"PHONE-3","location":{"coords":'));
    check(a && a.status === 400 && a.body === "malformed\n", "broken JSON: 400 malformed");
    a = await c.request(client9Json(host, '{"device_id":"PHONE-3","location":{"coords":{}}}'));
    check(a && a.status === 400 && a.body === "missing_field\n", "JSON without a position: 400");
    check(!c.closed, "400s and 404s keep the connection");
    a = await c.request(`PUT / HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 0\r\n\r\n`);
    check(a && a.status === 405, `PUT: 405 (${a && a.status})`);
    c.end();

    // A body over 64 KiB is refused from its Content-Length, before it is sent.
    const big = await Raw.open(d.ports.phones, { localAddress: "127.0.0.5" });
    a = await big.request(`POST / HTTP/1.1\r\nHost: ${host}\r\nContent-Type: ` +
        "application/x-www-form-urlencoded\r\nContent-Length: 65537\r\n\r\n");
    check(a && a.status === 413, `65537-byte body: 413 before it is sent (${a && a.status})`);
    check(await big.closedWithin(WAIT_MS) >= 0, "413: connection closed");
    // Exactly 64 KiB is read (and is a report with a long tail of the client's own fields).
    const pad = `id=PHONE-1&timestamp=${t}&lat=40.7&lon=-74.0&x=`;
    const limit = await Raw.open(d.ports.phones, { localAddress: "127.0.0.5" });
    a = await limit.request(sdkForm(host, pad + "y".repeat(65536 - pad.length)));
    check(a && a.status === 200, `a 65536-byte form body: 200 (${a && a.status})`);
    limit.end();

    const chunked = await Raw.open(d.ports.phones);
    a = await chunked.request(`POST / HTTP/1.1\r\nHost: ${host}\r\nTransfer-Encoding: chunked\r\n\r\n` +
        "5\r\nid=PH\r\n0\r\n\r\n");
    check(a && a.status === 411, `chunked body: 411 (${a && a.status})`);

    // The consoles' endpoints are not on the phones' port, whatever the Host header says.
    const sneaky = await Raw.open(d.ports.phones, { localAddress: "127.0.0.6" });
    for (const h of [":1", `127.0.0.1:${d.ports.ws}`, "127.0.0.1"]) {
        a = await sneaky.request(`GET /healthz HTTP/1.1\r\nHost: ${h}\r\n\r\n`);
        check(a && a.status === 400 && a.body === "missing_field\n",
            `Host ${h}: /healthz on the phones' port is a (bad) report, not the endpoint`);
    }
    sneaky.end();

    // From outside ingest_allow.
    const outsider = await Raw.open(d.ports.phones, { localAddress: "127.0.0.9" });
    a = await outsider.request(classicQuery(host, `id=PHONE-1&timestamp=${t}&lat=40.7&lon=-74`));
    check(a && a.status === 403, `outside ingest_allow: 403 (${a && a.status})`);

    // Over ingest_rate_limit (10/s here) from one address: 429, the rest still answered.
    const flood = await Raw.open(d.ports.phones, { localAddress: "127.0.0.2" });
    const seen = {};
    for (let i = 0; i < 30; i++) {
        const r = await flood.request(classicQuery(host, `id=PHONE-3&timestamp=${t - 100 + i}&lat=40.7&lon=-74`));
        seen[r.status] = (seen[r.status] || 0) + 1;
    }
    check(seen[429] >= 15 && seen[200] >= 5, `rate limit: ${JSON.stringify(seen)}`);
    flood.end();

    const after = await metrics(d);
    const delta = (s) => (answered(after, s) || 0) - (answered(before, s) || 0);
    check(delta(400) === 5 + 2 + 3 && delta(404) === 1 && delta(405) === 1 && delta(411) === 1 &&
        delta(413) === 1 && delta(403) === 1 && delta(429) === seen[429],
    `requests counted by status: ${[400, 403, 404, 405, 411, 413, 429].map((s) => `${s}:${delta(s)}`)}`);
    check((rejected(after, "body_too_big") || 0) === 1, "body_too_big counted");
    check((rejected(after, "out_of_range") || 0) === 1, "out_of_range counted");
    check(after.gpsrelay_ingest_not_allowed_total === 1 &&
        after.gpsrelay_ingest_rate_limited_total === seen[429], "not_allowed and rate_limited counted");
}

// A sender that stops in the middle of its body is cut after 5 s of silence (lws's), one
// that trickles it byte by byte after GR_PHONE_BODY_TIMEOUT_S (10 s); both are counted.
async function slowSender(d) {
    const host = `127.0.0.1:${d.ports.phones}`;
    const head = `POST / HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 200\r\n\r\n`;
    const stalled = await Raw.open(d.ports.phones);
    stalled.s.write(head + "id=PHONE-1&lat=");
    const trickle = await Raw.open(d.ports.phones);
    trickle.s.write(head);
    const drip = setInterval(() => trickle.s.write("x"), 2000);
    const [a, b] = await Promise.all([stalled.closedWithin(20000), trickle.closedWithin(20000)]);
    clearInterval(drip);
    check(a >= 4000 && a <= 8000, `a body stalled halfway: closed after ${a} ms`);
    check(b >= 9000 && b <= 14000, `a body sent a byte every 2 s: closed after ${b} ms`);
    const m = await metrics(d);
    check(m.gpsrelay_ingest_http_incomplete_total === 2, "both counted incomplete");
    check(m.gpsrelay_ingest_http_connections === 0, `no phone connection left open (${m.gpsrelay_ingest_http_connections})`);
}

async function withTls() {
    const ports = { phones: await freePort("tcp") };
    const d = await Daemon.create(BINARY, CSV,
        `auth none\ntls_cert cert.pem\ntls_key key.pem\nlisten_http_ingest 127.0.0.1:${ports.phones}\n`);
    d.ports.phones = ports.phones;
    execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-subj", "/CN=localhost", "-keyout", path.join(d.dir, "key.pem"),
        "-out", path.join(d.dir, "cert.pem")], { stdio: "ignore" });
    await d.start("https");
    try {
        const c = await Raw.open(ports.phones, { secure: true });
        const a = await c.request(classicQuery(`127.0.0.1:${ports.phones}`,
            `id=PHONE-1&timestamp=${Math.floor(Date.now() / 1000)}&lat=40.7&lon=-74`));
        check(a && a.status === 200, `TLS: HTTPS report 200 (${a && a.status})`);
        c.end();
        const plain = await Raw.open(ports.phones);
        const b = await plain.request(classicQuery("x", "id=PHONE-1"));
        check(b === null || b.status !== 200, "TLS: plain HTTP is not served");
        plain.end();
    } finally {
        await d.stop();
        d.cleanup();
    }
}

// Phones never take more than a quarter of the descriptors left for connections: with 300,
// 236 are left (64 kept), so the 60th phone connection is closed at once, counted, and a
// console still connects.
async function descriptorShare() {
    const phones = await freePort("tcp");
    const d = await Daemon.create(BINARY, CSV, `auth none\nlisten_http_ingest 127.0.0.1:${phones}\n`);
    await d.start("http", ["prlimit", "--nofile=300:300", "--"]);
    const held = [];
    try {
        for (let i = 0; i < 80; i++) held.push(await Raw.open(phones));
        const closed = await Promise.all(held.slice(59).map((c) => c.closedWithin(WAIT_MS)));
        check(closed.every((ms) => ms >= 0), "phone connections past a quarter of the fds: closed");
        const m = await metrics(d);
        check(m.gpsrelay_ingest_http_refused_total === 21 && m.gpsrelay_ingest_http_connections === 59,
            `refused ${m.gpsrelay_ingest_http_refused_total}, open ${m.gpsrelay_ingest_http_connections}`);
        const con = await console_(d);
        check(con.seen.length === 0, "a console still connects beside them");
        con.socket.disconnect();
    } finally {
        for (const c of held) c.end();
        await d.stop();
        d.cleanup();
    }
}

async function main() {
    const phones = await freePort("tcp");
    const d = await Daemon.create(BINARY, CSV,
        `auth none\nlisten_http_ingest 127.0.0.1:${phones}\nlisten_http_ingest [::1]:${phones}\n` +
        "ingest_allow 127.0.0.0/29\ningest_allow ::1/128\ningest_rate_limit 10\n");
    d.ports.phones = phones;
    await d.start();
    let con;
    try {
        con = await console_(d);
        await shapes(d, con);
        await deadZone(d, con);
        await refusals(d);
        await slowSender(d);
        const fire = con.seen.filter((x) => x.device === "FIRE-1");
        check(fire.length === 0, "no other agency's unit on the console");
    } finally {
        con?.socket.disconnect();
        const code = await d.stop();
        check(code === 0, `daemon exit code ${code}`);
        d.cleanup();
    }
    await withTls();
    await descriptorShare();
    report();
}

main().catch((e) => { console.error(e); process.exit(1); });
