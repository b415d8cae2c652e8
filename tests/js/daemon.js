// daemon.js - starts the real gpsrelayd for the JS tests: a temp dir with the config and
// mapping, free loopback ports, readiness from /readyz (bounded, never a blind sleep).
"use strict";

const { spawn } = require("node:child_process");
const dgram = require("node:dgram");
const fs = require("node:fs");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");

const WAIT_MS = 10000;

function freePort(kind) {
    return new Promise((resolve, reject) => {
        const s = kind === "udp" ? dgram.createSocket("udp4") : net.createServer();
        const done = () => { const p = s.address().port; s.close(() => resolve(p)); };
        if (kind === "udp") s.bind(0, "127.0.0.1", done);
        else s.listen(0, "127.0.0.1", done).on("error", reject);
    });
}

// A checksummed RMC for device at lat/lon; time in ms (default now).
function rmc(device, lat, lon, ms = Date.now()) {
    const t = new Date(ms);
    const two = (n) => String(n).padStart(2, "0");
    const hms = `${two(t.getUTCHours())}${two(t.getUTCMinutes())}${two(t.getUTCSeconds())}.` +
        two(Math.floor(t.getUTCMilliseconds() / 10));
    const date = `${two(t.getUTCDate())}${two(t.getUTCMonth() + 1)}${two(t.getUTCFullYear() % 100)}`;
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
    // files: {"devices.csv": text, ...}; conf: extra config lines.
    static async create(binary, csv, conf = "", files = {}) {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gpsrelay-js-"));
        const ports = { udp: await freePort("udp"), ws: await freePort("tcp") };
        fs.writeFileSync(path.join(dir, "devices.csv"), csv);
        for (const [name, text] of Object.entries(files))
            fs.writeFileSync(path.join(dir, name), text, { mode: 0o600 });
        fs.writeFileSync(path.join(dir, "gpsrelay.conf"),
            `listen_udp 127.0.0.1:${ports.udp}\nlisten_ws 127.0.0.1:${ports.ws}\n` +
            `mapping_file devices.csv\nlog_level warning\n${conf}`);
        const d = new Daemon();
        Object.assign(d, { binary, dir, ports });
        return d;
    }

    // wrap: a command that execs the daemon (["prlimit", "--nofile=300:300", "--"]).
    async start(scheme = "http", wrap = []) {
        const argv = [...wrap, this.binary, "-c", path.join(this.dir, "gpsrelay.conf")];
        this.child = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "inherit", "inherit"] });
        this.exited = new Promise((resolve) => this.child.on("exit", (code, signal) => {
            if (signal) console.error(`gpsrelayd killed by ${signal}`);
            resolve(code);
        }));
        const deadline = Date.now() + WAIT_MS;
        while (Date.now() < deadline) {
            if (await this.ready(scheme)) return;
            await new Promise((r) => setTimeout(r, 50));
        }
        throw new Error("gpsrelayd did not become ready");
    }

    ready(scheme) {
        const mod = require(`node:${scheme}`);
        return new Promise((resolve) => {
            mod.get({ host: "127.0.0.1", port: this.ports.ws, path: "/readyz", rejectUnauthorized: false },
                (res) => { res.resume(); resolve(res.statusCode === 200); })
                .on("error", () => resolve(false));
        });
    }

    async stop() {
        this.child.kill("SIGTERM");
        return this.exited;
    }

    cleanup() { fs.rmSync(this.dir, { recursive: true, force: true }); }

    send(line, from = "127.0.0.1") {
        return new Promise((resolve, reject) => {
            const s = dgram.createSocket("udp4");
            s.bind(0, from, () => s.send(line, this.ports.udp, "127.0.0.1", (e) => {
                s.close();
                e ? reject(e) : resolve();
            }));
        });
    }

    async metric(sample) {
        const r = await fetch(`http://127.0.0.1:${this.ports.ws}/metrics`);
        const line = (await r.text()).split("\n").find((l) => l.startsWith(`${sample} `));
        return line ? Number(line.split(" ")[1]) : NaN;
    }

    write(name, text) { fs.writeFileSync(path.join(this.dir, name), text); }
}

// A tiny test runner: check() counts, report() prints the line ctest logs show.
const results = { passed: 0, failed: 0 };
function check(ok, what) {
    if (ok) results.passed++;
    else { results.failed++; console.error(`FAIL: ${what}`); }
}
function report() {
    console.log(`${results.passed} passed, ${results.failed} failed`);
    process.exit(results.failed ? 1 : 0);
}

module.exports = { Daemon, rmc, check, report, freePort, WAIT_MS };
