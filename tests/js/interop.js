// interop.js - the official phoenix npm client (1.8.16), unchanged, against the real
// gpsrelayd: WebSocket and LongPoll transports, join, positions pushes, leave, and a
// daemon restart that the client rides out (1001, reconnect, rejoin with `since`).
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
