// interop.js - the official phoenix npm client (1.8.16), unchanged, against the real
// gpsrelayd: WebSocket and LongPoll transports, join, positions pushes, leave, and a
// daemon restart that the client rides out (1001, reconnect, rejoin with `since`).
//
// usage: node interop.js /path/to/gpsrelayd
"use strict";

const { Socket, LongPoll } = require("phoenix");
const WebSocket = require("ws");
const { spawn } = require("node:child_process");
const dgram = require("node:dgram");
const fs = require("node:fs");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");

const WAIT_MS = 10000;
let passed = 0, failed = 0;

function check(ok, what) {
    if (ok) passed++;
    else { failed++; console.error(`FAIL: ${what}`); }
}

function freePort(kind) {
    return new Promise((resolve, reject) => {
        if (kind === "udp") {
            const s = dgram.createSocket("udp4");
            s.bind(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => resolve(p)); });
        } else {
            const s = net.createServer();
            s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => resolve(p)); });
            s.on("error", reject);
        }
    });
}

// A checksummed RMC for device at lat/lon, stamped now.
function rmc(device, lat, lon) {
    const now = new Date();
    const two = (n) => String(n).padStart(2, "0");
    const hms = `${two(now.getUTCHours())}${two(now.getUTCMinutes())}${two(now.getUTCSeconds())}.` +
        two(Math.floor(now.getUTCMilliseconds() / 10));
    const date = `${two(now.getUTCDate())}${two(now.getUTCMonth() + 1)}${two(now.getUTCFullYear() % 100)}`;
    const angle = (v, width, pos, neg) => {
        const a = Math.abs(v), d = Math.floor(a), m = (a - d) * 60;
        return `${String(d).padStart(width, "0")}${m.toFixed(5).padStart(8, "0")},${v < 0 ? neg : pos}`;
    };
    const body = `GPRMC,${hms},A,${angle(lat, 2, "N", "S")},${angle(lon, 3, "E", "W")},0.5,90.0,${date},,,A`;
    let sum = 0;
    for (const c of body) sum ^= c.charCodeAt(0);
    return `${device},$${body}*${sum.toString(16).toUpperCase().padStart(2, "0")}\r\n`;
}

class Daemon {
    constructor(binary, dir, ports) { Object.assign(this, { binary, dir, ports }); }

    async start() {
        this.child = spawn(this.binary, ["-c", path.join(this.dir, "gpsrelay.conf")], {
            stdio: ["ignore", "inherit", "inherit"],
        });
        this.exited = new Promise((resolve) => this.child.on("exit", (code) => resolve(code)));
        // Ready means /readyz answers 200; bounded, never a blind sleep.
        const deadline = Date.now() + WAIT_MS;
        while (Date.now() < deadline) {
            try {
                const r = await fetch(`http://127.0.0.1:${this.ports.ws}/readyz`);
                if (r.status === 200) return;
            } catch (e) { /* not listening yet */ }
            await new Promise((r) => setTimeout(r, 50));
        }
        throw new Error("gpsrelayd did not become ready");
    }

    async stop() {
        this.child.kill("SIGTERM");
        return this.exited;
    }

    send(line) {
        return new Promise((resolve) => {
            const s = dgram.createSocket("udp4");
            s.send(line, this.ports.udp, "127.0.0.1", () => { s.close(); resolve(); });
        });
    }
}

// Resolves with the first positions push on channel whose devices include device.
function nextPosition(channel, device) {
    return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no position of ${device}`)), WAIT_MS);
        const ref = channel.on("positions", (payload) => {
            const p = payload.positions.find((x) => x.device === device);
            if (!p) return;
            clearTimeout(timer);
            channel.off("positions", ref);
            resolve(p);
        });
    });
}

function joined(channel) {
    return new Promise((resolve, reject) => {
        channel.join()
            .receive("ok", resolve)
            .receive("error", (e) => reject(new Error(`join refused: ${JSON.stringify(e)}`)))
            .receive("timeout", () => reject(new Error("join timed out")));
    });
}

async function transportRoundTrip(daemon, transport, name) {
    const socket = new Socket(`ws://127.0.0.1:${daemon.ports.ws}/socket`,
        { transport, longpollerTimeout: 20000, heartbeatIntervalMs: 1000 });
    socket.connect();
    const channel = socket.channel("agency:county-ems", {});
    const reply = await joined(channel);
    check(typeof reply.epoch === "string" && Number.isInteger(reply.seq), `${name}: join reply`);
    const got = nextPosition(channel, "AMB-12");
    await daemon.send(rmc("AMB-12", 40.7128, -74.006));
    const p = await got;
    check(Math.abs(p.lat - 40.7128) < 1e-7 && Math.abs(p.lon + 74.006) < 1e-7,
        `${name}: position lat/lon`);
    await new Promise((resolve) => channel.leave().receive("ok", resolve));
    check(channel.state === "closed", `${name}: leave`);
    socket.disconnect();
}

// The daemon restarts under a connected console: it closes with 1001, the client
// reconnects and rejoins with `since` from its params function, and positions flow again.
async function restart(daemon) {
    const socket = new Socket(`ws://127.0.0.1:${daemon.ports.ws}/socket`,
        { transport: WebSocket, reconnectAfterMs: () => 100, rejoinAfterMs: () => 100 });
    const closes = [];
    socket.onClose((e) => closes.push(e.code));
    socket.connect();
    let since = null;
    const replies = [];
    const channel = socket.channel("agency:county-ems", () => (since ? { since } : {}));
    channel.on("phx_reply", () => {});
    await joined(channel).then((r) => { replies.push(r); since = { epoch: r.epoch, seq: r.seq }; });
    const rejoined = new Promise((resolve) => {
        const ref = socket.onOpen(() => { socket.off([ref]); resolve(); });
    });
    await daemon.stop();
    await daemon.start();
    await rejoined;
    const got = nextPosition(channel, "AMB-7");
    // The rejoin may still be in flight: send until the position arrives.
    const pump = setInterval(() => daemon.send(rmc("AMB-7", 40.6, -73.9)), 200);
    const p = await got.finally(() => clearInterval(pump));
    check(closes.includes(1001), "restart: closed with 1001");
    check(p.device === "AMB-7", "restart: positions flow after the rejoin");
    socket.disconnect();
}

async function main() {
    const binary = process.argv[2];
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gpsrelay-js-"));
    const ports = { udp: await freePort("udp"), ws: await freePort("tcp") };
    fs.writeFileSync(path.join(dir, "devices.csv"),
        "device_id,agency_id,label,source_addr\nAMB-12,county-ems,Medic 12,\nAMB-7,county-ems,Medic 7,\n");
    fs.writeFileSync(path.join(dir, "gpsrelay.conf"),
        `listen_udp 127.0.0.1:${ports.udp}\nlisten_ws 127.0.0.1:${ports.ws}\n` +
        "mapping_file devices.csv\nauth none\nlog_level warning\n");
    const daemon = new Daemon(binary, dir, ports);
    await daemon.start();
    try {
        await transportRoundTrip(daemon, WebSocket, "websocket");
        await transportRoundTrip(daemon, LongPoll, "longpoll");
        await restart(daemon);
    } catch (e) {
        failed++;
        console.error(`FAIL: ${e.message}`);
    } finally {
        const code = await daemon.stop();
        check(code === 0, "daemon exits 0");
        fs.rmSync(dir, { recursive: true, force: true });
    }
    console.log(`${passed} passed, ${failed} failed`);
    process.exit(failed ? 1 : 0);
}

main();
