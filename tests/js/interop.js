// interop.js - the official phoenix npm client (1.8.16), unchanged, against the real
// gpsrelayd: WebSocket and LongPoll transports, join, positions pushes, leave, and a
// daemon restart that the client rides out (1001, reconnect, rejoin with `since`), and a
// LongPoll console on a quiet topic that keeps its session; labels in join replies and
// unit_added, and a label change by CSV reload reaching joined consoles.
//
// usage: node interop.js /path/to/gpsrelayd
"use strict";

const { Socket, LongPoll } = require("phoenix");
const WebSocket = require("ws");
const { Daemon, rmc, check, report, WAIT_MS } = require("./daemon");

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

// A LongPoll console on a quiet topic: its polls are answered 204 after their 10 s window
// (lws used to cut them at 5 s, and the client saw an error and reconnected every 5 s), so
// 12 s pass without an error, a close or a second open, and then a position arrives.
async function quietLongPoll(daemon) {
    const socket = new Socket(`ws://127.0.0.1:${daemon.ports.ws}/socket`,
        { transport: LongPoll, longpollerTimeout: 20000, heartbeatIntervalMs: 30000 });
    const events = { open: 0, error: 0, close: 0 };
    socket.onOpen(() => events.open++);
    socket.onError(() => events.error++);
    socket.onClose(() => events.close++);
    socket.connect();
    const channel = socket.channel("agency:county-ems", {});
    await joined(channel);
    await new Promise((r) => setTimeout(r, 12000));
    check(events.open === 1 && events.error === 0 && events.close === 0,
        `quiet longpoll: no error, close or reconnect in 12 s (${JSON.stringify(events)})`);
    const got = nextPosition(channel, "AMB-12");
    await daemon.send(rmc("AMB-12", 40.7129, -74.006));
    check((await got).device === "AMB-12", "quiet longpoll: a position after the quiet");
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

// The mapping: AMB-9 never reports; E-7 is another agency's (a quoted label, UTF-8);
// AMB-12 is in both (mutual aid).
const CSV = "device_id,agency_id,label,source_addr\n" +
    "AMB-12,county-ems,Medic 12,\nAMB-12,city-fire,Medic 12,\nAMB-7,county-ems,Medic 7,\n" +
    "AMB-9,county-ems,,\nE-7,city-fire,\"Engine \"\"7\"\" \u2014 Nord\",\n";
const COUNTY_UNITS = [{ device: "AMB-12", label: "Medic 12" }, { device: "AMB-7", label: "Medic 7" },
    { device: "AMB-9", label: "" }];
const CITY_UNITS = [{ device: "AMB-12", label: "Medic 12" }, { device: "E-7", label: "Engine \"7\" \u2014 Nord" }];
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

// Waits until pred() holds; false (and a FAIL line) after WAIT_MS.
async function until(what, pred) {
    const deadline = Date.now() + WAIT_MS;
    while (Date.now() < deadline) {
        if (pred()) return true;
        await new Promise((r) => setTimeout(r, 20));
    }
    console.error(`timed out waiting for ${what}`);
    return false;
}

// Every event of a channel, in order: [event, payload].
function record(channel) {
    const seen = [];
    for (const e of ["unit_added", "unit_removed", "unit_stale"])
        channel.on(e, (payload) => seen.push([e, payload]));
    return seen;
}

// Labels (issue 19): the join reply's units over both transports, exactly, in device id
// order (AMB-12 before AMB-7: bytes, not numbers), with the members it had before; then a
// CSV reload (SIGHUP) that relabels AMB-7 and adds AMB-5 reaches joined consoles of both
// transports as unit_added, and nothing of it reaches another agency's channel.
async function labels(daemon) {
    const sockets = [], chans = {};
    for (const [name, transport] of [["websocket", WebSocket], ["longpoll", LongPoll]]) {
        const socket = new Socket(`ws://127.0.0.1:${daemon.ports.ws}/socket`,
            { transport, longpollerTimeout: 20000, heartbeatIntervalMs: 30000 });
        socket.connect();
        sockets.push(socket);
        const county = socket.channel("agency:county-ems", {});
        let reply = await joined(county);
        check(same(Object.keys(reply), ["epoch", "seq", "recovered", "positions", "stale", "units"]),
            `${name}: join reply members (${Object.keys(reply)})`);
        check(same(reply.units, COUNTY_UNITS), `${name}: county-ems units ${JSON.stringify(reply.units)}`);
        check(!reply.positions.some((p) => p.device === "AMB-9"), `${name}: AMB-9 has no position`);
        const city = socket.channel("agency:city-fire", {});
        reply = await joined(city);
        check(same(reply.units, CITY_UNITS), `${name}: city-fire units ${JSON.stringify(reply.units)}`);
        const amb9 = socket.channel("device:AMB-9", {});
        reply = await joined(amb9);
        check(same(reply.units, [{ device: "AMB-9", label: "" }]) && same(reply.positions, []),
            `${name}: device:AMB-9 units ${JSON.stringify(reply.units)}`);
        const amb7 = socket.channel("device:AMB-7", {});
        reply = await joined(amb7);
        check(same(reply.units, [{ device: "AMB-7", label: "Medic 7" }]),
            `${name}: device:AMB-7 units ${JSON.stringify(reply.units)}`);
        chans[name] = { socket, county: record(county), city: record(city), amb9: record(amb9),
            amb7: record(amb7), cityChannel: city };
    }

    daemon.write("devices.csv", CSV.replace("AMB-7,county-ems,Medic 7,", "AMB-7,county-ems,Medic 7B,") +
        "AMB-5,county-ems,Medic 5,\n");
    process.kill(daemon.child.pid, "SIGHUP");
    for (const [name, c] of Object.entries(chans)) {
        const added = (seen, device) => seen.find(([e, p]) => e === "unit_added" && p.device === device);
        check(await until(`${name}: unit_added AMB-5 and AMB-7`,
            () => added(c.county, "AMB-5") && added(c.county, "AMB-7") && added(c.amb7, "AMB-7")),
            `${name}: unit_added for the new unit and the relabeled one`);
        const a5 = added(c.county, "AMB-5")?.[1], a7 = added(c.county, "AMB-7")?.[1];
        check(a5 && a5.label === "Medic 5" && !("position" in a5), `${name}: AMB-5 added ${JSON.stringify(a5)}`);
        // AMB-7 reported in the tests before (restart): its unit_added carries its position.
        check(a7 && a7.label === "Medic 7B" && a7.position?.device === "AMB-7",
            `${name}: AMB-7 relabeled ${JSON.stringify(a7)}`);
        check(same(added(c.amb7, "AMB-7")?.[1], a7), `${name}: device:AMB-7 told the same`);
        check(c.county.length === 2, `${name}: county-ems got two events (${JSON.stringify(c.county)})`);
        // A join on the same socket is answered after whatever the reload queued before it:
        // the other agency's channel and the untouched device's got nothing.
        c.cityChannel.leave();
        const city = c.socket.channel("agency:city-fire", {});
        const reply = await joined(city);
        check(same(reply.units, CITY_UNITS), `${name}: city-fire units after the reload`);
        check(c.city.length === 0 && c.amb9.length === 0,
            `${name}: no event for city-fire or device:AMB-9 (${JSON.stringify([c.city, c.amb9])})`);
        const county = c.socket.channel("agency:county-ems", {});
        const again = await joined(county);
        check(same(again.units, [{ device: "AMB-12", label: "Medic 12" }, { device: "AMB-5", label: "Medic 5" },
            { device: "AMB-7", label: "Medic 7B" }, { device: "AMB-9", label: "" }]),
        `${name}: county-ems units after the reload ${JSON.stringify(again.units)}`);
    }
    sockets.forEach((s) => s.disconnect());
}

// A reload that changes more units than a console's queue holds (128): the channel gets
// phx_error instead of the socket a 1008, the official client joins again by itself, and
// that reply has every unit with its new label. Over WebSocket 300 units are added, then
// over LongPoll the same 300 relabelled.
async function bulkChange(daemon) {
    for (const [name, transport, suffix] of [["websocket", WebSocket, ""], ["longpoll", LongPoll, " B"]]) {
        const socket = new Socket(`ws://127.0.0.1:${daemon.ports.ws}/socket`,
            { transport, rejoinAfterMs: () => 100, longpollerTimeout: 20000 });
        let closes = 0, errors = 0;
        socket.onClose(() => closes++);
        socket.connect();
        const county = socket.channel("agency:county-ems", {});
        const replies = [];
        county.onError(() => errors++);
        await new Promise((resolve) => county.join().receive("ok", (r) => { replies.push(r); resolve(); }));
        const before = await daemon.metric("gpsrelay_channels_resynced_total");
        let csv = CSV;
        for (let i = 0; i < 300; i++) csv += `BULK-${String(i).padStart(3, "0")},county-ems,Bulk ${i}${suffix},\n`;
        daemon.write("devices.csv", csv);
        process.kill(daemon.child.pid, "SIGHUP");
        check(await until(`${name}: a second join reply`, () => replies.length === 2),
            `${name} bulk: the channel joined again`);
        const bulk = (replies[1]?.units || []).filter((u) => u.device.startsWith("BULK-"));
        check(bulk.length === 300 && bulk[299].label === `Bulk 299${suffix}`,
            `${name} bulk: the new reply has all 300 (${bulk.length}, ${bulk[299]?.label})`);
        check(errors === 1 && closes === 0, `${name} bulk: one channel error, the socket kept (${errors}, ${closes})`);
        const resynced = await daemon.metric("gpsrelay_channels_resynced_total") - before;
        const overflowed = await daemon.metric('gpsrelay_consoles_closed_total{reason="overflow"}');
        // At least this console; a LongPoll session of labels() may still hold its channel.
        check(resynced >= 1 && overflowed === 0,
            `${name} bulk: counted as a resync, not an overflow (${resynced}, ${overflowed})`);
        socket.disconnect();
    }
}

async function main() {
    const daemon = await Daemon.create(process.argv[2], CSV, "auth none\n");
    await daemon.start();
    try {
        await transportRoundTrip(daemon, WebSocket, "websocket");
        await transportRoundTrip(daemon, LongPoll, "longpoll");
        await quietLongPoll(daemon);
        await restart(daemon);
        await labels(daemon);
        await bulkChange(daemon);
    } catch (e) {
        check(false, e.message);
    } finally {
        check(await daemon.stop() === 0, "daemon exits 0");
        daemon.cleanup();
    }
    report();
}

main();
