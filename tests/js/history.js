// history.js - GET /api/history and GET /api/snapshot (docs/history.md) against the real
// daemon and a real PostgreSQL 15 made here (pg.js), rows put in with COPY (not through the
// daemon's archive writer): exact ndjson values and order, GeoJSON valid per RFC 7946,
// limit and truncation, the snapshot's look-back and missing units, every refusal (400 per
// parameter kind, 401, 403 alike for foreign and unknown ids, Origin, 404, 405, 503 with the
// archive down and with GR_HISTORY_QUERIES_MAX queries running), clients that go away
// mid-answer, and a day of 1 Hz positions streamed with bounded memory (timed).
"use strict";

const http = require("node:http");
const fs = require("node:fs");
const { Daemon, check, report, WAIT_MS } = require("./daemon");
const { Pg } = require("./pg");
const { SECRET, mint, claims, now } = require("./token");

const binary = process.argv[2];
const QUERIES_MAX = 4; // GR_HISTORY_QUERIES_MAX
const STALE_AFTER = 60;
const ORIGIN = "https://cad.example";
// A fleet of FLEET units for the snapshot's timing; every tenth has nothing recent.
const FLEET = 2000;
const FLEET_ROWS = 720; // an hour at one position per 5 s
const CSV = "device_id,agency_id,label,source_addr\n" +
    "AMB-12,ems,Medic 12,\nAMB-7,ems,Medic 7,\nX-1,ems,Spare,\nE-7,fire,Engine 7,\n" +
    "BIG-1,big,Day unit,\n" +
    Array.from({ length: FLEET }, (_, i) => `U-${i},fleet,Unit ${i},\n`).join("");
const COLUMNS = ["device", "time", "lat", "lon", "speed", "course", "alt", "hdop", "sats", "src",
    "attrs", "rx_time", "epoch", "seq"];
const EPOCH = "0123456789abcdef";
const T0 = Date.parse("2026-11-23T18:20:01Z");
const DAY0 = Date.parse("2026-11-20T00:00:00Z");
const DAY_ROWS = 86400;

const daemons = [];
process.on("exit", () => {
    for (const d of daemons) if (d.child && d.child.exitCode === null) d.child.kill("SIGKILL");
});

// One GET: resolves {status, headers, body}. opts: headers, method, agent false.
function get(port, path, headers = {}, method = "GET") {
    return new Promise((resolve, reject) => {
        const req = http.request({ host: "127.0.0.1", port, path, method, headers, agent: false },
            (res) => {
                const parts = [];
                res.on("data", (b) => parts.push(b));
                res.on("end", () => resolve({ status: res.statusCode, headers: res.headers,
                    body: Buffer.concat(parts).toString() }));
                res.on("error", reject);
            });
        req.on("error", reject);
        req.end();
    });
}

const bearer = (t) => ({ authorization: `Bearer ${t}` });
const ems = mint(claims(["ems"]));
const big = mint(claims(["big"]));
const qs = (o) => Object.entries(o).map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join("&");
const iso = (ms) => new Date(ms).toISOString();

// AMB-12's five positions, with the lines consoles would get for them (docs/protocol.md).
const AMB12 = [
    [T0, 40.7128, -74.006, 6.17, 271.5, 10.2, 0.9, 9, "nmea", null, 1042],
    [T0 + 1000, 40.71281, -74.00601, null, null, null, null, null, "taip", null, 1043],
    [T0 + 2000, -33.8688197, 151.2092955, 0.004, 0.04, -12.34, 1.234, 0, "json",
        { siren: true, crew: ["a", "b"] }, 1050],
    [T0 + 3500, 0.0000001, -0.0000001, 514.4, 360, 99999.9, 99.99, 255, "nmea", null, 1051],
    [T0 + 4000, 40.5, -74.5, 1, 2, 3, 4, 5, "json", {}, 2000],
];
const AMB12_LINES = [
    '{"device":"AMB-12","seq":1042,"time":"2026-11-23T18:20:01.000Z","lat":40.7128000,' +
        '"lon":-74.0060000,"speed":6.17,"course":271.5,"alt":10.2,"hdop":0.9,"sats":9,"src":"nmea"}',
    '{"device":"AMB-12","seq":1043,"time":"2026-11-23T18:20:02.000Z","lat":40.7128100,' +
        '"lon":-74.0060100,"src":"taip"}',
    '{"device":"AMB-12","seq":1050,"time":"2026-11-23T18:20:03.000Z","lat":-33.8688197,' +
        '"lon":151.2092955,"speed":0,"course":0,"alt":-12.3,"hdop":1.23,"sats":0,"src":"json",' +
        '"attrs":{"crew":["a","b"],"siren":true}}',
    '{"device":"AMB-12","seq":1051,"time":"2026-11-23T18:20:04.500Z","lat":0.0000001,' +
        '"lon":-0.0000001,"speed":514.4,"course":360,"alt":99999.9,"hdop":99.99,"sats":255,' +
        '"src":"nmea"}',
    '{"device":"AMB-12","seq":2000,"time":"2026-11-23T18:20:05.000Z","lat":40.5000000,' +
        '"lon":-74.5000000,"speed":1,"course":2,"alt":3,"hdop":4,"sats":5,"src":"json",' +
        '"attrs":{}}',
];

function row(device, [t, lat, lon, speed, course, alt, hdop, sats, src, attrs, seq]) {
    return [device, new Date(t), lat, lon, speed, course, alt, hdop, sats, src, attrs,
        new Date(t + 120), EPOCH, seq];
}

async function fill(pg) {
    await pg.applyArchive();
    const rows = AMB12.map((p) => row("AMB-12", p));
    // AMB-7: last heard STALE_AFTER + 1 s before T0 + 10 s (the snapshot's `at` below).
    rows.push(row("AMB-7", [T0 + 10000 - (STALE_AFTER + 1) * 1000, 40, -74, null, null, null,
        null, null, "nmea", null, 900]));
    // E-7 (fire): there, but not for an ems token.
    rows.push(row("E-7", [T0, 41, -73, null, null, null, null, null, "nmea", null, 1044]));
    await pg.copy("positions", COLUMNS, rows);
    // BIG-1: a day at 1 Hz, made by the server itself.
    await pg.sql(`INSERT INTO positions (${COLUMNS.join(", ")})
        SELECT 'BIG-1', t, 45 + i * 1e-6, -75 + i * 1e-6, 12.5, i % 360, 100, 0.8, 11, 'nmea',
               NULL, t, '${EPOCH}', 100000 + i
        FROM generate_series(0, ${DAY_ROWS - 1}) i,
             LATERAL (SELECT timestamptz '${iso(DAY0)}' + i * interval '1 second' AS t) x`);
    // The fleet: FLEET_ROWS positions per unit up to T0, the last of every tenth unit older
    // than stale_after.
    await pg.sql(`INSERT INTO positions (${COLUMNS.join(", ")})
        SELECT 'U-' || u, timestamptz '${iso(T0)}' - (k * 5 + u % 5 + (u % 10 = 0)::int * 600)
                          * interval '1 second',
               45, -75, NULL, NULL, NULL, NULL, NULL, 'nmea', NULL, now(), '${EPOCH}', k
        FROM generate_series(0, ${FLEET - 1}) u, generate_series(0, ${FLEET_ROWS - 1}) k;
        ANALYZE positions`);
}

// ---- RFC 7946 ----------------------------------------------------------------------------

// The members RFC 7946 requires of what we send; returns the first violation, or null.
function geojsonViolation(fc) {
    const position = (p) => Array.isArray(p) && p.length === 2 && p.every(Number.isFinite) &&
        Math.abs(p[0]) <= 180 && Math.abs(p[1]) <= 90;
    if (fc.type !== "FeatureCollection" || !Array.isArray(fc.features))
        return "not a FeatureCollection with features";
    for (const f of fc.features) {
        if (f.type !== "Feature" || !("geometry" in f) || !("properties" in f))
            return "a feature without type, geometry or properties";
        const g = f.geometry;
        if (g === null) continue;
        if (g.type === "Point" && !position(g.coordinates)) return "a bad Point";
        if (g.type === "LineString" &&
            !(Array.isArray(g.coordinates) && g.coordinates.length >= 2 &&
              g.coordinates.every(position)))
            return "a bad LineString";
        if (g.type !== "Point" && g.type !== "LineString") return `geometry ${g.type}`;
    }
    return null;
}

// ---- the tests ---------------------------------------------------------------------------

async function ndjson(port) {
    const range = { device: "AMB-12", from: iso(T0 - 60000), to: iso(T0 + 60000) };
    let r = await get(port, `/api/history?${qs(range)}`, bearer(ems));
    check(r.status === 200, `history: 200 (got ${r.status} ${r.body})`);
    check(r.headers["content-type"] === "application/x-ndjson", "history: application/x-ndjson");
    check(r.headers["transfer-encoding"] === "chunked", "history: chunked");
    check(r.body === AMB12_LINES.join("\n") + "\n",
        `history: exact positions in time order\n${r.body}`);
    // token= instead of the header; epoch seconds with a fraction; bounds inclusive.
    r = await get(port, `/api/history?${qs({ device: "AMB-12", from: (T0 + 1000) / 1000,
        to: `${(T0 + 3500) / 1000}`, token: ems })}`);
    check(r.status === 200 && r.body === AMB12_LINES.slice(1, 4).join("\n") + "\n",
        `history: token=, epoch seconds, from and to inclusive\n${r.body}`);
    // limit: truncated when more exist, not when exactly that many do.
    r = await get(port, `/api/history?${qs({ ...range, limit: 2 })}`, bearer(ems));
    check(r.body === AMB12_LINES.slice(0, 2).join("\n") + '\n{"truncated":true}\n',
        `history: limit 2 of 5 says truncated\n${r.body}`);
    r = await get(port, `/api/history?${qs({ ...range, limit: 5, format: "ndjson" })}`, bearer(ems));
    check(r.body === AMB12_LINES.join("\n") + "\n", "history: limit 5 of 5 is not truncated");
    r = await get(port, `/api/history?${qs({ device: "AMB-12", from: 0, to: 1 })}`, bearer(ems));
    check(r.status === 200 && r.body === "", "history: an empty range is an empty 200");
    // An offset in the times.
    r = await get(port, `/api/history?${qs({ device: "AMB-12", from: "2026-11-23T13:20:02-05:00",
        to: "2026-11-23T13:20:02.000-05:00" })}`, bearer(ems));
    check(r.body === AMB12_LINES[1] + "\n", `history: RFC 3339 with an offset\n${r.body}`);

    // A chunked answer ends cleanly: the next request goes on the same connection.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const reused = [];
    for (const p of [`/api/history?${qs(range)}`, "/api/snapshot?agency=ems&at=1", "/healthz"]) {
        const res = await new Promise((resolve, reject) => {
            const req = http.get({ host: "127.0.0.1", port, path: p, headers: bearer(ems), agent },
                (x) => {
                    const parts = [];
                    x.on("data", (b) => parts.push(b));
                    x.on("end", () => resolve({ status: x.statusCode, body: Buffer.concat(parts) }));
                });
            req.on("socket", () => reused.push(req.reusedSocket));
            req.on("error", reject);
        });
        check(res.status === 200, `keep-alive: ${p} 200 (${res.status})`);
    }
    agent.destroy();
    check(JSON.stringify(reused) === "[false,true,true]", `keep-alive: one connection (${reused})`);
}

async function geojson(port) {
    const range = { device: "AMB-12", from: iso(T0), to: iso(T0 + 60000), format: "geojson" };
    let r = await get(port, `/api/history?${qs(range)}`, bearer(ems));
    check(r.status === 200 && r.headers["content-type"] === "application/geo+json",
        `geojson: 200 application/geo+json (${r.status})`);
    let fc;
    try { fc = JSON.parse(r.body); } catch (e) { fc = null; }
    check(fc !== null, `geojson: parses\n${r.body}`);
    if (fc === null) return;
    check(geojsonViolation(fc) === null, `geojson: RFC 7946 (${geojsonViolation(fc)})`);
    const positions = AMB12_LINES.map((l) => JSON.parse(l));
    const points = fc.features.slice(0, -1), track = fc.features[fc.features.length - 1];
    check(points.length === 5 && points.every((f) => f.geometry.type === "Point"),
        "geojson: a Point per position, in time order");
    points.forEach((f, i) => {
        const p = positions[i], { lat, lon, ...rest } = p;
        check(f.geometry.coordinates[0] === lon && f.geometry.coordinates[1] === lat,
            `geojson: Point ${i} is [lon, lat]`);
        check(JSON.stringify(f.properties) === JSON.stringify(rest),
            `geojson: Point ${i} properties are the position's other members`);
    });
    check(track.geometry.type === "LineString" &&
        JSON.stringify(track.geometry.coordinates) ===
        JSON.stringify(positions.map((p) => [p.lon, p.lat])) &&
        JSON.stringify(track.properties) === '{"device":"AMB-12"}',
        "geojson: the track's LineString last, [lon, lat] in time order");
    check(!("truncated" in fc), "geojson: no truncated member when complete");
    // Raw text: coordinates with the positions' own 7 decimals.
    check(r.body.includes('"coordinates":[-74.0060000,40.7128000]'), "geojson: 7 decimals");

    r = await get(port, `/api/history?${qs({ ...range, limit: 3 })}`, bearer(ems));
    fc = JSON.parse(r.body);
    check(fc.truncated === true && fc.features.length === 4 && geojsonViolation(fc) === null &&
        fc.features[3].geometry.coordinates.length === 3, "geojson: limit 3, truncated:true");
    r = await get(port, `/api/history?${qs({ ...range, limit: 1 })}`, bearer(ems));
    fc = JSON.parse(r.body);
    check(fc.features.length === 2 && fc.features[1].geometry === null && fc.truncated === true &&
        geojsonViolation(fc) === null, "geojson: one position, the track has no geometry");
    r = await get(port, `/api/history?${qs({ ...range, from: 0, to: 1 })}`, bearer(ems));
    fc = JSON.parse(r.body);
    check(fc.features.length === 1 && fc.features[0].geometry === null &&
        geojsonViolation(fc) === null, `geojson: no position\n${r.body}`);
}

async function snapshot(port) {
    const at = T0 + 10000;
    let r = await get(port, `/api/snapshot?${qs({ agency: "ems", at: iso(at) })}`, bearer(ems));
    check(r.status === 200 && r.headers["content-type"] === "application/json",
        `snapshot: 200 application/json (${r.status} ${r.body})`);
    check(r.body === `{"agency":"ems","at":"2026-11-23T18:20:11.000Z","positions":[` +
        `${AMB12_LINES[4]}],"missing":["AMB-7","X-1"]}`,
        `snapshot: the latest of AMB-12; AMB-7 older than stale_after and X-1 missing\n${r.body}`);
    // At an exact position time: that one. AMB-7 exactly stale_after - 1 s back: present.
    r = await get(port, `/api/snapshot?${qs({ agency: "ems", at: (T0 + 3500) / 1000 })}`, bearer(ems));
    let s = JSON.parse(r.body);
    check(s.positions.length === 2 && s.positions[0].seq === 1051 &&
        s.positions[1].device === "AMB-7" && JSON.stringify(s.missing) === '["X-1"]',
        `snapshot: at a position's own time, and the look-back\n${r.body}`);
    // Before anything: all missing.
    r = await get(port, `/api/snapshot?${qs({ agency: "ems", at: 1 })}`, bearer(ems));
    check(r.body === '{"agency":"ems","at":"1970-01-01T00:00:01.000Z","positions":[],' +
        '"missing":["AMB-12","AMB-7","X-1"]}', `snapshot: nothing yet\n${r.body}`);

    // 2,000 units: timed (reported, not asserted), the first on a cold cache.
    const fleet = mint(claims(["fleet"]));
    const times = [];
    for (let i = 0; i < 3; i++) {
        const t = process.hrtime.bigint();
        r = await get(port, `/api/snapshot?${qs({ agency: "fleet", at: iso(T0) })}`, bearer(fleet));
        times.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    s = JSON.parse(r.body);
    check(r.status === 200 && s.positions.length === FLEET * 0.9 && s.missing.length === FLEET / 10 &&
        s.missing.every((id) => Number(id.slice(2)) % 10 === 0) &&
        s.positions.every((p) => p.seq === 0 && Number(p.device.slice(2)) % 10 !== 0),
        `snapshot of ${FLEET} units: the latest of each, the stale ones missing`);
    console.log(`snapshot of ${FLEET} units (${FLEET * FLEET_ROWS} positions of theirs archived): ` +
        `${times.map((x) => x.toFixed(1)).join(", ")} ms`);
}

// Every refusal, with the metric counting them.
async function refusals(port, d) {
    const metric = (s) => d.metric(`gpsrelay_history_requests_total{status="${s}"}`);
    const before = {};
    for (const s of [200, 400, 401, 403, 405]) before[s] = await metric(s);
    const ok = { device: "AMB-12", from: 0, to: 2000000000 };
    const bad = [
        [{ ...ok, from: "yesterday" }, "bad from: RFC 3339 or seconds since 1970"],
        [{ ...ok, to: "2026-13-01T00:00:00Z" }, "bad to: RFC 3339 or seconds since 1970"],
        [{ ...ok, from: 2000000001 }, "from is after to"],
        [{ ...ok, limit: 0 }, "limit must be 1 to 100000"],
        [{ ...ok, limit: 100001 }, "limit must be 1 to 100000"],
        [{ ...ok, limit: "ten" }, "limit must be 1 to 100000"],
        [{ ...ok, format: "kml" }, "format must be ndjson or geojson"],
        [{ ...ok, colour: "red" }, "unknown parameter"],
        [{ from: 0, to: 1 }, "device is required"],
        [{ device: "AMB-12", to: 1 }, "from is required"],
    ];
    for (const [q, reason] of bad) {
        const r = await get(port, `/api/history?${qs(q)}`, bearer(ems));
        check(r.status === 400 && r.body === reason + "\n",
            `400 ${JSON.stringify(q)}: got ${r.status} ${JSON.stringify(r.body)}`);
    }
    let r = await get(port, `/api/history?${qs(ok)}&device=AMB-7`, bearer(ems));
    check(r.status === 400 && r.body === "device given twice\n", `400 twice: ${r.body}`);
    r = await get(port, `/api/history?${qs(ok)}&limit=${"9".repeat(3000)}`, bearer(ems));
    check(r.status === 400 && r.body === "query too long\n", `400 too long: ${r.body}`);
    for (const [q, reason] of [[{ agency: "ems", at: "noon" }, "bad at"], [{ at: 1 }, "agency"]]) {
        r = await get(port, `/api/snapshot?${qs(q)}`, bearer(ems));
        check(r.status === 400 && r.body.includes(reason) && r.body.split("\n").length === 2,
            `400 snapshot ${JSON.stringify(q)}: ${r.status} ${r.body}`);
    }

    // 401: none, forged, expired, another scheme, garbage; always WWW-Authenticate: Bearer.
    const path = `/api/history?${qs(ok)}`;
    const unauthorized = [
        {}, bearer(mint(claims(["ems"]), { key: "x".repeat(64) })),
        bearer(mint(claims(["ems"], { exp: now() - 3600 }))), { authorization: "Basic YTpi" },
        bearer("not.a.token"), bearer(mint(claims(["ems"]), { alg: "none" })),
    ];
    for (const h of unauthorized) {
        r = await get(port, path, h);
        check(r.status === 401 && r.headers["www-authenticate"] === "Bearer",
            `401 ${JSON.stringify(h).slice(0, 40)}: got ${r.status}`);
    }
    r = await get(port, `${path}&token=garbage`);
    check(r.status === 401, "401: a bad token= argument");
    // Auth comes before parameters: no hints for those without a token.
    r = await get(port, "/api/history?device=NOPE");
    check(r.status === 401, "401 before 400");

    // 403: a foreign device and an unknown one look the same; so do agencies.
    const foreign = await get(port, `/api/history?${qs({ ...ok, device: "E-7" })}`, bearer(ems));
    const unknown = await get(port, `/api/history?${qs({ ...ok, device: "NOPE-9" })}`, bearer(ems));
    check(foreign.status === 403 && unknown.status === 403 && foreign.body === unknown.body &&
        JSON.stringify(foreign.headers["content-length"]) ===
        JSON.stringify(unknown.headers["content-length"]),
        `403: foreign and unknown device alike (${foreign.status} ${unknown.status})`);
    const fa = await get(port, `/api/snapshot?${qs({ agency: "fire", at: 1 })}`, bearer(ems));
    const ua = await get(port, `/api/snapshot?${qs({ agency: "nope", at: 1 })}`, bearer(ems));
    check(fa.status === 403 && ua.status === 403 && fa.body === ua.body && fa.body === foreign.body,
        "403: foreign and unknown agency alike, as devices");
    // Origin: refused when not allowed, served when it is.
    r = await get(port, path, { ...bearer(ems), origin: "https://evil.example" });
    check(r.status === 403, `403: Origin not allowed (${r.status})`);
    r = await get(port, path, { ...bearer(ems), origin: ORIGIN });
    check(r.status === 200, `200: Origin allowed (${r.status})`);
    r = await get(port, path, bearer(ems), "POST");
    check(r.status === 405, `405: POST (${r.status})`);

    const after = {};
    for (const s of [200, 400, 401, 403, 405]) after[s] = await metric(s);
    check(after[400] - before[400] === bad.length + 4, `metric: 400s counted (${after[400] - before[400]})`);
    check(after[401] - before[401] === unauthorized.length + 2, "metric: 401s counted");
    check(after[403] - before[403] === 5, "metric: 403s counted");
    check(after[405] - before[405] === 1 && after[200] - before[200] === 1, "metric: 405, 200");
}

// Reads /proc/PID/status fields in kB.
function procStatus(pid) {
    const text = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const field = (n) => Number((text.match(new RegExp(`^${n}:\\s+(\\d+)`, "m")) || [])[1]);
    return { rss: field("VmRSS"), hwm: field("VmHWM") };
}
const sanitized = (pid) => /libasan|libclang_rt\.asan/.test(fs.readFileSync(`/proc/${pid}/maps`, "utf8"));

// A request whose body is consumed by onData(chunk, res, req); resolves with status and
// byte count when it ends, or "aborted".
function stream(port, path, headers, onData = () => {}) {
    return new Promise((resolve, reject) => {
        const req = http.get({ host: "127.0.0.1", port, path, headers, agent: false }, (res) => {
            let bytes = 0;
            res.on("data", (b) => { bytes += b.length; onData(b, res, req); });
            res.on("end", () => resolve({ status: res.statusCode, bytes }));
            res.on("aborted", () => resolve({ status: res.statusCode, bytes, aborted: true }));
            res.on("error", () => resolve({ status: res.statusCode, bytes, aborted: true }));
        });
        req.on("error", (e) => (req.destroyed ? resolve({ aborted: true }) : reject(e)));
    });
}

async function day(port, d) {
    const pid = d.child.pid, asan = sanitized(pid);
    const path = (extra) => `/api/history?${qs({ device: "BIG-1", from: iso(DAY0),
        to: iso(DAY0 + 86400000 - 1), limit: 100000, ...extra })}`;
    const base = procStatus(pid);
    let t = process.hrtime.bigint();
    let r = await get(port, path({}), bearer(big));
    const ndjsonMs = Number(process.hrtime.bigint() - t) / 1e6;
    const lines = r.body.split("\n");
    check(r.status === 200 && lines.length === DAY_ROWS + 1 && lines[DAY_ROWS] === "",
        `day: ${DAY_ROWS} lines (got ${lines.length - 1})`);
    let ordered = true;
    for (let i = 0; i < DAY_ROWS && ordered; i += 997)
        ordered = JSON.parse(lines[i]).seq === 100000 + i;
    check(ordered, "day: in time order");
    const after = procStatus(pid);
    const answerKb = Math.round(r.body.length / 1024);
    console.log(`day of 1 Hz (${DAY_ROWS} positions, ${answerKb} KiB ndjson): ${ndjsonMs.toFixed(0)} ms; ` +
        `daemon RSS peak ${base.hwm} -> ${after.hwm} kB${asan ? " (sanitizer build: not asserted)" : ""}`);
    if (!asan)
        check(after.hwm - base.hwm < answerKb / 4,
            `day: the answer (${answerKb} KiB) is not held whole (peak grew ${after.hwm - base.hwm} kB)`);

    t = process.hrtime.bigint();
    r = await get(port, path({ format: "geojson" }), bearer(big));
    const geoMs = Number(process.hrtime.bigint() - t) / 1e6;
    const fc = JSON.parse(r.body);
    check(fc.features.length === DAY_ROWS + 1 && geojsonViolation(fc) === null &&
        fc.features[DAY_ROWS].geometry.coordinates.length === DAY_ROWS,
        "day: geojson with a LineString of the whole day");
    console.log(`day as geojson (${Math.round(r.body.length / 1024)} KiB): ${geoMs.toFixed(0)} ms; ` +
        `RSS peak ${procStatus(pid).hwm} kB`);

    // A slow reader: nothing read for 2 s, then all of it. Rows wait in PostgreSQL's socket.
    const slowBase = procStatus(pid);
    let paused = false;
    const slow = await stream(port, path({}), bearer(big), (b, res) => {
        if (paused) return;
        paused = true;
        res.pause();
        setTimeout(() => res.resume(), 2000);
    });
    const slowAfter = procStatus(pid);
    check(slow.status === 200 && slow.bytes === Buffer.byteLength(lines.join("\n")),
        `day: a slow reader gets all of it (${slow.bytes} bytes)`);
    if (!asan)
        check(slowAfter.hwm - slowBase.hwm < answerKb / 4,
            `day: a slow reader costs no answer-sized memory (${slowAfter.hwm - slowBase.hwm} kB)`);
}

// Clients that go away mid-answer: nothing leaks (ASan at exit), the pool gets its
// connections back.
async function walkaways(port) {
    const path = `/api/history?${qs({ device: "BIG-1", from: iso(DAY0),
        to: iso(DAY0 + 86400000), limit: 100000 })}`;
    for (let i = 0; i < QUERIES_MAX + 2; i++) {
        const r = await stream(port, path, bearer(big), (b, res, req) => req.destroy());
        check(r.aborted, `walkaway ${i}: cut by the client`);
    }
    // Every slot usable again: QUERIES_MAX at once all answer 200 (once the daemon has seen
    // the last client go; a slot lost for good would fail this until the deadline).
    let all;
    await until(`${QUERIES_MAX} queries at once after walkaways`, async () => {
        all = await waitAll(port, QUERIES_MAX);
        return all.every((r) => r.status === 200);
    });
    check(all.every((r) => r.body === AMB12_LINES.join("\n") + "\n"),
        `after walkaways: ${QUERIES_MAX} at once all 200 (${all.map((r) => r.status)})`);
}

// n requests at once for AMB-12's positions.
function waitAll(port, n) {
    const path = `/api/history?${qs({ device: "AMB-12", from: 0, to: 2000000000 })}`;
    return Promise.all(Array.from({ length: n }, () => get(port, path, bearer(ems))));
}

async function until(what, fn) {
    const deadline = Date.now() + WAIT_MS;
    while (Date.now() < deadline) {
        if (await fn()) return true;
        await new Promise((r) => setTimeout(r, 100));
    }
    check(false, `timed out waiting for ${what}`);
    return false;
}

// A request for BIG-1's day whose reader stops after the first bytes: `first` resolves
// then, resume() reads the rest, `done` resolves with status and bytes.
function heldReader(port) {
    const path = `/api/history?${qs({ device: "BIG-1", from: iso(DAY0),
        to: iso(DAY0 + 86400000), limit: 100000 })}`;
    let first, resume;
    const got = new Promise((r) => { first = r; });
    const ready = new Promise((r) => { resume = r; });
    const done = stream(port, path, bearer(big), (b, res) => {
        if (res.held) return;
        res.held = true;
        res.pause();
        first();
        ready.then(() => res.resume());
    });
    return { first: got, resume, done };
}

async function unavailable(port, pg) {
    const path = `/api/history?${qs({ device: "AMB-12", from: 0, to: 2000000000 })}`;
    // GR_HISTORY_QUERIES_MAX answers in flight to readers that stopped: one more is 503.
    const held = Array.from({ length: QUERIES_MAX }, () => heldReader(port));
    await Promise.all(held.map((h) => h.first));
    let r = await get(port, path, bearer(ems));
    check(r.status === 503 && r.headers["retry-after"] === "1" && r.body === "too many queries\n",
        `503: too many queries, Retry-After 1 (${r.status} ${r.body})`);
    held.forEach((h) => h.resume());
    const done = await Promise.all(held.map((h) => h.done));
    check(done.every((x) => x.status === 200 && !x.aborted && x.bytes > 14000000),
        `held answers complete once read (${done.map((x) => `${x.status}/${x.bytes}`)})`);

    // A frozen archive holds a query (deliberately, for 500 ms); thawed, it is answered.
    await pg.freeze();
    let settled = false;
    const frozen = get(port, path, bearer(ems)).then((x) => { settled = true; return x; });
    await new Promise((res) => setTimeout(res, 500));
    check(!settled, "a frozen archive holds the query");
    await pg.thaw();
    r = await frozen;
    check(r.status === 200 && r.body === AMB12_LINES.join("\n") + "\n",
        `answered once thawed (${r.status})`);

    // The archive lost in the middle of an answer: the client sees it end early (no final
    // chunk), not a complete-looking answer.
    const cut = heldReader(port);
    await cut.first;
    await pg.stop();
    cut.resume();
    const c = await cut.done;
    check(c.status === 200 && c.aborted && c.bytes < 14000000,
        `archive lost mid-answer: the answer is cut (${c.bytes} bytes, aborted ${c.aborted})`);

    // The archive down: 503 unreachable; back: 200 again.
    r = await get(port, path, bearer(ems));
    if (r.status !== 503) // an idle connection may notice the shutdown only now
        r = await get(port, path, bearer(ems));
    check(r.status === 503 && r.headers["retry-after"] === "1" &&
        r.body === "archive unreachable\n", `503: archive down (${r.status} ${r.body})`);
    await pg.start();
    await until("the archive back", async () => (await get(port, path, bearer(ems))).status === 200);
}

async function main() {
    const pg = await Pg.create();
    await fill(pg);
    const archive = `archive_postgres "${pg.conninfo}"\nstale_after ${STALE_AFTER}\n`;

    const d = await Daemon.create(binary, CSV, "auth jwt\nauth_secret_file secret\n" +
        `allowed_origin ${ORIGIN}\n${archive}`, { secret: SECRET });
    daemons.push(d);
    await d.start();
    const port = d.ports.ws;
    await ndjson(port);
    await geojson(port);
    await snapshot(port);
    await refusals(port, d);
    await day(port, d);
    await walkaways(port);
    await unavailable(port, pg);
    const code = await d.stop();
    check(code === 0, `daemon exit 0 (sanitizers found nothing) (got ${code})`);
    d.cleanup();

    // auth none: any device the mapping knows, unknown ones 403.
    const n = await Daemon.create(binary, CSV, `auth none\n${archive}`);
    daemons.push(n);
    await n.start();
    let r = await get(n.ports.ws, `/api/history?${qs({ device: "E-7", from: 0, to: 2000000000 })}`);
    check(r.status === 200 && JSON.parse(r.body).device === "E-7", "auth none: any known device");
    r = await get(n.ports.ws, `/api/history?${qs({ device: "NOPE", from: 0, to: 1 })}`);
    check(r.status === 403 && r.body === "forbidden\n", "auth none: an unknown device 403");
    r = await get(n.ports.ws, `/api/snapshot?${qs({ agency: "nope", at: 1 })}`);
    check(r.status === 403, "auth none: an unknown agency 403");
    // Stopped in the middle of an answer: the answer is cut, nothing leaks.
    const held = heldReader(n.ports.ws);
    await held.first;
    const exit = n.stop();
    held.resume();
    const h = await held.done;
    check(h.aborted && h.bytes < 14000000, `stopped mid-answer: cut (${h.bytes} bytes)`);
    check(await exit === 0, "auth none daemon, stopped mid-answer: exit 0");
    n.cleanup();

    // No archive_postgres: no such endpoints.
    const none = await Daemon.create(binary, CSV, "auth none\n");
    daemons.push(none);
    await none.start();
    r = await get(none.ports.ws, `/api/history?${qs({ device: "AMB-12", from: 0, to: 1 })}`);
    const s = await get(none.ports.ws, "/api/snapshot?agency=ems&at=1");
    check(r.status === 404 && s.status === 404, `404 without archive_postgres (${r.status})`);
    check(await none.metric('gpsrelay_history_requests_total{status="404"}') === 2, "404s counted");
    check(await none.stop() === 0, "archive-less daemon exit 0");
    none.cleanup();
    await pg.destroy();
}

main().then(report, (e) => {
    console.error(e);
    check(false, "threw");
    report();
});
