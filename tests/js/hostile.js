// hostile.js - consoles that misbehave on purpose, one regression test per hole an
// adversarial run found on the console side: none of them may take the daemon down,
// stall it, or see another agency's positions. Raw sockets, so every byte is ours.
//
// usage: node hostile.js /path/to/gpsrelayd
"use strict";

const fs = require("node:fs");
const net = require("node:net");
const path = require("node:path");
const { Daemon, rmc, check, report } = require("./daemon");
const { SECRET, mint, claims } = require("./token");

const [, , BINARY] = process.argv;

const CSV = "device_id,agency_id,label,source_addr\nAMB-12,county-ems,,\nE-7,city-fire,,\n";

// Connects from `from` (a 127.0.0.x address) and resolves the socket once connected.
function dial(port, from = "127.0.0.1") {
    return new Promise((resolve, reject) => {
        const s = net.connect({ host: "127.0.0.1", port, localAddress: from }, () => resolve(s));
        s.on("error", reject);
    });
}

// Reads one HTTP response from s: {status, headers, body}, or {status: 0, closed: true}
// when the connection ends first. Bounded by ms.
function readResponse(s, ms = 15000) {
    return new Promise((resolve) => {
        let buf = Buffer.alloc(0);
        const done = (r) => {
            clearTimeout(timer);
            s.removeListener("data", onData);
            s.removeListener("close", onClose);
            resolve(r);
        };
        const timer = setTimeout(() => done({ status: 0, timeout: true }), ms);
        const onData = (chunk) => {
            buf = Buffer.concat([buf, chunk]);
            const end = buf.indexOf("\r\n\r\n");
            if (end < 0) return;
            const head = buf.subarray(0, end).toString();
            const status = Number(head.split(" ")[1]);
            const m = /content-length:\s*(\d+)/i.exec(head);
            const len = m ? Number(m[1]) : 0;
            if (buf.length - end - 4 < len) return;
            done({ status, head, body: buf.subarray(end + 4, end + 4 + len).toString() });
        };
        const onClose = () => done({ status: 0, closed: true });
        s.on("data", onData);
        s.on("close", onClose);
    });
}

async function request(d, text, from) {
    const s = await dial(d.ports.ws, from);
    s.write(text);
    const r = await readResponse(s);
    s.destroy();
    return r;
}

const lpPath = (q) => `/socket/longpoll?vsn=2.0.0${q}`;
const get = (p) => `GET ${p} HTTP/1.1\r\nHost: x\r\n\r\n`;
const post = (p, body, len = Buffer.byteLength(body)) =>
    `POST ${p} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n` +
    `Content-Length: ${len}\r\n\r\n${body}`;

// A new LongPoll session: its token.
async function lpSession(d, auth = "", from) {
    const r = await request(d, get(lpPath(auth)), from);
    const body = r.status === 200 ? JSON.parse(r.body) : {};
    return body.status === 410 ? body.token : null;
}

async function alive(d) {
    const r = await request(d, get("/healthz"));
    return r.status === 200;
}

const until = async (fn, ms = 10000) => {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
        if (await fn()) return true;
        await new Promise((r) => setTimeout(r, 25));
    }
    return false;
};

// A POST whose body is still arriving while the sweep frees its session (it died from a
// malformed POST): the body's completion must find no session (410), not a freed one.
async function testBodyOutlivesSession(d) {
    const token = await lpSession(d);
    const slow = await dial(d.ports.ws);
    const frame = '[null,"1","phoenix","heartbeat",{}]\n';
    slow.write(post(lpPath(`&token=${token}`), frame, frame.length).slice(0, -5)); // body short by 5
    const malformedBefore = await d.metric('gpsrelay_consoles_closed_total{reason="malformed"}');
    const bad = await request(d, post(lpPath(`&token=${token}`), "not json\n"));
    check(bad.status === 200 && JSON.parse(bad.body).status === 400, "malformed POST: status 400");
    check(await until(async () =>
        await d.metric('gpsrelay_consoles_closed_total{reason="malformed"}') === malformedBefore + 1),
    "the sweep ended the session");
    slow.write(frame.slice(-5));
    const r = await readResponse(slow);
    slow.destroy();
    check(r.status === 200 && JSON.parse(r.body).status === 410,
        `the late body finds no session: 410 (got ${r.status} ${r.body})`);
    check(await alive(d), "daemon alive after a body outlived its session");
}

// Empty bodies and frames: lws passes NULL with length 0.
async function testEmptyInputs(d) {
    const token = await lpSession(d);
    const r = await request(d, post(lpPath(`&token=${token}`), ""));
    check(r.status === 200 && JSON.parse(r.body).status === 200, `POST with Content-Length: 0 answered 200 (got ${r.body})`);

    const WebSocket = require("ws");
    const ws = new WebSocket(`ws://127.0.0.1:${d.ports.ws}/socket/websocket?vsn=2.0.0`);
    await new Promise((res, rej) => { ws.on("open", res); ws.on("error", rej); });
    const code = new Promise((res) => ws.on("close", (c) => res(c)));
    ws.send("");
    check(await code === 1007, "an empty first text frame is malformed: 1007");
    check(await alive(d), "daemon alive after empty inputs");
}

// A poll on a quiet session is answered 204 after its 10 s window, not cut at 5 s.
async function testQuietPoll(d) {
    const token = await lpSession(d);
    const started = Date.now();
    const r = await request(d, get(lpPath(`&token=${token}`)));
    const took = Date.now() - started;
    check(r.status === 200 && JSON.parse(r.body).status === 204,
        `quiet poll answered 204 (got ${r.status}${r.closed ? ", closed" : ""} after ${took} ms)`);
    check(took >= 9000, `after its window (${took} ms)`);
}

// A static download that takes longer than 5 s arrives whole.
async function testSlowDownload(d) {
    const size = 8 * 1024 * 1024;
    fs.writeFileSync(path.join(d.dir, "www", "big.bin"), Buffer.alloc(size, 7));
    const s = await dial(d.ports.ws);
    s.pause(); // read nothing for 6 s: the kernel's buffers fill and the daemon must wait
    s.write(get("/big.bin"));
    await new Promise((r) => setTimeout(r, 6000));
    let got = 0, headEnd = -1, head = Buffer.alloc(0);
    const whole = await new Promise((resolve) => {
        const timer = setTimeout(() => resolve(false), 20000);
        s.on("data", (chunk) => {
            if (headEnd < 0) {
                head = Buffer.concat([head, chunk]);
                headEnd = head.indexOf("\r\n\r\n");
                if (headEnd >= 0) got = head.length - headEnd - 4;
            } else {
                got += chunk.length;
            }
            if (got >= size) { clearTimeout(timer); resolve(true); }
        });
        s.on("close", () => { clearTimeout(timer); resolve(got >= size); });
        s.resume();
    });
    s.destroy();
    check(whole, `a download paused for 6 s arrives whole (${got} of ${size} bytes)`);
}

// A FIFO in static_dir is not a file to serve: 404 at once, never a loop waiting for a
// writer.
async function testStaticFifo(d) {
    require("node:child_process").execFileSync("mkfifo", [path.join(d.dir, "www", "pipe.html")]);
    const started = Date.now();
    const r = await request(d, get("/pipe.html"));
    check(r.status === 404, `a FIFO under static_dir: 404 (got ${r.status} after ${Date.now() - started} ms)`);
    check(await alive(d), "daemon alive after a FIFO under static_dir");
}

// LongPoll sessions per source address are limited like WebSocket consoles.
async function testSessionsPerSource(d, limit) {
    const tokens = [];
    for (let i = 0; i < limit; i++) tokens.push(await lpSession(d, "", "127.0.0.20"));
    check(tokens.every((t) => t), `${limit} sessions from one source`);
    const before = await d.metric('gpsrelay_consoles_refused_total{reason="per_source_limit"}');
    const over = await request(d, get(lpPath("")), "127.0.0.20");
    check(over.status === 503, `session ${limit + 1} from that source: 503 (got ${over.status})`);
    check(await d.metric('gpsrelay_consoles_refused_total{reason="per_source_limit"}') === before + 1,
        "counted as per_source_limit");
    check(await lpSession(d, "", "127.0.0.21"), "another source still gets a session");
}

// A session serves only the token that opened it: another agency's token presenting the
// session id (it travels in URLs) gets a session of its own and nothing of the first.
async function testSessionIdentity(d) {
    const a = `&token=${mint(claims(["county-ems"], { sub: "console-a" }))}`;
    const b = `&token=${mint(claims(["city-fire"], { sub: "console-b" }))}`;
    const sa = await lpSession(d, a);
    const join = '["1","1","agency:county-ems","phx_join",{}]\n';
    const joined = await request(d, post(lpPath(`${a}&token=${sa}`), join));
    check(JSON.parse(joined.body).status === 200, "A joins its agency");
    const published = await d.metric("gpsrelay_positions_published_total");
    await d.send(rmc("AMB-12", 40.7, -74.0));
    // A device's first fix waits for merge_window (its habit is not known yet): wait until
    // it is published, so A's poll below finds it queued.
    for (const end = Date.now() + 5000; Date.now() < end &&
        await d.metric("gpsrelay_positions_published_total") <= published;)
        await new Promise((r) => setTimeout(r, 5));
    const before = await d.metric('gpsrelay_consoles_refused_total{reason="session_identity"}');
    const stolen = await request(d, get(lpPath(`${b}&token=${sa}`)));
    const body = JSON.parse(stolen.body);
    check(body.status === 410 && body.token !== sa,
        `B presenting A's session gets a new session (got ${stolen.body.slice(0, 120)})`);
    check(!stolen.body.includes("AMB-12") && !stolen.body.includes("county-ems"), "and nothing of A's");
    check(await d.metric('gpsrelay_consoles_refused_total{reason="session_identity"}') === before + 1,
        "counted as session_identity");
    const theft = await request(d, post(lpPath(`${b}&token=${sa}`), '["2","2","agency:county-ems","phx_leave",{}]\n'));
    check(JSON.parse(theft.body).status === 410, "B cannot post into A's session");
    const own = await request(d, get(lpPath(`${a}&token=${sa}`)));
    check(own.body.includes("AMB-12"), "A still reads its own session");
}

// Requests a proxy and lws could read differently (request smuggling) are refused.
async function testSmuggling(d) {
    const two = await request(d, "POST /socket/longpoll?vsn=2.0.0 HTTP/1.1\r\nHost: x\r\n" +
        "Content-Length: 5\r\nContent-Length: 40\r\n\r\nhello");
    check(two.status === 400, `two Content-Length headers: 400 (got ${two.status})`);
    const te = await request(d, "POST /socket/longpoll?vsn=2.0.0 HTTP/1.1\r\nHost: x\r\n" +
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    check(te.status === 400, `Content-Length with Transfer-Encoding: 400 (got ${te.status})`);
    const chunked = await request(d, "POST /socket/longpoll?vsn=2.0.0 HTTP/1.1\r\nHost: x\r\n" +
        "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    check(chunked.status === 400, `a chunked body lws would not decode: 400 (got ${chunked.status})`);
    check(await d.metric('gpsrelay_consoles_refused_total{reason="bad_request"}') === 3, "counted as bad_request");
    check(await alive(d), "daemon alive after smuggling attempts");
}

// Connections that never send a request count against their source's limit too.
async function testSilentConnections(d, limit) {
    const held = [];
    for (let i = 0; i < limit; i++) held.push(await dial(d.ports.ws, "127.0.0.30"));
    const closed = held.map((s) => new Promise((r) => s.on("close", () => r(true))));
    const extra = await dial(d.ports.ws, "127.0.0.30");
    const extraClosed = await new Promise((r) => {
        const t = setTimeout(() => r(false), 3000);
        extra.on("close", () => { clearTimeout(t); r(true); });
        extra.on("error", () => {});
    });
    check(extraClosed, `silent connection ${limit + 1} from one source is closed at once`);
    check(await alive(d), "others are served meanwhile");
    held.forEach((s) => s.destroy());
    await Promise.all(closed.map((p) => Promise.race([p, new Promise((r) => setTimeout(r, 100))])));
}

// A console flood from many addresses under a low descriptor limit: the last
// GR_FD_RESERVE (64) descriptors are never taken by a console connection, so the
// flood is refused (counted), a console already connected keeps receiving positions, and
// the daemon serves again once the flood is gone.
async function testDescriptorReserve() {
    const d = await Daemon.create(BINARY, CSV, "auth none\ningest_rate_limit 100000\n");
    await d.start("http", ["prlimit", "--nofile=256:256", "--"]);
    try {
        const WebSocket = require("ws");
        const ws = new WebSocket(`ws://127.0.0.1:${d.ports.ws}/socket/websocket?vsn=2.0.0`);
        const frames = [];
        ws.on("message", (m) => frames.push(String(m)));
        await new Promise((res, rej) => { ws.on("open", res); ws.on("error", rej); });
        ws.send('["1","1","agency:county-ems","phx_join",{}]');
        check(await until(() => frames.some((f) => f.includes("phx_reply"))), "console joined");
        const flood = [];
        for (let i = 0; i < 300; i++) {
            const s = await dial(d.ports.ws, `127.0.0.${50 + (i % 10)}`).catch(() => null);
            if (s) { s.on("error", () => {}); flood.push(s); }
        }
        console.error(`flood: ${flood.length} connected`);
        await d.send(rmc("AMB-12", 40.71, -74.0));
        check(await until(() => frames.some((f) => f.includes("AMB-12"))),
            "the connected console still gets positions during the flood");
        flood.forEach((s) => s.destroy());
        console.error("flood gone");
        check(await until(async () =>
            await d.metric('gpsrelay_consoles_refused_total{reason="descriptors"}') > 0),
        "the flood reached the reserve and was refused there, counted");
        check(await until(() => alive(d).catch(() => false)), "served again after the flood");
        ws.close();
    } finally {
        check(await d.stop() === 0, "daemon (256 descriptors) exits 0");
        d.cleanup();
    }
}

async function main() {
    const limit = 8;
    const open = await Daemon.create(BINARY, CSV,
        `auth none\nstatic_dir www\nmax_connections_per_source ${limit}\ningest_rate_limit 100000\n`);
    fs.mkdirSync(path.join(open.dir, "www"));
    const jwt = await Daemon.create(BINARY, CSV,
        "auth jwt\nauth_secret_file secret\ningest_rate_limit 100000\n", { secret: SECRET });
    await open.start();
    await jwt.start();
    try {
        for (const [name, fn] of [
            ["testBodyOutlivesSession", () => testBodyOutlivesSession(open)],
            ["testEmptyInputs", () => testEmptyInputs(open)],
            ["testSmuggling", () => testSmuggling(open)],
            ["testSessionsPerSource", () => testSessionsPerSource(open, limit)],
            ["testSilentConnections", () => testSilentConnections(open, limit)],
            ["testSessionIdentity", () => testSessionIdentity(jwt)],
            ["testQuietPoll", () => testQuietPoll(open)],
            ["testSlowDownload", () => testSlowDownload(open)],
            ["testStaticFifo", () => testStaticFifo(open)],
            ["testDescriptorReserve", () => testDescriptorReserve()],
        ]) {
            if (process.env.HOSTILE_ONLY && process.env.HOSTILE_ONLY !== name) continue;
            console.error(`== ${name}`);
            await fn();
        }
    } catch (e) {
        check(false, e.stack);
    } finally {
        check(await open.stop() === 0, "daemon (auth none) exits 0");
        check(await jwt.stop() === 0, "daemon (auth jwt) exits 0");
        open.cleanup();
        jwt.cleanup();
    }
    report();
}

main();
