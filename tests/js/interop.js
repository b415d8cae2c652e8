// interop.js - the official phoenix npm client (1.8.16), unchanged, against the real
// gpsrelayd: WebSocket and LongPoll transports, join, positions pushes, leave, and a
// daemon restart that the client rides out (1001, reconnect, rejoin with `since`), and a
// LongPoll console on a quiet topic that keeps its session.
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

async function main() {
    const daemon = await Daemon.create(process.argv[2],
        "device_id,agency_id,label,source_addr\nAMB-12,county-ems,Medic 12,\nAMB-7,county-ems,Medic 7,\n",
        "auth none\n");
    await daemon.start();
    try {
        await transportRoundTrip(daemon, WebSocket, "websocket");
        await transportRoundTrip(daemon, LongPoll, "longpoll");
        await quietLongPoll(daemon);
        await restart(daemon);
    } catch (e) {
        check(false, e.message);
    } finally {
        check(await daemon.stop() === 0, "daemon exits 0");
        daemon.cleanup();
    }
    report();
}

main();
