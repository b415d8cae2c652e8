// security.js - tries to break gpsrelayd's console and ingest protection
// (docs/configuration.md, docs/protocol.md): forged and foreign tokens, bad Origins,
// cross-agency joins, a device moved between agencies mid-stream, expiring tokens, join
// floods, per-source limits, spoofed-source UDP floods, TLS, and a randomized isolation
// test over many agencies and consoles.
//
// Tokens are minted here with Node's own crypto, never with gpsrelay's signing code, so
// a bug in one cannot hide a bug in the other.
//
// usage: node security.js /path/to/gpsrelayd /path/to/gpsrelayctl
"use strict";

const { Socket } = require("phoenix");
const WebSocket = require("ws");
const crypto = require("node:crypto");
const { execFileSync, spawnSync } = require("node:child_process");
const https = require("node:https");
const path = require("node:path");
const tls = require("node:tls");
const { Daemon, rmc, check, report, WAIT_MS } = require("./daemon");

const [, , BINARY, CTL] = process.argv;
const { SECRET, now, b64url, mint, claims } = require("./token");

// Opens a raw WebSocket; resolves {status, ws, protocol} (status 101 when it opened).
function connect(daemon, { token, origin, protocols, from, scheme = "ws" } = {}) {
    const q = token ? `&token=${token}` : "";
    const url = `${scheme}://127.0.0.1:${daemon.ports.ws}/socket/websocket?vsn=2.0.0${q}`;
    return new Promise((resolve) => {
        const ws = new WebSocket(url, protocols || [], {
            headers: origin ? { Origin: origin } : {}, localAddress: from,
            rejectUnauthorized: false,
        });
        const timer = setTimeout(() => { ws.terminate(); resolve({ status: 0 }); }, 3000);
        const done = (r) => { clearTimeout(timer); resolve(r); };
        ws.on("open", () => done({ status: 101, ws, protocol: ws.protocol }));
        ws.on("unexpected-response", (req, res) => { done({ status: res.statusCode }); req.destroy(); });
        ws.on("error", () => done({ status: 0 }));
        ws.on("close", () => done({ status: 0 }));
    });
}

function socketFor(daemon, token, opts = {}) {
    const s = new Socket(`ws://127.0.0.1:${daemon.ports.ws}/socket`,
        { transport: WebSocket, params: { token }, reconnectAfterMs: () => 60000, ...opts });
    s.connect();
    return s;
}

function join(socket, topic) {
    const ch = socket.channel(topic, {});
    return new Promise((resolve) => {
        ch.join().receive("ok", () => resolve({ ok: true, ch }))
            .receive("error", (e) => resolve({ ok: false, reason: e.reason, ch }))
            .receive("timeout", () => resolve({ ok: false, reason: "timeout", ch }));
    });
}

const until = async (what, fn, ms = WAIT_MS) => {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
        if (await fn()) return true;
        await new Promise((r) => setTimeout(r, 25));
    }
    console.error(`timed out waiting for ${what}`);
    return false;
};

const CSV = "device_id,agency_id,label,source_addr\nAMB-12,county-ems,,\nAMB-12,city-fire,,\n" +
    "AMB-7,county-ems,,\nE-7,city-fire,,\n";

async function testTokens(d) {
    const refused = async (label, opts, reason) => {
        const before = await d.metric(`gpsrelay_consoles_refused_total{reason="${reason}"}`);
        const r = await connect(d, opts);
        check(r.status === 403, `${label}: 403 (got ${r.status})`);
        check(await d.metric(`gpsrelay_consoles_refused_total{reason="${reason}"}`) === before + 1,
            `${label}: counted as ${reason}`);
    };
    const good = mint(claims(["county-ems"]));
    const [h, , s] = good.split(".");
    await refused("no token", {}, "token_missing");
    await refused("forged payload", { token: `${h}.${b64url(JSON.stringify(claims(["city-fire"])))}.${s}` },
        "token_bad_signature");
    await refused("wrong key", { token: mint(claims(["county-ems"]), { key: "another key of some length" }) },
        "token_bad_signature");
    await refused("alg none", { token: mint(claims(["county-ems"]), { alg: "none" }) }, "token_bad_alg");
    await refused("alg none, signed", { token: mint(claims(["county-ems"]), { header: { alg: "none" } }) },
        "token_bad_alg");
    await refused("alg HS512", { token: mint(claims(["county-ems"]), { alg: "HS512" }) }, "token_bad_alg");
    await refused("expired", { token: mint(claims(["county-ems"], { exp: now() - 3600 })) }, "token_expired");
    await refused("no agencies", { token: mint({ exp: now() + 60 }) }, "token_bad_claims");
    await refused("bad origin", { token: good, origin: "https://evil.example" }, "bad_origin");

    const ok = await connect(d, { token: good, origin: "https://cad.example" });
    check(ok.status === 101, "allowed origin opens");
    ok.ws?.close();
    // Phoenix's authToken subprotocol is not supported: lws 4.1.6 copies
    // Sec-WebSocket-Protocol into a 128-byte buffer and drops longer ones before any
    // callback of ours runs, and no signed token fits. Such a console is refused as having
    // no token, never admitted without it, and nothing breaks.
    await refused("authToken subprotocol (lws 4.1.6 limit)",
        { protocols: ["phoenix", `base64url.bearer.phx.${Buffer.from(good).toString("base64").replace(/=/g, "")}`] },
        "token_missing");
    check((await connect(d, { token: good })).status === 101, "daemon unharmed after it");
    // One short enough for lws to pass on: the daemon does not read the header, so the
    // request has no token at all.
    const short = Buffer.from("eyJ0eXAiOiJKV1QifQ.e30.c2ln").toString("base64").replace(/=/g, "");
    await refused("authToken subprotocol under 128 bytes",
        { protocols: ["phoenix", `base64url.bearer.phx.${short}`] }, "token_missing");
    // ...and the same with a token= as well: the parameter's token is the one read.
    const both = await connect(d, { token: good, protocols: ["phoenix", `base64url.bearer.phx.${short}`] });
    check(both.status === 101 && both.protocol === "phoenix", "token= wins over a subprotocol offered too");
    both.ws?.close();
    const ctl = execFileSync(CTL, ["token", "--secret-file", path.join(d.dir, "secret"),
        "--agency", "county-ems", "--ttl", "60"]).toString().trim();
    const [ch, cp, cs] = ctl.split(".");
    const expect = b64url(crypto.createHmac("sha256", SECRET).update(`${ch}.${cp}`).digest());
    check(cs === expect, "gpsrelayctl's token verifies with Node's HMAC");
    const viaCtl = await connect(d, { token: ctl });
    check(viaCtl.status === 101, "gpsrelayctl's token admitted");
    viaCtl.ws?.close();
}

async function testAuthorization(d) {
    const s = socketFor(d, mint(claims(["county-ems"])));
    check((await join(s, "agency:county-ems")).ok, "join own agency");
    const foreign = await join(s, "agency:city-fire");
    check(!foreign.ok && foreign.reason === "unauthorized", "foreign agency: unauthorized");
    const e7 = await join(s, "device:E-7");
    check(!e7.ok && e7.reason === "unauthorized", "foreign agency's unit: unauthorized");
    const amb12 = await join(s, "device:AMB-12");
    check(amb12.ok, "a unit shared with the own agency may be joined");

    // AMB-12 leaves county-ems mid-stream: unit_removed, the device channel closes, and
    // its positions stop at once.
    const agency = s.channels.find((c) => c.topic === "agency:county-ems");
    const removed = new Promise((r) => agency.on("unit_removed", (p) => r(p.device)));
    const closed = new Promise((r) => amb12.ch.onClose(() => r(true)));
    const seen = [];
    agency.on("positions", (p) => p.positions.forEach((x) => seen.push(x.device)));
    d.write("devices.csv", "device_id,agency_id,label,source_addr\nAMB-12,city-fire,,\nAMB-7,county-ems,,\nE-7,city-fire,,\n");
    process.kill(d.child.pid, "SIGHUP");
    check(await removed === "AMB-12", "unit_removed for the moved unit");
    check(await closed, "device channel of the moved unit closed");
    await d.send(rmc("AMB-12", 40.1, -74.1));
    await d.send(rmc("AMB-7", 40.2, -74.2));
    await until("AMB-7's position", () => seen.includes("AMB-7"));
    check(!seen.includes("AMB-12"), "no position of the moved unit");
    s.disconnect();
    d.write("devices.csv", CSV);
    process.kill(d.child.pid, "SIGHUP");
}

async function testExpiryAndFloods(d) {
    // exp already past but inside the 30 s skew: admitted, then closed with 1008.
    const r = await connect(d, { token: mint(claims(["county-ems"], { exp: now() - 28 })) });
    check(r.status === 101, "token within skew admitted");
    const code = await new Promise((res) => {
        const t = setTimeout(() => res(0), WAIT_MS);
        r.ws.on("close", (c) => { clearTimeout(t); res(c); });
    });
    check(code === 1008, `expired session closed with 1008 (got ${code})`);

    // 150 joins at once: the burst of 100 passes (unauthorized topics here), the rest are
    // refused as too many joins.
    console.error("floods: expiry done");
    const f = await connect(d, { token: mint(claims(["county-ems"])) });
    const replies = [];
    f.ws.on("message", (m) => replies.push(JSON.parse(m)));
    const before = await d.metric('gpsrelay_joins_refused_total{reason="rate_limited"}');
    for (let i = 0; i < 150; i++) f.ws.send(JSON.stringify([`${i}`, `${i}`, `agency:x${i}`, "phx_join", {}]));
    await until("150 replies", () => replies.length >= 150);
    const limited = replies.filter((m) => m[4].response?.reason === "too many joins").length;
    check(limited >= 40 && limited <= 50, `join flood: ${limited} of 150 refused as too many joins`);
    check(await d.metric('gpsrelay_joins_refused_total{reason="rate_limited"}') === before + limited,
        "join flood counted");
    f.ws.close();

    console.error("floods: join flood done", await d.metric("gpsrelay_consoles_connected"));
    // Connections per source (max_connections_per_source 20), from a source of its own.
    const token = mint(claims(["county-ems"]));
    const held = [];
    for (let i = 0; i < 20; i++) held.push(await connect(d, { token, from: "127.0.0.9" }));
    check(held.every((c) => c.status === 101), "20 consoles from one source");
    const over = await connect(d, { token, from: "127.0.0.9" });
    check(over.status === 503, `21st console from that source: 503 (got ${over.status})`);
    check(await d.metric('gpsrelay_consoles_refused_total{reason="per_source_limit"}') >= 1, "counted");
    const other = await connect(d, { token, from: "127.0.0.10" });
    check(other.status === 101, "another source is not affected");
    held.concat([other]).forEach((c) => c.ws?.close());
    console.error("floods: per source done", await d.metric("gpsrelay_consoles_connected"));
}

// Many agencies, devices in one to three of them, consoles with one or two agencies:
// every console sees exactly its agencies' devices, and ends on each one's last position.
async function testIsolation(d) {
    let seed = 12345; // mulberry32: 32-bit integer steps, exact in JavaScript numbers
    const rand = (n) => {
        seed = (seed + 0x6d2b79f5) | 0;
        let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
        t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
        return ((t ^ (t >>> 14)) >>> 0) % n;
    };
    const agencies = Array.from({ length: 8 }, (_, i) => `ag${i}`);
    const devices = Array.from({ length: 60 }, (_, i) => `U-${i}`);
    const member = new Map(devices.map((dev) => {
        const set = new Set();
        const n = 1 + rand(3);
        while (set.size < n) set.add(agencies[rand(agencies.length)]);
        return [dev, set];
    }));
    let csv = "device_id,agency_id,label,source_addr\n";
    for (const [dev, set] of member) for (const a of set) csv += `${dev},${a},,\n`;
    d.write("devices.csv", csv);
    process.kill(d.child.pid, "SIGHUP");
    await until("mapping reload", async () => await d.metric("gpsrelay_mapping_devices") === 60);

    console.error("isolation: before joins", await d.metric("gpsrelay_consoles_connected"),
        await d.metric('gpsrelay_consoles_refused_total{reason="per_source_limit"}'));
    const views = agencies.map((a) => [a]).concat(
        Array.from({ length: 4 }, () => [agencies[rand(8)], agencies[rand(8)]]));
    const consoles = [];
    for (const view of views) {
        const s = socketFor(d, mint(claims([...new Set(view)])));
        const got = new Map(); // device -> [seq...] over all its channels
        const perChannel = []; // "topic device seq": each exactly once per channel
        for (const a of new Set(view)) {
            const { ok, ch } = await join(s, `agency:${a}`);
            check(ok, `join agency:${a}`);
            ch.on("positions", (p) => p.positions.forEach((x) => {
                if (!member.get(x.device)?.has(a)) perChannel.push(`LEAK ${a} ${x.device}`);
                perChannel.push(`${a} ${x.device} ${x.seq}`);
                if (!got.has(x.device)) got.set(x.device, []);
                got.get(x.device).push(x.seq);
            }));
        }
        consoles.push({ view: new Set(view), s, got, perChannel });
    }

    console.error("isolation: consoles joined");
    const base = Date.now() - 120000;
    const last = new Map();
    for (let round = 0; round < 25; round++) {
        let datagram = "";
        for (const [i, dev] of devices.entries()) datagram += rmc(dev, 40 + i * 0.01 + round * 1e-5, -74, base + round * 1000);
        await d.send(datagram);
    }
    // The last position of every device has the highest seq the daemon gave it.
    await until("all published", async () => await d.metric("gpsrelay_positions_published_total") >= 1500);
    console.error("isolation: published", await d.metric("gpsrelay_positions_published_total"));
    const sees = (c, dev) => [...member.get(dev)].some((a) => c.view.has(a));
    const converged = () => consoles.every((c) => devices.every((dev) =>
        !sees(c, dev) || (c.got.get(dev) || []).length > 0 &&
        Math.max(...c.got.get(dev)) >= (last.get(dev) || 0)));
    // Convergence: each console's newest seq per device stops changing at the daemon's
    // newest; record the maximum seen by anyone as the truth.
    await until("convergence", () => {
        for (const c of consoles) for (const [dev, seqs] of c.got) last.set(dev, Math.max(last.get(dev) || 0, ...seqs));
        return last.size === 60 && converged();
    });
    let leaks = 0, dups = 0, missing = 0;
    for (const c of consoles) {
        for (const dev of c.got.keys()) if (!sees(c, dev)) leaks++;
        leaks += c.perChannel.filter((e) => e.startsWith("LEAK")).length;
        dups += c.perChannel.length - new Set(c.perChannel).size;
        for (const dev of devices) if (sees(c, dev) && Math.max(...(c.got.get(dev) || [0])) !== last.get(dev)) missing++;
        c.s.disconnect();
    }
    check(leaks === 0, `isolation: ${leaks} foreign device(s) seen`);
    check(dups === 0, `isolation: ${dups} duplicated position(s)`);
    check(missing === 0, `isolation: ${missing} console/device pair(s) not on the last position`);
}

// Ingest protection on a daemon of its own: ingest_allow and ingest_rate_limit.
async function testIngest() {
    const d = await Daemon.create(BINARY, "device_id,agency_id,label,source_addr\nAMB-12,county-ems,,\n",
        "auth none\ningest_allow 127.0.0.1/32\ningest_rate_limit 5\n");
    await d.start();
    for (let i = 2; i < 52; i++) await d.send(rmc("AMB-12", 40, -74), `127.0.0.${i}`);
    const base = Date.now() - 60000;
    let burst = "";
    for (let i = 0; i < 20; i++) burst += rmc("AMB-12", 40 + i * 1e-4, -74, base + i * 1000);
    await d.send(burst);
    await until("counters", async () => await d.metric("gpsrelay_ingest_rate_limited_total") === 15);
    check(await d.metric("gpsrelay_ingest_not_allowed_total") === 50, "50 spoofed sources dropped, counted");
    check(await d.metric("gpsrelay_ingest_rate_limited_total") === 15, "15 of 20 over the rate, counted");
    check(await d.metric("gpsrelay_positions_published_total") === 5, "the burst of 5 published");
    check(await d.stop() === 0, "ingest daemon exits 0");
    d.cleanup();
}

async function testTls() {
    const d = await Daemon.create(BINARY, CSV,
        "auth jwt\nauth_secret_file secret\ntls_cert cert.pem\ntls_key key.pem\n", { secret: SECRET });
    execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-subj", "/CN=localhost", "-keyout", path.join(d.dir, "key.pem"),
        "-out", path.join(d.dir, "cert.pem")], { stdio: "ignore" });
    await d.start("https");
    const alpn = await new Promise((resolve) => {
        const s = tls.connect({ host: "127.0.0.1", port: d.ports.ws, ALPNProtocols: ["h2", "http/1.1"],
            rejectUnauthorized: false }, () => { resolve(s.alpnProtocol); s.end(); });
        s.on("error", () => resolve(null));
    });
    check(alpn === "http/1.1", `TLS: ALPN http/1.1 (got ${alpn})`);
    const plain = await d.ready("http");
    check(!plain, "TLS: plain HTTP refused");
    const r = await connect(d, { scheme: "wss", token: mint(claims(["county-ems"])) });
    check(r.status === 101, "TLS: wss console with a token opens");
    r.ws?.close();
    check(await d.stop() === 0, "TLS daemon exits 0");
    d.cleanup();
}

// A key others can read, or auth none on a public address: refused at start, exit 78.
async function testRefusedConfigs() {
    const d = await Daemon.create(BINARY, CSV, "auth jwt\nauth_secret_file secret\n", { secret: SECRET });
    require("node:fs").chmodSync(path.join(d.dir, "secret"), 0o644);
    const r = spawnSync(BINARY, ["-t", "-c", path.join(d.dir, "gpsrelay.conf")]);
    check(r.status === 78 && /readable or writable by others/.test(r.stderr), "world-readable key refused");
    d.write("gpsrelay.conf", "listen_udp 127.0.0.1:0\nlisten_ws 0.0.0.0:0\nmapping_file devices.csv\nauth none\n");
    const n = spawnSync(BINARY, ["-t", "-c", path.join(d.dir, "gpsrelay.conf")]);
    check(n.status === 78 && /auth none is only allowed/.test(n.stderr), "auth none off loopback refused");
    d.cleanup();
}

async function main() {
    const d = await Daemon.create(BINARY, CSV,
        "auth jwt\nauth_secret_file secret\nallowed_origin https://cad.example\n" +
        "max_connections_per_source 20\ningest_rate_limit 100000\n", { secret: SECRET });
    await d.start();
    try {
        console.error("== testTokens");
        await testTokens(d);
        console.error("== testAuthorization");
        await testAuthorization(d);
        console.error("== testExpiryAndFloods");
        await testExpiryAndFloods(d);
        console.error("== testIsolation");
        await testIsolation(d);
        console.error("== testIngest");
        await testIngest();
        console.error("== testTls");
        await testTls();
        console.error("== testRefusedConfigs");
        await testRefusedConfigs();
    } catch (e) {
        check(false, e.stack);
    } finally {
        check(await d.stop() === 0, "daemon exits 0");
        d.cleanup();
    }
    report();
}

main();
