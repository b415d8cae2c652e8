// history_units.js - the console's pure modules in Node, no browser, no daemon:
// web/src/history.js (URLs, ndjson and snapshot parsing, Retry-After, polite retries with a
// fake fetch and real timers, bounded concurrency) and web/src/replay.js (tracks, the
// position at a replay time, trails of 30 minutes, the replay clock, datetime-local values).
// Both modules import nothing, so they load as they are, from data: URLs.
//
// usage: node history_units.js WEB_SRC
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const { check, report } = require("../js/daemon");

const src = process.argv[2] || path.join(__dirname, "../../web/src");
const load = (f) => import("data:text/javascript;base64," +
    Buffer.from(fs.readFileSync(path.join(src, f))).toString("base64"));

const P = (device, time, lat = 1, lon = 2) => ({ device, seq: 1, time, lat, lon, src: "nmea" });

async function historyModule() {
    const h = await load("history.js");
    const from = Date.parse("2026-11-23T18:00:00Z"), to = Date.parse("2026-11-23T18:30:00.5Z");
    const u = new URL(h.historyUrl("AMB 1&x", from, to, 500), "http://x");
    check(u.pathname === "/api/history" && u.searchParams.get("device") === "AMB 1&x" &&
        u.searchParams.get("from") === "2026-11-23T18:00:00.000Z" &&
        u.searchParams.get("to") === "2026-11-23T18:30:00.500Z" && u.searchParams.get("limit") === "500",
    `historyUrl: ${u}`);
    check(!new URL(h.historyUrl("A", from, to), "http://x").searchParams.has("limit"),
        "historyUrl: no limit unless given");
    check(h.snapshotUrl("county-ems", from) ===
        "/api/snapshot?agency=county-ems&at=2026-11-23T18%3A00%3A00.000Z", "snapshotUrl");

    const a = P("A", "2026-11-23T18:00:01.000Z"), b = P("A", "2026-11-23T18:00:02.000Z");
    let r = h.parseHistory(`${JSON.stringify(a)}\n\n${JSON.stringify(b)}\n{"truncated":true}\n`);
    check(r.positions.length === 2 && r.positions[1].time === b.time && r.truncated,
        "parseHistory: positions in order, blank lines skipped, the truncated line noted");
    r = h.parseHistory("");
    check(r.positions.length === 0 && !r.truncated, "parseHistory: an empty answer");
    let threw = false;
    try { h.parseHistory('{"device":"A"}\n{broken\n'); } catch (_) { threw = true; }
    check(threw, "parseHistory: a broken line is an error, not a shorter track");
    r = h.parseSnapshot('{"agency":"x","at":"t","positions":[{"device":"A"}],"missing":["B"]}');
    check(r.positions.length === 1 && r.missing[0] === "B", "parseSnapshot");

    const now = Date.parse("2026-11-23T18:00:00Z");
    check(h.retryAfterMs("3", now) === 3000, "Retry-After: seconds");
    check(h.retryAfterMs("Mon, 23 Nov 2026 18:00:05 GMT", now) === 5000, "Retry-After: a date");
    check(h.retryAfterMs(null, now) === 2000 && h.retryAfterMs("soon", now) === 2000,
        "Retry-After: absent or unreadable, 2 s");
    check(h.retryAfterMs("0", now) === 500 && h.retryAfterMs("86400", now) === 30000,
        "Retry-After: kept within 0.5 to 30 s");

    // A fake fetch: answers from a list, records what it was asked.
    const fake = (answers) => {
        const asked = [];
        const fn = async (url, init) => {
            asked.push({ url, init, at: Date.now() });
            const [status, body, retry] = answers[Math.min(asked.length, answers.length) - 1];
            return { ok: status >= 200 && status < 300, status, text: async () => body,
                headers: { get: (n) => (n === "Retry-After" ? retry : null) } };
        };
        return { fn, asked };
    };
    let f = fake([[503, "busy\n", "1"], [200, "ok", null]]);
    const waits = [];
    const t0 = Date.now();
    const body = await h.get("/api/x", { token: "T", fetchFn: f.fn, onWait: (ms, n) => waits.push([ms, n]) });
    check(body === "ok" && f.asked.length === 2 && Date.now() - t0 >= 950 &&
        JSON.stringify(waits) === "[[1000,1]]", "get: a 503 waited out as Retry-After says");
    check(f.asked[0].init.headers.Authorization === "Bearer T" && f.asked[0].init.cache === "no-store",
        "get: the token as a Bearer header");
    f = fake([[503, "", "0"]]);
    let err = null;
    await h.get("/api/x", { fetchFn: f.fn }).catch((e) => { err = e; });
    check(err && err.status === 503 && f.asked.length === h.TRIES && /unavailable/.test(err.message),
        `get: an archive that stays down, ${h.TRIES} tries, then "${err && err.message}"`);
    for (const [status, re] of [[404, /no archive/], [401, /token/], [403, /does not cover/],
        [400, /bad request: from: not a time/]]) {
        f = fake([[status, "from: not a time\nmore", null]]);
        err = null;
        await h.get("/api/x", { fetchFn: f.fn }).catch((e) => { err = e; });
        check(err && err.status === status && re.test(err.message) && f.asked.length === 1,
            `get: ${status} is not retried ("${err && err.message}")`);
    }
    check(!(await h.get("/api/x", { fetchFn: fake([[200, "", null]]).fn, token: "" }).then(() => false)),
        "get: an empty 200 is fine");
    f = fake([[200, "", null]]);
    await h.get("/api/x", { fetchFn: f.fn });
    check(!("Authorization" in f.asked[0].init.headers), "get: no token, no Authorization");
    // Cancelled while waiting to retry: rejects at once.
    f = fake([[503, "", "30"]]);
    const ctl = new AbortController();
    const t1 = Date.now();
    const pending = h.get("/api/x", { fetchFn: f.fn, signal: ctl.signal, onWait: () => ctl.abort() });
    err = await pending.then(() => null, (e) => e);
    check(err && err.status === 0 && err.message === "cancelled" && Date.now() - t1 < 1000,
        "get: cancelled while waiting, at once");
    // No answer at all: a timeout, then an error, not a hang.
    const never = (url, init) => new Promise((_, reject) => init.signal.addEventListener("abort",
        () => reject(new Error("aborted"))));
    err = await h.get("/api/x", { fetchFn: never, timeoutMs: 100 }).then(() => null, (e) => e);
    check(err && err.status === 0 && /in time/.test(err.message), "get: no answer times out");

    // probe: 404 absent, 2xx present, other statuses present, no answer unknown.
    const probe = async (answers, fetchFn) => h.archive({ fetchFn: fetchFn || fake(answers).fn })
        .probe("agency-1");
    check(await probe([[404, "", null]]) === false && await probe([[200, "{}", null]]) === true &&
        await probe([[503, "", "1"]]) === true && await probe([[401, "", null]]) === true,
    "probe: 404 says no archive, any other answer says one");
    check(await probe(null, () => Promise.reject(new Error("down"))) === null,
        "probe: no answer, unknown");
    const c = h.archive({ token: "T", fetchFn: fake([[200,
        `${JSON.stringify(a)}\n{"truncated":true}\n`, null]]).fn });
    r = await c.history("A", from, to, { limit: 1 });
    check(r.positions.length === 1 && r.truncated, "archive().history parses");

    // mapLimit: at most n at once, results in order, the first failure rejects.
    let running = 0, most = 0;
    const res = await h.mapLimit([5, 1, 4, 2, 3], 2, async (x, i) => {
        most = Math.max(most, ++running);
        await new Promise((ok) => setTimeout(ok, x * 5));
        running--;
        return x * 10 + i;
    });
    check(JSON.stringify(res) === "[50,11,42,23,34]" && most === 2, "mapLimit: 2 at once, in order");
    let started = 0;
    err = await h.mapLimit([1, 2, 3, 4, 5], 2, async (x) => {
        started++;
        if (x === 2) throw new Error("two");
        await new Promise((ok) => setTimeout(ok, 10));
    }).then(() => null, (e) => e);
    check(err && err.message === "two" && started < 5, `mapLimit: stops after a failure (${started})`);
    check(JSON.stringify(await h.mapLimit([], 2, async () => 1)) === "[]", "mapLimit: nothing");
}

async function replayModule() {
    const r = await load("replay.js");
    check(JSON.stringify(r.SPEEDS) === "[1,2,5,10,30,60]", "speeds x1 to x60");
    const tr = r.track([P("A", "2026-11-23T18:00:03.000Z", 3), P("A", "2026-11-23T18:00:01.000Z", 1),
        P("A", "2026-11-23T18:00:03.000Z", 9), P("A", "bad"), P("A", "2026-11-23T18:00:02.000Z", 2)]);
    check(JSON.stringify(tr.map((x) => x.p.lat)) === "[1,2,3]", "track: in time order, once per time");
    const t = (s) => Date.parse(`2026-11-23T18:00:0${s}.000Z`);
    check(r.positionAt(tr, t(0)) === null && r.positionAt(tr, t(1)).lat === 1 &&
        r.positionAt(tr, t(1) + 999).lat === 1 && r.positionAt(tr, t(2)).lat === 2 &&
        r.positionAt(tr, t(9)).lat === 3 && r.positionAt([], t(1)) === null,
    "positionAt: the last position at or before t, null before the first");
    const all = r.tracks({ positions: [P("B", "2026-11-23T18:00:00.000Z", 7)], missing: ["C"] },
        { B: [P("B", "2026-11-23T18:00:05.000Z", 8)], A: [P("A", "2026-11-23T18:00:01.000Z")] });
    check(JSON.stringify([...all.keys()]) === '["A","B","C"]' && all.get("B").length === 2 &&
        all.get("C").length === 0, "tracks: snapshot and histories, missing units empty, by id");

    const MIN = 60000, base = Date.parse("2026-11-23T18:00:00.000Z");
    const at = (m, lat) => P("A", new Date(base + m * MIN).toISOString(), lat);
    let pts = r.track([at(0, 0), at(10, 1)]);
    pts = r.extendTrail(pts, at(20, 2));
    check(pts.length === 3, "extendTrail: a newer position appended");
    check(r.extendTrail(pts, at(15, 9)) === pts && r.extendTrail(pts, at(20, 9)) === pts,
        "extendTrail: an older or same-time position is not");
    pts = r.extendTrail(pts, at(35, 3));
    check(JSON.stringify(pts.map((x) => x.p.lat)) === "[1,2,3]", "extendTrail: older than 30 min dropped");

    const c = new r.Clock(1000, 61000, 10);
    check(c.time(0) === 1000 && !c.playing, "clock: paused at `from`");
    c.play(100);
    check(c.time(100) === 1000 && c.time(600) === 6000, "clock: x10");
    c.setSpeed(60, 600);
    check(c.time(700) === 12000, "clock: the speed changes from now on");
    c.pause(800);
    check(c.time(5000) === 18000 && !c.playing, "clock: paused, time stands");
    c.seek(50000, 5000);
    c.play(5000);
    check(c.time(5100) === 56000 && c.time(9999) === 61000 && c.ended(9999),
        "clock: seek, then runs to `to` and stops there");
    c.pause(9999);
    c.play(10000);
    check(c.time(10000) === 1000, "clock: play at the end starts over");
    c.seek(-5, 0);
    check(c.at === 1000, "clock: seek kept within the interval");
    let threw = false;
    try { new r.Clock(5, 5); } catch (_) { threw = true; }
    check(threw, "clock: an empty interval is refused");

    const ms = Date.parse("2026-11-23T18:20:01.000Z");
    check(r.fromLocalInput(r.localInput(ms)) === ms, "datetime-local: there and back");
    check(Number.isNaN(r.fromLocalInput("")) && Number.isNaN(r.fromLocalInput("2026-11-23")),
        "datetime-local: empty or partial is no time");
}

historyModule().then(replayModule).then(report, (e) => {
    check(false, e.stack || String(e));
    report();
});
