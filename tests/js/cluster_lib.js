// cluster_lib.js - the pieces of the cluster tests: a NATS
// JetStream cluster of three nats-server, three gpsrelayd nodes in cluster mode, haproxy in
// front of them (each generated from the shipped config/nats-server.conf and
// config/haproxy.cfg), phoenix consoles that keep count of every position by `seq`, UDP
// modems at a steady rate, and a small NATS client to read the stream itself.
//
// Everything started here is killed when this process exits, fails or is signalled; each
// child also gets SIGKILL from the kernel if this process dies first (setpriv --pdeathsig).
// Waits are bounded polls, never blind sleeps.
"use strict";

const { spawn, spawnSync } = require("node:child_process");
const dgram = require("node:dgram");
const fs = require("node:fs");
const http = require("node:http");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");
const { Socket, LongPoll } = require("phoenix");
const WebSocket = require("ws");
const { rmc, freePort } = require("./daemon");

// The phoenix client logs every non-JSON LongPoll answer (haproxy's 503 page while no node
// is up) with console.log: counted, not printed.
let unparsed = 0;
const consoleLog = console.log;
console.log = (...a) => {
    if (typeof a[0] === "string" && a[0].startsWith("failed to parse JSON response")) unparsed++;
    else consoleLog(...a);
};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const t0 = Date.now();
const stamp = () => ((Date.now() - t0) / 1000).toFixed(1).padStart(6);
function log(...args) { console.log(`[${stamp()}]`, ...args); }

// ---- processes and temp dirs: all of them go when this process goes -----------------------

const children = new Set();
const tempDirs = [];
const PDEATHSIG = spawnSync("setpriv", ["--pdeathsig", "KILL", "true"]).status === 0
    ? ["setpriv", "--pdeathsig", "KILL", "--"] : [];

function killAll() {
    for (const c of children) {
        try { process.kill(c.pid, "SIGKILL"); } catch { /* gone already */ }
    }
    children.clear();
    for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
    tempDirs.length = 0;
}
process.on("exit", killAll);
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"])
    process.on(sig, () => { console.error(`cluster test: ${sig}`); process.exit(2); });
process.on("uncaughtException", (e) => { console.error("uncaught:", e); process.exit(2); });
process.on("unhandledRejection", (e) => { console.error("unhandled rejection:", e); process.exit(2); });

function tempDir(prefix) {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    tempDirs.push(d);
    return d;
}

// Starts argv with its output lines prefixed by name (stderr and stdout both), tracked for
// killAll. quiet: a regexp of lines not worth showing.
function startChild(name, argv, { quiet = null, cwd } = {}) {
    const full = [...PDEATHSIG, ...argv];
    const child = spawn(full[0], full.slice(1), { stdio: ["ignore", "pipe", "pipe"], cwd });
    children.add(child);
    const lines = (stream) => {
        let rest = "";
        stream.on("data", (b) => {
            const parts = (rest + b.toString()).split("\n");
            rest = parts.pop();
            for (const l of parts)
                if (l && !(quiet && quiet.test(l))) console.error(`  ${name}| ${l}`);
        });
    };
    lines(child.stdout);
    lines(child.stderr);
    child.exited = new Promise((resolve) => child.on("exit", (code, signal) => {
        children.delete(child);
        resolve({ code, signal });
    }));
    child.on("error", (e) => console.error(`${name}: ${e.message}`));
    return child;
}

// Set when a process died that nobody killed: every wait gives up at once with it, so a
// crash reads as a crash, not as the timeouts that follow it.
const crashes = [];

// Polls fn (async, truthy when done) every step ms until ms have passed; returns its value
// or throws "timed out: what".
async function waitFor(what, ms, fn, step = 50) {
    const deadline = Date.now() + ms;
    for (;;) {
        if (crashes.length) throw new Error(`${what}: given up, ${crashes.join("; ")}`);
        const v = await fn().catch(() => null);
        if (v) return v;
        if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms: ${what}`);
        await sleep(step);
    }
}

// GET http://127.0.0.1:port/path: {status, body} or null when nothing answers in ms.
function httpGet(port, p, ms = 1000) {
    return new Promise((resolve) => {
        const req = http.get({ host: "127.0.0.1", port, path: p, timeout: ms, agent: false }, (res) => {
            let body = "";
            res.on("data", (d) => (body += d));
            res.on("end", () => resolve({ status: res.statusCode, body }));
            res.on("error", () => resolve(null));
        });
        req.on("timeout", () => { req.destroy(); resolve(null); });
        req.on("error", () => resolve(null));
    });
}

// Replaces what in text, failing unless it matched exactly count times: when a shipped file
// changes so that the test no longer recognises a line, the test says so instead of
// silently testing something else.
function replace(text, what, by, count = 1, file = "config") {
    const re = new RegExp(what.source, what.flags.includes("g") ? what.flags : what.flags + "g");
    const n = (text.match(re) || []).length;
    if (n !== count) throw new Error(`${file}: ${re} matched ${n} times, expected ${count}`);
    return text.replace(re, by);
}

// ---- a small NATS client: enough for JetStream API requests ------------------------------

class NatsClient {
    static connect(port, ms = 2000) {
        return new Promise((resolve, reject) => {
            const c = new NatsClient();
            c.sock = net.connect(port, "127.0.0.1");
            c.buf = Buffer.alloc(0);
            c.waiting = new Map();
            c.nextId = 1;
            c.inbox = `_INBOX.grtest${process.pid}${Math.random().toString(36).slice(2)}`;
            const timer = setTimeout(() => { c.sock.destroy(); reject(new Error("NATS connect timed out")); }, ms);
            c.onPong = () => { clearTimeout(timer); resolve(c); };
            c.sock.on("error", (e) => { clearTimeout(timer); reject(e); c.fail(e); });
            c.sock.on("close", () => c.fail(new Error("NATS connection closed")));
            c.sock.on("data", (d) => c.read(d));
            c.sock.write(`CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true,` +
                `"protocol":1,"name":"gpsrelay-test"}\r\nSUB ${c.inbox}.* 1\r\nPING\r\n`);
        });
    }

    fail(e) {
        for (const w of this.waiting.values()) w.reject(e);
        this.waiting.clear();
    }

    read(d) {
        this.buf = Buffer.concat([this.buf, d]);
        for (;;) {
            const eol = this.buf.indexOf("\r\n");
            if (eol < 0) return;
            const line = this.buf.subarray(0, eol).toString();
            const [op, ...a] = line.split(" ");
            if (op === "MSG" || op === "HMSG") {
                const total = Number(a[a.length - 1]);
                const hdr = op === "HMSG" ? Number(a[a.length - 2]) : 0;
                if (this.buf.length < eol + 2 + total + 2) return;
                const body = this.buf.subarray(eol + 2, eol + 2 + total);
                this.buf = this.buf.subarray(eol + 2 + total + 2);
                const headers = body.subarray(0, hdr).toString();
                const w = this.waiting.get(a[0]);
                if (!w) continue;
                this.waiting.delete(a[0]);
                if (/^NATS\/1\.0 503/.test(headers)) w.reject(new Error(`no responders for ${w.subject}`));
                else w.resolve(body.subarray(hdr).toString());
                continue;
            }
            this.buf = this.buf.subarray(eol + 2);
            if (op === "PING") this.sock.write("PONG\r\n");
            else if (op === "PONG" && this.onPong) { this.onPong(); this.onPong = null; }
            else if (op === "-ERR") console.error(`NATS: ${line}`);
        }
    }

    // A JSON request; resolves with the parsed reply.
    request(subject, payload = "", ms = 3000) {
        return new Promise((resolve, reject) => {
            const reply = `${this.inbox}.${this.nextId++}`;
            const timer = setTimeout(() => {
                this.waiting.delete(reply);
                reject(new Error(`NATS request ${subject} timed out`));
            }, ms);
            this.waiting.set(reply, {
                subject,
                resolve: (s) => { clearTimeout(timer); resolve(JSON.parse(s)); },
                reject: (e) => { clearTimeout(timer); reject(e); },
            });
            const data = typeof payload === "string" ? payload : JSON.stringify(payload);
            this.sock.write(`PUB ${subject} ${reply} ${Buffer.byteLength(data)}\r\n${data}\r\n`);
        });
    }

    close() { this.sock.destroy(); }
}

// ---- three nats-server from config/nats-server.conf ---------------------------------------

class NatsCluster {
    // template: the shipped config/nats-server.conf.
    // noAdvertise: the servers do not tell clients each other's addresses (cluster
    // no_advertise), so a client knows only the servers it was given, and nothing but the
    // loopback addresses the test wrote reaches any client.
    static async start(template, n = 3, { noAdvertise = true } = {}) {
        const nc = new NatsCluster();
        nc.noAdvertise = noAdvertise;
        nc.dir = tempDir("gpsrelay-nats-");
        nc.template = fs.readFileSync(template, "utf8");
        nc.servers = [];
        for (let i = 0; i < n; i++)
            nc.servers.push({ name: `nats-${i + 1}`, client: await freePort(), route: await freePort(),
                mon: await freePort(), child: null, stopped: false });
        for (let i = 0; i < n; i++) nc.writeConf(i);
        for (let i = 0; i < n; i++) nc.spawn(i);
        await nc.waitAllReady(20000);
        return nc;
    }

    // The shipped file with this server's name, addresses, ports and store dir: the lines
    // the file marks PER SERVER, and the three routes.
    writeConf(i) {
        const s = this.servers[i];
        const f = "config/nats-server.conf";
        let t = this.template;
        t = replace(t, /^server_name: \S+/m, `server_name: ${s.name}`, 1, f);
        t = replace(t, /^listen: \S+/m, `listen: 127.0.0.1:${s.client}`, 1, f);
        t = replace(t, /^http: \S+/m, `http: 127.0.0.1:${s.mon}`, 1, f);
        t = replace(t, /^(\s+)store_dir: \S+/m, `$1store_dir: ${path.join(this.dir, s.name)}`, 1, f);
        t = replace(t, /^(\s+)listen: \S+/m, `$1listen: 127.0.0.1:${s.route}` +
            (this.noAdvertise ? "\n$1no_advertise: true" : ""), 1, f);
        let k = 0;
        t = replace(t, /nats-route:\/\/\S+/, () => `nats-route://127.0.0.1:${this.servers[k++].route}`,
            this.servers.length, f);
        s.conf = path.join(this.dir, `${s.name}.conf`);
        fs.writeFileSync(s.conf, t);
    }

    spawn(i) {
        const s = this.servers[i];
        // JetStream's start-up and RAFT chatter is informational; warnings and errors show.
        s.child = startChild(s.name, ["nats-server", "-c", s.conf],
            { quiet: /\[INF\]|\[DBG\]/ });
        s.stopped = false;
    }

    url(i) { return `nats://127.0.0.1:${this.servers[i].client}`; }
    urls() { return this.servers.map((_, i) => this.url(i)); }
    alive(i) { return this.servers[i].child !== null && !this.servers[i].stopped; }

    // Ready: /healthz 200 (JetStream up) and a meta leader known.
    async ready(i) {
        const s = this.servers[i];
        const h = await httpGet(s.mon, "/healthz?js-enabled-only=true");
        if (!h || h.status !== 200) return false;
        const j = await httpGet(s.mon, "/jsz");
        if (!j || j.status !== 200) return false;
        const leader = JSON.parse(j.body).meta_cluster?.leader;
        return leader ? leader : false;
    }

    async waitAllReady(ms) {
        await waitFor("NATS servers ready (healthz, meta leader)", ms, async () => {
            const live = this.servers.map((_, i) => i).filter((i) => this.alive(i));
            const leaders = await Promise.all(live.map((i) => this.ready(i)));
            return leaders.every((l) => l && l === leaders[0]);
        }, 100);
    }

    async kill9(i) {
        const s = this.servers[i];
        s.child.kill("SIGKILL");
        await s.child.exited;
        s.child = null;
    }

    stop(i) { this.servers[i].child.kill("SIGSTOP"); this.servers[i].stopped = true; }
    cont(i) { this.servers[i].child.kill("SIGCONT"); this.servers[i].stopped = false; }

    // Starts server i again on the same ports and store dir, waits until it is ready.
    async restart(i, ms = 20000) {
        if (this.servers[i].child) await this.kill9(i);
        this.spawn(i);
        await waitFor(`${this.servers[i].name} ready again`, ms, () => this.ready(i), 100);
    }

    // What a live server's monitoring says about stream name: {leader, replicas, state}
    // (2.9.10: /jsz?streams=true lists account_details[].stream_detail[] with cluster.leader).
    async streamInfo(name) {
        for (let i = 0; i < this.servers.length; i++) {
            if (!this.alive(i)) continue;
            const r = await httpGet(this.servers[i].mon, "/jsz?accounts=true&streams=true&config=true");
            if (!r || r.status !== 200) continue;
            for (const acc of JSON.parse(r.body).account_details || [])
                for (const st of acc.stream_detail || [])
                    if (st.name === name && st.cluster?.leader)
                        return { leader: st.cluster.leader, replicas: st.cluster.replicas || [],
                            state: st.state, config: st.config };
        }
        return null;
    }

    // Index of the server that leads stream name (waits until one does).
    async streamLeader(name, ms = 20000) {
        const info = await waitFor(`a leader for stream ${name}`, ms, () => this.streamInfo(name), 100);
        return this.servers.findIndex((s) => s.name === info.leader);
    }

    // Index of the JetStream meta leader (the server that creates and places streams and
    // consumers), as a live server's /jsz says; -1 when none is known.
    async metaLeader() {
        for (let i = 0; i < this.servers.length; i++) {
            if (!this.alive(i)) continue;
            const r = await httpGet(this.servers[i].mon, "/jsz");
            const name = r && r.status === 200 ? JSON.parse(r.body).meta_cluster?.leader : null;
            if (name) return this.servers.findIndex((s) => s.name === name);
        }
        return -1;
    }

    // A NATS client on the first live server.
    client() {
        const i = this.servers.findIndex((_, k) => this.alive(k));
        return NatsClient.connect(this.servers[i].client);
    }

    // $JS.API.STREAM.INFO from a live server: {config, state, cluster: {leader, replicas}}
    // or null (no such stream, no leader, nobody answers).
    async apiStreamInfo(name) {
        let c;
        try {
            c = await this.client();
            const r = await c.request(`$JS.API.STREAM.INFO.${name}`, "", 2000);
            return r.error ? null : r;
        } catch {
            return null;
        } finally {
            if (c) c.close();
        }
    }

    stopAll() {
        for (let i = 0; i < this.servers.length; i++) {
            const c = this.servers[i].child;
            if (c) { c.kill("SIGCONT"); c.kill("SIGKILL"); }
        }
    }
}

// Every stored message of stream between seqs from..to (inclusive), as seq -> {subject,
// data}, read from the stream itself with $JS.API.STREAM.MSG.GET: the cluster's own record
// of what it stored, independent of any gpsrelayd. Requests that fail (no stream leader
// for a moment, a server that just came back) are asked again for up to ms; the seqs still
// unread are returned as unread.
async function readStream(nats, stream, from, to, ms = 30000) {
    const out = new Map();
    let todo = [];
    for (let k = from; k <= to; k++) todo.push(k);
    const deadline = Date.now() + ms;
    let lastError = null;
    while (todo.length && Date.now() < deadline) {
        let c;
        try {
            c = await nats.client();
        } catch (e) {
            lastError = e.message;
            await sleep(200);
            continue;
        }
        const failed = [];
        try {
            const BATCH = 200;
            for (let i = 0; i < todo.length; i += BATCH) {
                const seqs = todo.slice(i, i + BATCH);
                const replies = await Promise.all(seqs.map((seq) =>
                    c.request(`$JS.API.STREAM.MSG.GET.${stream}`, { seq }, 2000)
                        .catch((e) => ({ error: { description: e.message } }))));
                replies.forEach((r, k) => {
                    if (r.message) out.set(seqs[k], { subject: r.message.subject,
                        data: Buffer.from(r.message.data || "", "base64").toString() });
                    else { failed.push(seqs[k]); lastError = r.error?.description || JSON.stringify(r); }
                });
            }
        } finally {
            c.close();
        }
        todo = failed;
        if (todo.length) await sleep(200);
    }
    out.unread = todo;
    out.lastError = lastError;
    return out;
}

// ---- haproxy from config/haproxy.cfg ------------------------------------------------------

class Haproxy {
    // template: the shipped config/haproxy.cfg; wsPorts: the nodes' listen_ws ports.
    static async start(template, wsPorts) {
        const h = new Haproxy();
        h.dir = tempDir("gpsrelay-haproxy-");
        h.port = await freePort();
        h.statsPort = await freePort();
        const f = "config/haproxy.cfg";
        let t = fs.readFileSync(template, "utf8");
        // The test runs haproxy unprivileged in the foreground: no chroot, user or admin socket,
        // and logs (up to notice: no line per request) to stderr instead of syslog.
        // Everything else is the shipped file.
        for (const re of [/^\s*chroot .*\n/m, /^\s*user .*\n/m, /^\s*group .*\n/m,
            /^\s*stats socket .*\n/m])
            t = replace(t, re, "", 1, f);
        t = replace(t, /^(\s*)log \/dev\/log .*\n/m, "$1log stderr format raw local0 notice\n", 1, f);
        // Nor the file limit to carry maxconn, unless this process's hard limit allows it.
        const hard = Number(spawnSync("sh", ["-c", "ulimit -Hn"], { encoding: "utf8" }).stdout);
        t = replace(t, /^(\s+)maxconn (\d+)/m, (all, sp, n) =>
            Number(n) * 2 + 100 > hard ? `${sp}maxconn ${Math.floor((hard - 100) / 2)}` : all, 1, f);
        t = replace(t, /^(\s+)bind :\d+/m, `$1bind 127.0.0.1:${h.port}`, 1, f);
        t = replace(t, /^(\s+)bind 127\.0\.0\.1:8404/m, `$1bind 127.0.0.1:${h.statsPort}`, 1, f);
        let k = 0;
        t = replace(t, /^(\s+server n\d) \S+:\d+/m, (_, s) => `${s} 127.0.0.1:${wsPorts[k++ % 3]}`, 6, f);
        h.cfg = path.join(h.dir, "haproxy.cfg");
        fs.writeFileSync(h.cfg, t);
        const check = spawnSync("haproxy", ["-c", "-q", "-f", h.cfg], { encoding: "utf8" });
        if (check.status !== 0) throw new Error(`haproxy -c: ${check.stdout}${check.stderr}`);
        h.child = startChild("haproxy", ["haproxy", "-db", "-f", h.cfg],
            { quiet: /NOTICE|Proxy .* started|Health check for server|Server .* is (UP|DOWN)|^\s*$/ });
        await waitFor("haproxy listening", 10000, async () => (await httpGet(h.statsPort, "/stats;csv")) !== null);
        return h;
    }

    // {"gpsrelay/n1": "UP", ...} from the stats CSV.
    async servers() {
        const r = await httpGet(this.statsPort, "/stats;csv");
        if (!r || r.status !== 200) return null;
        const rows = r.body.split("\n").filter((l) => l && !l.startsWith("#")).map((l) => l.split(","));
        const out = {};
        for (const c of rows) if (/^n\d$/.test(c[1])) out[`${c[0]}/${c[1]}`] = c[17];
        return out;
    }

    // Waits until haproxy sees node name ("n1") as state ("UP"/"DOWN") in both backends.
    async waitServer(name, state, ms = 10000) {
        await waitFor(`haproxy sees ${name} ${state}`, ms, async () => {
            const s = await this.servers();
            return s && s[`gpsrelay/${name}`]?.startsWith(state) &&
                s[`gpsrelay_longpoll/${name}`]?.startsWith(state);
        }, 100);
    }

    url() { return `ws://127.0.0.1:${this.port}/socket`; }

    async stop() { this.child.kill("SIGTERM"); await this.child.exited; }
}

// ---- gpsrelayd nodes --------------------------------------------------------------------

class Node {
    // conf: extra lines (cluster_nats ... node_name ...).
    static async create(binary, name, csv, conf) {
        const n = new Node();
        n.binary = binary;
        n.name = name;
        n.dir = tempDir(`gpsrelay-${name}-`);
        n.ports = { udp: await freePort("udp"), ws: await freePort() };
        fs.writeFileSync(path.join(n.dir, "devices.csv"), csv);
        n.setConf(conf);
        return n;
    }

    setConf(conf) {
        fs.writeFileSync(path.join(this.dir, "gpsrelay.conf"),
            `listen_udp 127.0.0.1:${this.ports.udp}\nlisten_ws 127.0.0.1:${this.ports.ws}\n` +
            // All modems of the test send from one address: no per-source rate limit.
            `mapping_file devices.csv\nlog_level notice\nauth none\ningest_rate_limit 100000\n${conf}`);
    }

    // Starts the daemon; with wait, until /readyz says 200 (bounded).
    async start(wait = true, ms = 20000) {
        this.child = startChild(this.name, [this.binary, "-c", path.join(this.dir, "gpsrelay.conf")],
            // Notices show (the cluster's own: stream made or found, epoch, in step), but not
            // the routine ones of every start and stop.
            { quiet: /net\.core\.somaxconn|notice: (mapping: \d+ devices|ingest: listening|ws: listening|received Terminated|stopped$|gpsrelayd .* ready)/ });
        this.child.exited.then(({ code, signal }) => {
            if (this.expectExit) return;
            const what = `${this.name} exited unexpectedly: ${signal ? `signal ${signal}` : `code ${code}`}`;
            console.error(`  ${this.name}| ${what}`);
            crashes.push(what);
        });
        this.expectExit = false;
        if (wait) await waitFor(`${this.name} /readyz 200`, ms, () => this.isReady())
            .catch((e) => { throw new Error(`${e.message} (last answer: ${this.lastReadyz})`); });
    }

    running() { return Boolean(this.child) && this.child.exitCode === null && this.child.signalCode === null; }

    async isReady() { return (await this.readyz())?.status === 200; }
    // /readyz, also kept as lastReadyz ("no answer" when nothing came within 500 ms) so that
    // a wait that times out can say what the node last said.
    async readyz() {
        const r = await httpGet(this.ports.ws, "/readyz", 500);
        this.lastReadyz = r ? `${r.status} ${JSON.stringify(r.body.trim())}` : "no answer within 500 ms";
        return r;
    }

    // Counters of earlier processes of this node, read just before each stop or kill, so
    // that what a node counted survives its restarts (totals(): earlier + current).
    async keepCounters() {
        const m = await this.metrics();
        this.past = this.past || {};
        for (const [k, v] of Object.entries(m))
            if (/_total(\{|$)/.test(k)) this.past[k] = (this.past[k] || 0) + v;
    }

    async totals() {
        const m = this.running() ? await this.metrics() : {};
        const out = { ...m };
        for (const [k, v] of Object.entries(this.past || {})) out[k] = (out[k] || 0) + v;
        return out;
    }

    async kill9() {
        await this.keepCounters();
        this.expectExit = true;
        this.child.kill("SIGKILL");
        await this.child.exited;
    }

    // SIGTERM: exits 0 within 5 s (docs/operations.md); resolves with the exit code.
    async stop() {
        await this.keepCounters();
        this.expectExit = true;
        this.child.kill("SIGTERM");
        const r = await Promise.race([this.child.exited, sleep(8000).then(() => null)]);
        if (r === null) { this.child.kill("SIGKILL"); await this.child.exited; return "hung"; }
        return r.signal ? r.signal : r.code;
    }

    async metrics() {
        const r = await httpGet(this.ports.ws, "/metrics", 1000);
        const out = {};
        if (!r) return out;
        for (const l of r.body.split("\n")) {
            if (!l || l.startsWith("#")) continue;
            const sp = l.lastIndexOf(" ");
            out[l.slice(0, sp)] = Number(l.slice(sp + 1));
        }
        return out;
    }

    url() { return `ws://127.0.0.1:${this.ports.ws}/socket`; }
}

// ---- modems ---------------------------------------------------------------------------

// units devices sending RMC over UDP at hz each, spread over the live nodes: unit k goes to
// target(k), a node index the scenario may change (modems of a node being killed are
// moved first, so that every fix sent reaches a running node). Each fix has its own,
// rising time (the message id is device + fix time).
class Fleet {
    constructor(nodes, devices, hz) {
        Object.assign(this, { nodes, devices, hz });
        this.avoid = new Set();
        this.sent = 0;
        this.sentBy = new Map(devices.map((d) => [d, 0]));
        this.lastMs = new Map();
        this.sock = dgram.createSocket("udp4");
        this.sock.bind(0, "127.0.0.1");
        this.k = 0;
        this.pinned = new Map(); // device -> node index, regardless of avoid
    }

    target(u) {
        if (this.pinned.has(this.devices[u])) return this.pinned.get(this.devices[u]);
        const n = this.nodes.length;
        for (let j = 0; j < n; j++) {
            const i = (u + j) % n;
            if (!this.avoid.has(i)) return i;
        }
        return u % n;
    }

    sendOne(u) {
        const dev = this.devices[u];
        // Times to the centisecond (RMC); strictly rising per device.
        const ms = Math.max(Math.floor(Date.now() / 10) * 10, (this.lastMs.get(dev) || 0) + 10);
        this.lastMs.set(dev, ms);
        const step = this.sentBy.get(dev);
        const line = rmc(dev, 40.7 + u * 0.001 + step * 0.000005, -74.0 + u * 0.001, ms);
        this.sentBy.set(dev, step + 1);
        this.sent++;
        this.sock.send(line, this.nodes[this.target(u)].ports.udp, "127.0.0.1");
    }

    // Sends units * hz fixes a second, one unit at a time, evenly spaced.
    start() {
        const perSec = this.devices.length * this.hz;
        const every = 10;
        let due = 0;
        let last = Date.now();
        this.timer = setInterval(() => {
            const now = Date.now();
            due += ((now - last) * perSec) / 1000;
            last = now;
            while (due >= 1) {
                this.sendOne(this.k % this.devices.length);
                this.k++;
                due -= 1;
            }
        }, every);
    }

    async stop() {
        clearInterval(this.timer);
        this.timer = null;
        await sleep(20); // the last datagrams leave the socket buffer
    }

    close() { this.sock.close(); }
}

// ---- consoles ---------------------------------------------------------------------------

// A phoenix console on topic, keeping count of every position by seq. Its channel params
// are a function: every (re)join sends since {epoch, seq} of the newest seq it has (the
// join reply's or a position's), as docs/protocol.md says a resuming console does.
class Console {
    constructor(name, url, topic, { longpoll = false } = {}) {
        Object.assign(this, { name, url, topic, longpoll });
        this.got = new Map(); // seq -> {device, n}
        this.byDevice = new Map(); // device -> last seq seen (order check)
        this.outOfOrder = [];
        this.joins = []; // {at, since, epoch, seq, recovered, node, n}
        this.last = null; // {epoch, seq}
        this.arrivals = []; // [ms, seq] of positions pushed (pauses)
        this.closes = [];
        this.opens = 0;
        this.joinErrors = [];
        this.count = 0; // positions taken, counting repeats
    }

    connect() {
        this.socket = new Socket(this.url, {
            transport: this.longpoll ? LongPoll : WebSocket,
            reconnectAfterMs: () => 100,
            rejoinAfterMs: () => 200,
            heartbeatIntervalMs: 2000,
            longpollerTimeout: 20000,
            timeout: 5000,
        });
        this.socket.onOpen(() => this.opens++);
        this.socket.onClose((e) => this.closes.push(e && e.code));
        this.socket.connect();
        this.channel = this.socket.channel(this.topic, () => {
            this.pendingSince = this.last ? { ...this.last } : null;
            return this.pendingSince ? { since: this.pendingSince } : {};
        });
        this.channel.on("positions", (p) => {
            const now = Date.now();
            for (const pos of p.positions) {
                this.take(pos);
                this.arrivals.push([now, pos.seq]);
            }
        });
        // The join push's hooks run again on every rejoin (phoenix keeps them): onJoin sees
        // each reply, the promise settles on the first.
        return new Promise((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error(`${this.name}: first join timed out`)), 10000);
            this.channel.join()
                .receive("ok", (r) => { this.onJoin(r); clearTimeout(timer); resolve(r); })
                .receive("error", (e) => {
                    this.joinErrors.push(e);
                    clearTimeout(timer);
                    reject(new Error(`${this.name}: join refused ${JSON.stringify(e)}`));
                });
        });
    }

    onJoin(r) {
        const since = this.pendingSince;
        this.pendingSince = null;
        const positions = r.positions || [];
        this.joins.push({ at: Date.now(), since, epoch: r.epoch, seq: r.seq, recovered: r.recovered,
            node: r.node, seqs: positions.map((p) => p.seq) });
        const keep = this.last && this.last.epoch === r.epoch ? this.last.seq : 0;
        this.last = { epoch: r.epoch, seq: Math.max(r.seq, keep) };
        for (const pos of positions) this.take(pos);
    }

    take(pos) {
        this.count++;
        const g = this.got.get(pos.seq);
        if (g) g.n++;
        else this.got.set(pos.seq, { device: pos.device, n: 1 });
        const prev = this.byDevice.get(pos.device);
        if (prev !== undefined && pos.seq <= prev) this.outOfOrder.push([pos.device, prev, pos.seq]);
        this.byDevice.set(pos.device, Math.max(prev || 0, pos.seq));
        if (this.last && pos.seq > this.last.seq) this.last.seq = pos.seq;
    }

    // The longest time between two positions pushed within [from, to] (ms).
    maxPause(from, to) {
        let worst = 0, at = null, prev = from;
        for (const [ms] of this.arrivals) {
            if (ms < from) continue;
            if (ms > to) break;
            if (ms - prev > worst) { worst = ms - prev; at = prev; }
            prev = ms;
        }
        if (to - prev > worst) { worst = to - prev; at = prev; }
        return { ms: worst, at };
    }

    disconnect() { this.socket.disconnect(); }
}


// ---- accounting ----------------------------------------------------------------------

// What one console received against what it should have (docs/protocol.md, docs/cluster.md).
// expected: seq -> device, every position of the console's topic the stream stored after
// the console's first join (that join's reply covers what came before). A position counts
// as received once, in any push or join reply. Not receiving an expected position is
// allowed only where the protocol conflates:
//   - in a rejoin window (since.seq, reply seq] of a recovered join, the reply carries the
//     newest position of each unit instead of every one the console missed: allowed when
//     the console got the unit's newest position at or below the reply's seq;
//   - while connected, a console that fell behind gets the newest position of a unit
//     instead of older waiting ones: allowed when the console got a newer position of the
//     same unit, and only as many as the nodes counted (gpsrelay_positions_conflated_total)
//     meanwhile (budget): more is its own failure (lost, or conflated uncounted).
// Anything else is missing. No seq twice, per unit in rising order, every rejoin
// recovered:true with the same epoch.
// optional: expected seqs a console may have or not (stored behind a newer fix of their
// unit: the hub skips them as out of order, or not when the newer one was early).
function account(con, expected, budget = 0, optional = new Set()) {
    const problems = [];
    const first = con.joins[0];
    const from = first.seq + 1;
    const seqs = [...expected.keys()].filter((s) => s >= from).sort((a, b) => a - b);
    // Per device, the expected seqs in order, to find "the newest at or below S".
    const perDevice = new Map();
    for (const s of seqs) {
        const d = expected.get(s);
        if (!perDevice.has(d)) perDevice.set(d, []);
        perDevice.get(d).push(s);
    }
    const newestAtOrBelow = (d, S) => {
        let best = -1;
        for (const s of perDevice.get(d) || []) if (s <= S) best = s; else break;
        return best;
    };
    const newerReceived = (d, s) => (perDevice.get(d) || []).some((x) => x > s && con.got.has(x));
    const rejoins = con.joins.slice(1);
    const missing = [], windowSkips = [], conflated = [];
    for (const s of seqs) {
        if (con.got.has(s) || optional.has(s)) continue;
        const d = expected.get(s);
        const w = rejoins.find((j) => j.recovered && j.since && s > j.since.seq && s <= j.seq);
        if (w) {
            const newest = newestAtOrBelow(d, w.seq);
            if (newest > s && con.got.has(newest)) { windowSkips.push(s); continue; }
        }
        if (newerReceived(d, s)) { conflated.push(s); continue; }
        missing.push(s);
    }
    const dups = [...con.got].filter(([, g]) => g.n > 1).map(([s, g]) => `${s}x${g.n}`);
    const strangers = [...con.got.keys()].filter((s) => s >= from && !expected.has(s));
    for (const j of rejoins) {
        if (!j.since) problems.push(`a rejoin without since`);
        else if (!j.recovered) problems.push(`rejoin since ${j.since.seq} not recovered (epoch ${j.since.epoch} -> ${j.epoch})`);
    }
    if (missing.length) {
        const byDev = new Map();
        for (const m of missing) byDev.set(expected.get(m), (byDev.get(expected.get(m)) || 0) + 1);
        problems.push(`missing ${missing.length}: ${missing.slice(0, 10).join(",")}${missing.length > 10 ? ",..." : ""} ` +
            `(seq ${missing[0]}..${missing[missing.length - 1]}; per unit ${[...byDev].slice(0, 8).map(([d, n]) => `${d}:${n}`).join(" ")}${byDev.size > 8 ? " ..." : ""})`);
    }
    if (conflated.length > budget)
        problems.push(`${conflated.length} positions skipped while connected, each followed by a newer one of its ` +
            `unit, but the console's nodes counted only ${budget} conflations ` +
            `(gpsrelay_positions_conflated_total): ${conflated.length - budget} lost or conflated uncounted ` +
            `(e.g. ${conflated.slice(0, 5).join(",")})`);
    if (dups.length) problems.push(`duplicates ${dups.length}: ${dups.slice(0, 10).join(",")}`);
    if (strangers.length) problems.push(`not in the stream for this topic ${strangers.length}: ${strangers.slice(0, 10).join(",")}`);
    if (con.outOfOrder.length)
        problems.push(`out of order ${con.outOfOrder.length}: ${con.outOfOrder.slice(0, 5).map((x) => x.join(":")).join(",")}`);
    const received = seqs.filter((s) => con.got.has(s)).length;
    const optionalMissed = seqs.filter((s) => optional.has(s) && !con.got.has(s)).length;
    const summary = `${con.name}: received ${received} of ${seqs.length} expected (seq ${seqs[0]}..${seqs[seqs.length - 1]}), ` +
        `rejoins ${rejoins.length}${rejoins.length ? ` [${rejoins.map((j) => `${j.node || "?"} recovered=${j.recovered} since=${j.since?.seq} seq=${j.seq}${j.recovered ? "" : ` epoch=${j.epoch}`} +${j.seqs.length}`).join("; ")}]` : ""}, ` +
        `skipped in rejoin windows ${windowSkips.length}, conflated ${conflated.length} (its nodes counted ${budget}), ` +
        `${optionalMissed ? `not delivered as out of order ${optionalMissed}, ` : ""}missing ${missing.length}, duplicates ${dups.length}`;
    return { ok: problems.length === 0, problems, summary, received, expected: seqs.length,
        windowSkips: windowSkips.length, conflated: conflated.length };
}

// Per-unit gaps: the longest time between two positions of the same device a console
// received pushed within [from, to] (ms), and which device.
function unitPause(con, from, to) {
    const last = new Map();
    for (const g of con.got.values()) last.set(g.device, from);
    let worst = { ms: 0, device: null, at: null };
    const gap = (d, prev, ms) => { if (ms - prev > worst.ms) worst = { ms: ms - prev, device: d, at: prev }; };
    for (const [ms, seq] of con.arrivals) {
        if (ms < from || ms > to) continue;
        const d = con.got.get(seq)?.device;
        gap(d, last.get(d) ?? from, ms);
        last.set(d, ms);
    }
    for (const [d, prev] of last) gap(d, prev, to);
    return worst;
}

module.exports = { crashes, unparsedCount: () => unparsed, log, sleep, waitFor, httpGet, freePort, tempDir, startChild, replace,
    NatsClient, NatsCluster, readStream, Haproxy, Node, Fleet, Console, account, unitPause };
