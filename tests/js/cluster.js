// cluster.js - gpsrelayd as a cluster against real failures:
// three nats-server (JetStream, R3) from config/nats-server.conf, three gpsrelayd nodes,
// haproxy from config/haproxy.cfg in front, phoenix consoles (WebSocket and LongPoll,
// through haproxy and directly to nodes) and UDP modems at a steady rate. Every scenario
// checks, on every console, that no position came twice and none is missing.
//
// What a console should have received ("expected") is read from the stream itself
// ($JS.API.STREAM.MSG.GET): every position of the console's agency the cluster stored after
// the console's first join. That is the record every node serves from (docs/cluster.md: a
// position reaches consoles once the stream has stored it), and it does not depend on any
// node being right. The stream is in turn checked against the modems: every fix sent
// (all to running nodes, all acceptable: distinct rising times, plausible speeds) must be
// stored exactly once, per device. So a fix lost inside a node (its publish queue), one
// stored twice, and one a console missed are three different failures with three
// different messages.
//
// usage: node cluster.js GPSRELAYD CONFIG_DIR SCENARIO...
//   scenarios: harness node_kill nats_leader_kill nats_follower_kill nats_meta_leader_kill
//   nats_stop cutoff rolling
//   (harness needs no cluster support in the daemon: the NATS cluster, haproxy and the
//   consoles on their own, against single-node daemons)
"use strict";

const path = require("node:path");
const { spawnSync } = require("node:child_process");
const { check, report, rmc } = require("./daemon");
const L = require("./cluster_lib");
const { log, sleep, waitFor, NatsCluster, Haproxy, Node, Fleet, Console, account, unitPause } = L;

const [binary, configDir, ...wanted] = process.argv.slice(2);
const NATS_CONF = path.join(configDir, "nats-server.conf");
const HAPROXY_CFG = path.join(configDir, "haproxy.cfg");
const STREAM = "gpsrelay-test";
const AGENCY = "county-ems";
const UNITS = Array.from({ length: 20 }, (_, i) => `AMB${String(i + 1).padStart(2, "0")}`);
const OTHERS = ["FIRE1", "FIRE2"]; // another agency: must never reach county-ems consoles
const HZ = 5;
// The bound on a console's pause after a follower kill (1 s: nothing a console can see).
// The sanitizers' build, where these scenarios run in CI, is several times slower and has
// once shown 1.18 s; there the bound is wider. bench/run-cluster.sh measures the pause.
const FOLLOWER_PAUSE_MS = process.env.GR_SANITIZED ? 2000 : 1000;
const CSV = "device_id,agency_id,label,source_addr\n" +
    UNITS.map((u) => `${u},${AGENCY},Medic ${u.slice(3)},\n`).join("") +
    OTHERS.map((u) => `${u},city-fire,Engine ${u.slice(4)},\n`).join("");

function clusterConf(urls, i) {
    return urls.map((u) => `cluster_nats ${u}\n`).join("") +
        `cluster_name ${STREAM}\ncluster_replicas 3\nnode_name n${i + 1}\n` +
        "max_connections_per_source 2000\n";
}

// ---- the whole cluster ------------------------------------------------------------------

async function setup(single = false, natsOptions = {}) {
    const cl = {};
    cl.nats = await NatsCluster.start(NATS_CONF, 3, natsOptions);
    log(`NATS cluster ready: ${cl.nats.servers.map((s) => `${s.name} client ${s.client} mon ${s.mon}`).join(", ")}`);
    cl.nodes = [];
    for (let i = 0; i < 3; i++)
        cl.nodes.push(await Node.create(binary, `n${i + 1}`, CSV, single ? "" : clusterConf(cl.nats.urls(), i)));
    await Promise.all(cl.nodes.map((n) => n.start()));
    log(`gpsrelayd ready: ${cl.nodes.map((n) => `${n.name} ws ${n.ports.ws} udp ${n.ports.udp}`).join(", ")}`);
    cl.haproxy = await Haproxy.start(HAPROXY_CFG, cl.nodes.map((n) => n.ports.ws));
    for (const n of cl.nodes) await cl.haproxy.waitServer(n.name, "UP");
    log(`haproxy ready on ${cl.haproxy.port}, all three nodes UP`);
    return cl;
}

async function teardown(cl) {
    if (!cl) return;
    if (cl.haproxy) await cl.haproxy.stop();
    for (const n of cl.nodes || []) if (n.running()) {
        const r = await n.stop();
        check(r === 0, `${n.name} exits 0 on SIGTERM (got ${r})`);
    }
    if (cl.nats) cl.nats.stopAll();
}

// Consoles from specs: {name, via: "haproxy" | node index, longpoll}.
async function consoles(cl, specs, { topic = `agency:${AGENCY}`, oneEpoch = true } = {}) {
    const out = specs.map((s) => new Console(s.name,
        s.via === "haproxy" ? cl.haproxy.url() : cl.nodes[s.via].url(), topic, { longpoll: s.longpoll }));
    await Promise.all(out.map((c) => c.connect()));
    for (const c of out) c.via = specs.find((s) => s.name === c.name).via;
    log(`consoles joined: ${out.map((c) => `${c.name}${c.longpoll ? " (longpoll)" : ""} -> ${c.joins[0].node || "?"} seq ${c.joins[0].seq}`).join(", ")}`);
    // One stream, one epoch: every node answers with the same (docs/cluster.md).
    const epochs = new Set(out.map((c) => c.joins[0].epoch));
    if (oneEpoch) check(epochs.size === 1, `every node's join reply has the stream's epoch: ${out.map((c) => `${c.name}@${c.joins[0].node}=${c.joins[0].epoch}`).join(" ")}`);
    return out;
}

// name's value on every node, summed over its processes: {n1: v, ...}.
async function metricByNode(cl, name) {
    const out = {};
    for (const n of cl.nodes) {
        const v = (await n.totals())[name];
        if (Number.isFinite(v)) out[n.name] = v;
    }
    return out;
}

// How many conflations the nodes a console was served by counted between two samples.
function conflationBudget(con, before, after) {
    const nodes = new Set(con.joins.map((j) => j.node).filter(Boolean));
    const names = nodes.size ? [...nodes] : Object.keys(after);
    let sum = 0;
    for (const n of names) {
        const a = after[n] || 0, b = before[n] || 0;
        sum += Math.max(0, a - b);
    }
    return sum;
}

// Waits until node i has handled every datagram it got and published every fix it
// accepted: its ingest count and published count stand still, nothing queued.
async function quiesce(node) {
    let prev = null;
    await waitFor(`${node.name} quiet (nothing arriving, nothing queued)`, 10000, async () => {
        const m = await node.metrics();
        const cur = [m.gpsrelay_ingest_reports_total, m.gpsrelay_cluster_published_total,
            m.gpsrelay_cluster_queued];
        const same = prev && cur.every((v, k) => Object.is(v, prev[k])) && !(cur[2] > 0);
        prev = cur;
        return same;
    }, 150);
}

// The modems' fixes, the stream and every console, after the fleet stopped.
async function settleAndAccount(cl, fleet, cons, streamBefore, conflatedBefore) {
    const want = fleet.sent;
    let info = null;
    try {
        info = await waitFor(`the stream stores all ${want} fixes sent`, 30000, async () => {
            const i = await cl.nats.apiStreamInfo(STREAM);
            return i && i.state.last_seq - streamBefore >= want ? i : null;
        }, 200);
    } catch (e) {
        info = await cl.nats.apiStreamInfo(STREAM);
        check(false, `${e.message} (stream last_seq ${info?.state.last_seq}, ${info ? info.state.last_seq - streamBefore : "?"} new)`);
    }
    const last = info.state.last_seq;
    const stored = await L.readStream(cl.nats, STREAM, streamBefore + 1, last);
    check(stored.unread.length === 0, `the stream answers for every seq it stored: ${stored.unread.length} unread ` +
        `(${stored.unread.slice(0, 5).join(",")}${stored.unread.length > 5 ? ",..." : ""}; ${stored.lastError})`);
    // seq -> device; the stream against the modems, per device.
    const expected = new Map();
    const perDevice = new Map();
    const prefix = `${STREAM}.pos.`;
    const seen = new Set();
    let twice = 0;
    // Fixes the stream holds after a newer fix of the same unit: every node skips them as
    // out of order (docs/cluster.md: acceptance is the accepting node's, against what the stream
    // gave it), so no console ever gets them although the stream stored them.
    const newest = new Map(), behind = [];
    // In stream order (readStream answers in the order reads succeeded).
    for (const [seq, m] of [...stored].sort((a, b) => a[0] - b[0])) {
        let dev = m.subject.startsWith(prefix) ? m.subject.slice(prefix.length) : m.subject;
        // The body names the device ("id", or "device") and the fix time: a fix stored twice
        // has the same pair twice.
        try {
            const j = JSON.parse(m.data);
            dev = j.id || j.device || dev;
            const k = `${dev}@${j.time}`;
            if (seen.has(k)) twice++;
            seen.add(k);
            const t = Date.parse(j.time);
            const n = newest.get(dev);
            if (n && t < n.t) behind.push([seq, `${dev}@${j.time.slice(11)}<${n.time.slice(11)}#${n.seq}`]);
            else newest.set(dev, { t, time: j.time, seq });
        } catch { /* not JSON: the subject names the device */ }
        perDevice.set(dev, (perDevice.get(dev) || 0) + 1);
        if (UNITS.includes(dev)) expected.set(seq, dev);
    }
    const diffs = [...fleet.sentBy].filter(([d, n]) => (perDevice.get(d) || 0) !== n)
        .map(([d, n]) => `${d} sent ${n} stored ${perDevice.get(d) || 0}`);
    log(`stream: ${stored.size} positions stored (seq ${streamBefore + 1}..${last}) for ${want} fixes sent; ` +
        `${expected.size} of them ${AGENCY}`);
    check(diffs.length === 0, `every fix sent is stored once: ${diffs.slice(0, 6).join(", ")}`);
    check(twice === 0, `no fix stored twice (same device and time): ${twice}`);
    // (seq:unit@its fix time<the newer fix time#the newer one's seq)
    check(behind.length === 0, `no fix stored after a newer one of its unit (no node delivers those): ` +
        `${behind.length}${behind.length ? ` (${behind.slice(0, 6).map(([q, d]) => `${q}:${d}`).join(" ")}${behind.length > 6 ? " ..." : ""}; ` +
        "consoles need not have them)" : ""}`);
    const optional = new Set(behind.map(([seq]) => seq));
    const maxSeq = Math.max(...expected.keys());
    // Every console gets to the newest position (bounded), then the counts.
    try {
        await waitFor("every console has the newest position", 15000,
            async () => cons.every((c) => c.last && c.last.seq >= maxSeq), 100);
    } catch (e) {
        check(false, `${e.message}: ${cons.filter((c) => !(c.last && c.last.seq >= maxSeq)).map((c) => `${c.name} at ${c.last?.seq}`).join(", ")} (newest ${maxSeq})`);
    }
    const conflatedAfter = await metricByNode(cl, "gpsrelay_positions_conflated_total");
    // What each node says of the stream: when a console misses positions the stream holds,
    // these say whether the node skipped them (and why) or never got them.
    // Counted over the node's processes since the test began (restarts included).
    for (const n of cl.nodes) {
        const m = await n.totals();
        const skipped = Object.entries(m).filter(([k, v]) => k.startsWith("gpsrelay_cluster_skipped_total") && v > 0)
            .map(([k, v]) => `${k.replace(/.*reason="([^"]*)".*/, "$1")}=${v}`);
        log(`${n.name}${n.past ? " (all its processes)" : ""}: published ${m.gpsrelay_cluster_published_total}, applied ${m.gpsrelay_cluster_applied_total}, ` +
            `skipped ${skipped.join(" ") || 0}, publish failures ${m.gpsrelay_cluster_publish_failures_total}, ` +
            `lag ${m.gpsrelay_cluster_lag}, queued ${m.gpsrelay_cluster_queued}, ` +
            `conflated ${m.gpsrelay_positions_conflated_total}, rejected ${Object.entries(m)
                .filter(([k, v]) => k.startsWith("gpsrelay_ingest_rejected_total") && v > 0)
                .map(([k, v]) => `${k.replace(/.*reason="([^"]*)".*/, "$1")}=${v}`).join(" ") || 0}`);
    }
    const results = [];
    for (const c of cons) {
        const a = account(c, expected, conflationBudget(c, conflatedBefore, conflatedAfter), optional);
        console.log(`  ${a.ok ? "ok  " : "FAIL"} ${a.summary}`);
        for (const p of a.problems) console.log(`         ${c.name}: ${p}`);
        check(a.ok, `${c.name}: no position missing or twice`);
        results.push(a);
    }
    return { expected, results, sent: want };
}

// A scenario: consoles join, modems send, body() disturbs the cluster while positions
// flow, then everything is counted.
async function scenario(cl, name, specs, body) {
    log(`=== ${name}`);
    const before = await cl.nats.apiStreamInfo(STREAM);
    const streamBefore = before ? before.state.last_seq : 0;
    const cons = await consoles(cl, specs);
    const fleet = new Fleet(cl.nodes, [...UNITS, ...OTHERS], HZ);
    const conflatedBefore = await metricByNode(cl, "gpsrelay_positions_conflated_total");
    fleet.start();
    try {
        await waitFor("positions reach every console", 10000,
            async () => cons.every((c) => c.arrivals.length >= 20), 50);
        await body({ cons, fleet });
        await fleet.stop();
        const r = await settleAndAccount(cl, fleet, cons, streamBefore, conflatedBefore);
        log(`=== ${name}: ${r.sent} fixes, ${r.expected.size} ${AGENCY} positions, ${cons.length} consoles`);
    } finally {
        if (fleet.timer) await fleet.stop();
        fleet.close();
        for (const c of cons) c.disconnect();
    }
}

// Lets positions flow for ms with nothing disturbed, giving up at once if a process died.
async function flow(ms) {
    const end = Date.now() + ms;
    while (Date.now() < end) {
        if (L.crashes.length) throw new Error(`given up: ${L.crashes.join("; ")}`);
        await sleep(Math.min(100, end - Date.now()));
    }
}

function pauses(cons, from, to) {
    return cons.map((c) => ({ name: c.name, all: c.maxPause(from, to).ms, unit: unitPause(c, from, to) }));
}
function printPauses(what, ps) {
    log(`${what}: longest pause per console (any position / one unit): ` +
        ps.map((p) => `${p.name} ${p.all} ms / ${p.unit.ms} ms (${p.unit.device})`).join(", "));
}

// The node a console's join reply named, as an index (or -1).
const nodeIndex = (c) => (c.joins[0].node ? Number(String(c.joins[0].node).replace(/^n/, "")) - 1 : -1);

// ---- scenarios ----------------------------------------------------------------------------

const S = {};

// 1. kill -9 of a node with consoles attached: they reconnect through haproxy (or, direct,
// to the same node once it is back) and resume with since: recovered, nothing twice,
// nothing missing.
S.node_kill = async (cl) => {
    const specs = [
        { name: "ws-h1", via: "haproxy" }, { name: "ws-h2", via: "haproxy" },
        { name: "ws-h3", via: "haproxy" }, { name: "lp-h1", via: "haproxy", longpoll: true },
        { name: "ws-n1", via: 0 }, { name: "ws-n2", via: 1 }, { name: "ws-n3", via: 2 },
    ];
    await scenario(cl, "node_kill: kill -9 of a gpsrelayd with consoles attached", specs, async ({ cons, fleet }) => {
        const lp = cons.find((c) => c.longpoll);
        let v = nodeIndex(lp);
        if (v < 0) { v = 0; log("join replies carry no node: killing n1"); }
        const victim = cl.nodes[v];
        const attached = cons.filter((c) => nodeIndex(c) === v);
        log(`victim ${victim.name}; consoles on it: ${attached.map((c) => c.name).join(", ") || "(unknown)"}`);
        await flow(2000);
        fleet.avoid.add(v);
        await quiesce(victim);
        const joinsBefore = new Map(cons.map((c) => [c.name, c.joins.length]));
        const tKill = Date.now();
        await victim.kill9();
        log(`${victim.name} killed`);
        const movers = cons.filter((c) => nodeIndex(c) === v && c.via === "haproxy");
        await waitFor("consoles of the killed node rejoin elsewhere", 20000,
            async () => movers.every((c) => c.joins.length > joinsBefore.get(c.name)), 50);
        for (const c of movers) {
            const j = c.joins[joinsBefore.get(c.name)];
            log(`${c.name} rejoined ${j.node || "?"} after ${j.at - tKill} ms: recovered=${j.recovered} since ${j.since?.seq} reply seq ${j.seq}, ${j.seqs.length} positions in the reply`);
            check(j.recovered === true, `${c.name}: rejoin after the kill is recovered`);
            check(j.node !== victim.name, `${c.name}: rejoined another node`);
        }
        await cl.haproxy.waitServer(victim.name, "DOWN", 5000);
        log(`haproxy marked ${victim.name} DOWN after ${Date.now() - tKill} ms`);
        await flow(3000);
        await victim.start();
        fleet.avoid.delete(v);
        await cl.haproxy.waitServer(victim.name, "UP", 10000);
        log(`${victim.name} back and UP ${Date.now() - tKill} ms after the kill`);
        await flow(2000);
    });
};

// 2a. kill -9 of the NATS server leading the stream: nothing lost or twice; the pause
// (an election, 4-9 s on 2.9.10) is printed and bounded.
S.nats_leader_kill = async (cl) => {
    const specs = [{ name: "ws-h1", via: "haproxy" }, { name: "ws-h2", via: "haproxy" },
        { name: "ws-n1", via: 0 }, { name: "ws-n2", via: 1 }, { name: "ws-n3", via: 2 }];
    await scenario(cl, "nats_leader_kill: kill -9 of the stream's leader", specs, async ({ cons }) => {
        const l = await cl.nats.streamLeader(STREAM);
        log(`stream leader: ${cl.nats.servers[l].name}`);
        await flow(2000);
        const tKill = Date.now();
        await cl.nats.kill9(l);
        const info = await waitFor("a new stream leader", 30000, async () => {
            const i = await cl.nats.apiStreamInfo(STREAM);
            return i && i.cluster?.leader && i.cluster.leader !== cl.nats.servers[l].name ? i : null;
        }, 100);
        log(`new leader ${info.cluster.leader} known ${Date.now() - tKill} ms after the kill`);
        await flow(4000);
        const ps = pauses(cons, tKill - 1000, Date.now());
        printPauses("leader kill", ps);
        for (const p of ps) check(p.all < 15000, `${p.name}: pause after a leader kill ${p.all} ms < 15 s`);
        await cl.nats.restart(l);
        await waitReplicas(cl);
        log(`${cl.nats.servers[l].name} back, all replicas current`);
        await flow(1000);
    });
};

// 2b. kill -9 of a NATS server that leads nothing (neither the stream nor the JetStream
// meta group): no pause over a second.
// 2c. kill -9 of the meta leader while another server leads the stream: the stream keeps
// storing, but whatever needs the meta group (a consumer made anew for a node whose
// consumer lived there) waits for its election: printed, bounded like a leader kill.
async function killNonLeader(cl, which) {
    const specs = [{ name: "ws-h1", via: "haproxy" }, { name: "lp-h1", via: "haproxy", longpoll: true },
        { name: "ws-n1", via: 0 }, { name: "ws-n2", via: 1 }, { name: "ws-n3", via: 2 }];
    const title = which === "meta" ? "nats_meta_leader_kill: kill -9 of the meta leader, not the stream's"
        : "nats_follower_kill: kill -9 of a NATS server that leads nothing";
    await scenario(cl, title, specs, async ({ cons }) => {
        let l = await cl.nats.streamLeader(STREAM);
        let meta = await cl.nats.metaLeader();
        if (which === "meta" && meta === l) {
            // Both on one server: make another lead the stream (step down), so that the
            // kill is of the meta leader alone.
            const c = await cl.nats.client();
            await c.request(`$JS.API.STREAM.LEADER.STEPDOWN.${STREAM}`, "").catch(() => null);
            c.close();
            await waitFor("another stream leader", 15000, async () =>
                (l = await cl.nats.streamLeader(STREAM)) !== meta, 100);
        }
        const f = which === "meta" ? meta : [0, 1, 2].find((i) => i !== l && i !== meta);
        log(`stream leader ${cl.nats.servers[l].name}, meta leader ${cl.nats.servers[meta]?.name}; ` +
            `killing ${cl.nats.servers[f].name}`);
        if (f === undefined || f < 0 || f === l) throw new Error("no server to kill for this case");
        await flow(2000);
        const tKill = Date.now();
        await cl.nats.kill9(f);
        await flow(which === "meta" ? 10000 : 5000);
        const ps = pauses(cons, tKill - 1000, Date.now());
        printPauses(which === "meta" ? "meta leader kill" : "follower kill", ps);
        for (const p of ps) {
            if (which === "meta") {
                check(p.all < 15000, `${p.name}: pause after the meta leader's kill ${p.all} ms < 15 s`);
                continue;
            }
            check(p.all < FOLLOWER_PAUSE_MS,
                `${p.name}: longest pause after a follower kill ${p.all} ms < ${FOLLOWER_PAUSE_MS} ms`);
            check(p.unit.ms < FOLLOWER_PAUSE_MS + 1000 / HZ,
                `${p.name}: longest pause of one unit (${p.unit.device}) ${p.unit.ms} ms < ` +
                `${FOLLOWER_PAUSE_MS} ms + its interval`);
        }
        await cl.nats.restart(f);
        await waitReplicas(cl);
        log(`${cl.nats.servers[f].name} back, all replicas current`);
        await flow(1000);
    });
}
S.nats_follower_kill = (cl) => killNonLeader(cl, "follower");
S.nats_meta_leader_kill = (cl) => killNonLeader(cl, "meta");

// 3. SIGSTOP of a NATS server (the stream's leader: the hardest one) for 30 s, SIGCONT.
S.nats_stop = async (cl) => {
    const specs = [{ name: "ws-h1", via: "haproxy" }, { name: "ws-n1", via: 0 },
        { name: "ws-n2", via: 1 }, { name: "ws-n3", via: 2 }];
    await scenario(cl, "nats_stop: SIGSTOP of the stream's leader for 30 s", specs, async ({ cons }) => {
        const l = await cl.nats.streamLeader(STREAM);
        log(`stopping ${cl.nats.servers[l].name} (stream leader)`);
        await flow(2000);
        const tStop = Date.now();
        cl.nats.stop(l);
        await flow(30000);
        cl.nats.cont(l);
        log(`${cl.nats.servers[l].name} continued after ${Date.now() - tStop} ms`);
        const ps = pauses(cons, tStop - 1000, Date.now());
        printPauses("SIGSTOP of the leader", ps);
        for (const p of ps) check(p.all < 15000, `${p.name}: pause while the leader is stopped ${p.all} ms < 15 s`);
        await waitReplicas(cl);
        await flow(3000);
        const after = pauses(cons, Date.now() - 3000, Date.now());
        printPauses("3 s after SIGCONT", after);
    });
};

// 4. A node cut off from NATS: its one NATS server is killed. /readyz 503 within 5 s,
// haproxy takes it out, the fixes it accepts meanwhile reach every console once that
// server is back (same store), and /readyz returns to 200.
S.cutoff = async (cl) => {
    const n3 = cl.nodes[2];
    log(`${n3.name} restarts with cluster_nats ${cl.nats.url(2)} only`);
    check(await n3.stop() === 0, `${n3.name} exits 0 on SIGTERM`);
    n3.setConf(clusterConf([cl.nats.url(2)], 2));
    await n3.start();
    const specs = [{ name: "ws-h1", via: "haproxy" }, { name: "lp-h1", via: "haproxy", longpoll: true },
        { name: "ws-n1", via: 0 }, { name: "ws-n2", via: 1 }, { name: "ws-n3", via: 2 }];
    await scenario(cl, "cutoff: the only NATS server of n3 dies", specs, async () => {
        await flow(2000);
        const tKill = Date.now();
        await cl.nats.kill9(2);
        const r = await waitFor(`${n3.name} /readyz 503`, 10000, async () => {
            const x = await n3.readyz();
            return x && x.status === 503 ? x : null;
        }, 50).catch((e) => { throw new Error(`${e.message} (last answer: ${n3.lastReadyz})`); });
        const t503 = Date.now() - tKill;
        log(`${n3.name} /readyz 503 after ${t503} ms: ${JSON.stringify(r.body.trim())}`);
        check(t503 <= 5000, `${n3.name}: /readyz 503 within 5 s of losing NATS (${t503} ms)`);
        check(/no NATS connection/.test(r.body), `/readyz body names the reason: ${JSON.stringify(r.body.trim())}`);
        await cl.haproxy.waitServer(n3.name, "DOWN", 5000);
        log(`haproxy took ${n3.name} out after ${Date.now() - tKill} ms`);
        await flow(4000);
        const m = await n3.metrics();
        log(`${n3.name} while cut off: cluster_up ${m.gpsrelay_cluster_up}, queued ${m.gpsrelay_cluster_queued}, ` +
            `publish failures ${m.gpsrelay_cluster_publish_failures_total}`);
        check(m.gpsrelay_cluster_up === 0, `${n3.name}: gpsrelay_cluster_up 0 while cut off`);
        check(m.gpsrelay_cluster_queued > 0, `${n3.name}: accepted fixes queued while cut off (${m.gpsrelay_cluster_queued})`);
        const tBack = Date.now();
        await cl.nats.restart(2);
        await waitFor(`${n3.name} /readyz 200 again`, 30000, () => n3.isReady(), 100)
            .catch((e) => { throw new Error(`${e.message} (last answer: ${n3.lastReadyz})`); });
        log(`${n3.name} ready ${Date.now() - tBack} ms after its NATS server came back`);
        await cl.haproxy.waitServer(n3.name, "UP", 10000);
        await flow(2000);
    });
    // Leave the cluster as it was for a scenario that may follow.
    check(await n3.stop() === 0, `${n3.name} exits 0 on SIGTERM`);
    n3.setConf(clusterConf(cl.nats.urls(), 2));
    await n3.start();
    await cl.haproxy.waitServer(n3.name, "UP", 10000);
};

// 5. The three nodes restarted one after another (SIGTERM, start, ready) under consoles
// connected through haproxy: nothing lost, nothing twice.
S.rolling = async (cl) => {
    const specs = [{ name: "ws-h1", via: "haproxy" }, { name: "ws-h2", via: "haproxy" },
        { name: "ws-h3", via: "haproxy" }, { name: "lp-h1", via: "haproxy", longpoll: true },
        { name: "ws-n1", via: 0 }];
    await scenario(cl, "rolling: SIGTERM and start of n1, n2, n3 in turn", specs, async ({ cons, fleet }) => {
        for (let i = 0; i < 3; i++) {
            const n = cl.nodes[i];
            await flow(1500);
            fleet.avoid.add(i);
            await quiesce(n);
            const t = Date.now();
            const code = await n.stop();
            check(code === 0, `${n.name} exits 0 on SIGTERM (${code})`);
            await n.start();
            log(`${n.name} restarted and ready in ${Date.now() - t} ms`);
            fleet.avoid.delete(i);
            await cl.haproxy.waitServer(n.name, "UP", 10000);
        }
        await flow(2000);
        for (const c of cons)
            check(c.joins.slice(1).every((j) => j.recovered), `${c.name}: every rejoin recovered (${c.joins.length - 1} rejoins)`);
    });
};

async function waitReplicas(cl, ms = 30000) {
    await waitFor("every stream replica current", ms, async () => {
        const i = await cl.nats.apiStreamInfo(STREAM);
        return i && i.cluster?.leader && (i.cluster.replicas || []).length === 2 &&
            i.cluster.replicas.every((r) => r.current);
    }, 200);
}

// Phase 1: the harness itself, with no cluster support needed in the daemon. The shipped
// configs check; the NATS cluster forms, stores with three replicas, elects a new leader
// after a kill, takes a restarted server back and keeps storing while one is stopped;
// haproxy puts single-node daemons behind one address, health-checks /readyz, and serves
// WebSocket and LongPoll consoles.
S.harness = async (cl) => {
    const t = spawnSync("nats-server", ["-c", NATS_CONF, "-t"], { encoding: "utf8" });
    check(t.status === 0, `nats-server -t config/nats-server.conf: ${t.stdout}${t.stderr}`);
    const h = spawnSync("haproxy", ["-c", "-f", HAPROXY_CFG], { encoding: "utf8" });
    check(h.status === 0, `haproxy -c -f config/haproxy.cfg: ${h.stdout}${h.stderr}`);

    const nats = cl.nats;
    let c = await nats.client();
    const created = await c.request("$JS.API.STREAM.CREATE.harness",
        { name: "harness", subjects: ["harness.>"], num_replicas: 3, storage: "file" });
    c.close();
    check(!created.error, `stream created: ${JSON.stringify(created.error || created.config?.name)}`);
    const publish = async (k) => {
        const cc = await nats.client();
        try {
            const t0 = Date.now();
            const a = await cc.request(`harness.pos.U${k}`, `{"n":${k}}`, 10000);
            return { seq: a.seq, ms: Date.now() - t0, error: a.error };
        } finally { cc.close(); }
    };
    for (let k = 0; k < 20; k++) await publish(k);
    const l = await nats.streamLeader("harness");
    const api = await nats.apiStreamInfo("harness");
    check(api.cluster.leader === nats.servers[l].name,
        `/jsz and STREAM.INFO agree on the leader (${nats.servers[l].name}, ${api.cluster.leader})`);
    check(api.state.messages === 20, `20 messages stored (${api.state.messages})`);
    const tKill = Date.now();
    await nats.kill9(l);
    const nl = await waitFor("a new leader", 30000, async () => {
        const i = await nats.apiStreamInfo("harness");
        return i && i.cluster.leader && i.cluster.leader !== nats.servers[l].name ? i.cluster.leader : null;
    }, 100);
    const p = await waitFor("a publish after the kill", 30000, async () => {
        const r = await publish(100).catch(() => null);
        return r && !r.error ? r : null;
    }, 100);
    log(`harness: leader ${nats.servers[l].name} killed; new leader ${nl} after ${Date.now() - tKill} ms; publish ok (seq ${p.seq})`);
    await nats.restart(l);
    await waitFor("replicas current after the restart", 30000, async () => {
        const i = await nats.apiStreamInfo("harness");
        return i && i.cluster.replicas?.length === 2 && i.cluster.replicas.every((r) => r.current);
    }, 200);
    const l2 = await nats.streamLeader("harness");
    const f = (l2 + 1) % 3;
    nats.stop(f);
    const sp = await publish(101);
    log(`harness: ${nats.servers[f].name} stopped (not the leader): publish in ${sp.ms} ms`);
    check(!sp.error && sp.ms < 1000, `a publish while a follower is stopped takes < 1 s (${sp.ms} ms)`);
    nats.cont(f);
    await nats.waitAllReady(20000);

    // haproxy and consoles against single-node daemons.
    const cons = await consoles(cl, [{ name: "ws-h1", via: "haproxy" }, { name: "ws-h2", via: "haproxy" },
        { name: "lp-h1", via: "haproxy", longpoll: true }, { name: "ws-n2", via: 1 }], { oneEpoch: false });
    const sendAll = (ms) => Promise.all(cl.nodes.map((n) => new Promise((resolve) => {
        const s = require("node:dgram").createSocket("udp4");
        s.send(rmc("AMB01", 40.7, -74.0, ms), n.ports.udp, "127.0.0.1", () => { s.close(); resolve(); });
    })));
    await sendAll(Date.now());
    await waitFor("a position on every console", 10000, async () => cons.every((k) => k.count > 0), 50);
    check(true, "consoles through haproxy (WebSocket, LongPoll) get positions");
    const tk = Date.now();
    await cl.nodes[1].kill9();
    await cl.haproxy.waitServer("n2", "DOWN", 5000);
    log(`harness: haproxy marked n2 DOWN ${Date.now() - tk} ms after kill -9`);
    await cl.nodes[1].start();
    await cl.haproxy.waitServer("n2", "UP", 10000);
    log(`harness: n2 UP again`);
    const before = cons.map((k) => k.count);
    await sendAll(Date.now());
    await waitFor("positions after n2's restart, every console", 15000,
        async () => cons.every((k, i) => k.count > before[i]), 50).catch((e) => {
        throw new Error(`${e.message}: ${cons.map((k) => `${k.name} ${k.count} joins ${k.joins.length} closes ${k.closes}`).join(", ")}`);
    });
    log(`harness: ${cons.map((k) => `${k.name} opens ${k.opens} joins ${k.joins.length}`).join(", ")}`);
    for (const k of cons) k.disconnect();
};

async function main() {
    const names = wanted.length ? wanted : ["node_kill", "nats_leader_kill", "nats_follower_kill",
        "nats_meta_leader_kill", "nats_stop", "cutoff", "rolling"];
    for (const n of names) if (!S[n]) { console.error(`unknown scenario ${n}`); process.exit(2); }
    let cl = null;
    const t0 = Date.now();
    try {
        cl = await setup(names.every((n) => n === "harness"));
        for (const n of names) await S[n](cl);
    } catch (e) {
        check(false, e.stack || e.message);
    } finally {
        await teardown(cl).catch((e) => check(false, `teardown: ${e.message}`));
    }
    for (const c of L.crashes) check(false, c);
    if (L.unparsedCount()) log(`LongPoll answers that were not JSON (haproxy with no node up): ${L.unparsedCount()}`);
    log(`done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    report();
}

main();
