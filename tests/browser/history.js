// history.js - the demo console's trail and replay (web/src/trail.js, replay_ui.js) in
// headless Debian chromium, driven by playwright-core, against the real gpsrelayd serving
// it, with archive_postgres on a throwaway PostgreSQL 15 (tests/js/pg.js) whose positions
// table the test fills itself with known rows (config/archive.sql; the live positions the
// daemon's own archive writer adds are allowed for where they can show):
//   - clicking a unit's marker draws its last 30 minutes as a line (the rows of the window,
//     none older, then its live position), extended by the live positions that follow;
//     another unit's click replaces it, the close button clears it; the token goes as a
//     Bearer header;
//   - 503 with Retry-After is waited out and tried again; an archive that stays down gives
//     up after a few tries with a short message (503s made by the test, then PostgreSQL
//     stopped and started again);
//   - replaying one unit at x60: the slider follows replay time, the marker shows, in every
//     frame, the unit's last position at or before replay time (the snapshot's before its
//     first fix), replay time runs 60 times real time, a live position meanwhile does not
//     move it, and ending the replay puts it back at its live position;
//   - replaying the whole agency: every unit placed per the snapshot at `from` (a unit
//     silent for longer than stale_after hidden until it reports), no other agency's unit,
//     at most two history requests at once; at the end markers back to live, a unit's
//     first live position that came meanwhile given a marker, replay-only ones gone;
//   - a daemon without an archive: no replay control, no trail, no page errors.
//
// usage: node history.js GPSRELAYD GPSRELAYCTL WEB_DIST OUT_DIR
"use strict";

const { execFileSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");
const { chromium } = require("playwright-core");
const { Daemon, rmc, check, report } = require("../js/daemon");
const { Pg } = require("../js/pg");

const [binary, ctlBinary, webDist, outDir] = process.argv.slice(2);
const CHROMIUM = process.env.GR_CHROMIUM || "/usr/bin/chromium";
const WAIT_MS = 20000;  // bound on every wait for the page (a cold chromium start included)
const MIN = 60000;
const STALE_MS = 120000; // stale_after: how far back a snapshot looks
const SECRET = "0123456789abcdef0123456789abcdef-history-test";
const MAPPING = "device_id,agency_id,label,source_addr\nAMB-1,agency-1,Medic 1,\n" +
    "AMB-2,agency-1,Medic 2,\nAMB-3,agency-1,Medic 3,\nAMB-4,agency-1,Medic 4,\n" +
    "E-9,agency-2,Engine 9,\n";
const AGENCY1 = ["AMB-1", "AMB-2", "AMB-3", "AMB-4"];

function fail(why) {
    check(false, why);
}

function launch() {
    // Root in CI: no sandbox. No network but loopback: nothing in the background.
    return chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox",
        "--disable-dev-shm-usage", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"] });
}

// ---- the archive's rows -------------------------------------------------------------------

const now = Math.floor(Date.now() / 1000) * 1000;
const R1 = { from: now - 60 * MIN, to: now - 50 * MIN };   // AMB-2 alone
const R2 = { from: now - 120 * MIN, to: now - 110 * MIN }; // the whole agency
let nextSeq = 1;
const rows = [];
function row(device, t, lat, lon, course) {
    const r = { device, t, lat, lon, course, seq: nextSeq++ };
    rows.push(r);
    return r;
}

// AMB-1's trail: one row older than 30 minutes, five inside.
row("AMB-1", now - 40 * MIN, 40.6, -74.1, 0);
const trail1 = [25, 20, 15, 10, 5].map((m, i) =>
    row("AMB-1", now - m * MIN, 40.701 + i * 0.002, -74.001 - i * 0.003, 45));
// AMB-2 over R1: one row 30 s before (the snapshot's), one a minute, one after `to`.
row("AMB-2", R1.from - 30000, 40.75, -73.95, 90);
for (let k = 1; k <= 9; k++) row("AMB-2", R1.from + k * MIN, 40.75 + k * 0.001, -73.95 + k * 0.002);
row("AMB-2", R1.to + MIN, 41.5, -73.5);
// The agency over R2: AMB-4 last reported before stale_after (missing from the snapshot)
// and reports again 2 minutes in; E-9 is another agency's.
row("AMB-1", R2.from - 10000, 40.80, -74.02, 180);
row("AMB-1", R2.from + MIN, 40.81, -74.02);
row("AMB-1", R2.from + 3 * MIN, 40.82, -74.03);
row("AMB-2", R2.from - 60000, 40.85, -73.98);
row("AMB-2", R2.from + 5 * MIN, 40.86, -73.97);
row("AMB-3", R2.from - 100000, 40.70, -73.90, 270);
row("AMB-4", R2.from - 300000, 40.60, -73.80);
row("AMB-4", R2.from + 2 * MIN, 40.61, -73.81);
row("E-9", R2.from - 5000, 40.5, -74.2);
row("E-9", R2.from + MIN, 40.51, -74.21);

function archiveRows(pg) {
    return pg.copy("positions", ["device", "time", "lat", "lon", "course", "src", "rx_time",
        "epoch", "seq"], rows.map((r) => [r.device, new Date(r.t), r.lat, r.lon, r.course, "nmea",
        new Date(r.t), "00000000000000aa", r.seq]));
}

// What a replay of [from, to] must show for device at t: the last row at or before t among
// the snapshot's (the last at or before `from`, if within stale_after) and those of the
// interval; null before any.
function expectedAt(device, from, to, t) {
    const mine = rows.filter((r) => r.device === device).sort((a, b) => a.t - b.t);
    const before = mine.filter((r) => r.t <= from).pop();
    const track = [...(before && before.t > from - STALE_MS ? [before] : []),
        ...mine.filter((r) => r.t > from && r.t <= to)];
    return track.filter((r) => r.t <= t).pop() || null;
}

const near = (a, b) => Math.abs(a - b) < 1e-7;
const same = (m, r) => m && r && near(m.lat, r.lat) && near(m.lon, r.lon);

// ---- the page -----------------------------------------------------------------------------

// A local datetime-local value for ms, in the page's time zone.
function localValue(page, ms) {
    return page.evaluate((t) => {
        const d = new Date(t), two = (n) => String(n).padStart(2, "0");
        return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}T` +
            `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
    }, ms);
}

// Records, every animation frame while a replay is loaded, what it shows: replay time, the
// slider, and each unit's marker. Until stopSampling().
function startSampling(page, devices) {
    return page.evaluate((ds) => {
        window.samples = [];
        window.sampling = true;
        window.sample = () => {
            const r = window.gpsrelay.replay;
            if (!r || !r.loaded) return;
            const markers = {};
            for (const d of ds) markers[d] = window.gpsrelay.marker(d);
            window.samples.push({ real: performance.now(), t: r.shownAt, slider: r.slider,
                playing: r.playing, markers });
        };
        const loop = () => {
            window.sample();
            if (window.sampling) requestAnimationFrame(loop);
        };
        requestAnimationFrame(loop);
    }, devices);
}

// The samples, with a last one of what is shown now.
function stopSampling(page) {
    return page.evaluate(() => {
        window.sampling = false;
        window.sample();
        return window.samples;
    });
}

function waitReplayEnd(page, to) {
    return page.waitForFunction((end) => {
        const r = window.gpsrelay.replay;
        return r && r.loaded && !r.playing && r.shownAt === end;
    }, to, { timeout: WAIT_MS + 15000 });
}

// Every sample shows, for each device, exactly what the rows say for its replay time.
function checkSamples(samples, devices, from, to, what) {
    check(samples.length >= 20, `${what}: ${samples.length} frames sampled`);
    let bad = null, sliderBad = null;
    for (const s of samples) {
        if (sliderBad === null && Math.abs(s.slider - (s.t - from)) > 1) sliderBad = s;
        for (const d of devices) {
            const want = expectedAt(d, from, to, s.t), got = s.markers[d];
            const ok = want ? same(got, want) && got.visible && got.replay : !got || !got.visible;
            if (!ok && bad === null) bad = { t: new Date(s.t).toISOString(), d, want, got };
        }
    }
    check(bad === null, `${what}: every frame shows each unit's last position at or before ` +
        `replay time${bad ? ` (first wrong: ${JSON.stringify(bad)})` : ""}`);
    check(sliderBad === null, `${what}: the slider follows replay time` +
        (sliderBad ? ` (${sliderBad.slider} at ${sliderBad.t - from})` : ""));
    const ts = samples.map((s) => s.t);
    check(ts.every((t, i) => i === 0 || t >= ts[i - 1]) && ts[0] === from && ts.at(-1) === to,
        `${what}: replay time runs from \`from\` to \`to\` without going back`);
}

// Replay time against real time while playing, and when each row first showed.
function checkPace(samples, device, from, to, speed, what) {
    const run = samples.filter((s) => s.playing && s.t > from && s.t < to);
    const a = run[0], b = run.at(-1);
    const pace = a && b && b.real > a.real ? (b.t - a.t) / (b.real - a.real) : NaN;
    check(pace > speed * 0.9 && pace < speed * 1.05,
        `${what}: replay time runs at x${speed} (measured x${pace.toFixed(1)})`);
    // Each row of the interval shows first at the frame where replay time passes its time.
    const mine = rows.filter((r) => r.device === device && r.t > from && r.t <= to);
    const late = [];
    for (const r of mine) {
        const i = samples.findIndex((s) => same(s.markers[device], r));
        if (i < 0 || samples[i].t < r.t || (i > 0 && samples[i - 1].t >= r.t)) late.push(r.t - from);
    }
    check(mine.length > 0 && late.length === 0, `${what}: each of ${mine.length} fixes shows ` +
        `as replay time reaches it${late.length ? ` (not: ${late.join(", ")} ms in)` : ""}`);
}

// The trail drawn: the window's rows first, the unit's live position last, and in between
// only live positions the archive may already hold.
function checkTrail(got, device, live, lastLive, what) {
    const ll = got ? got.latlngs : [];
    const want = rows.filter((r) => r.device === device && r.t >= now - 30 * MIN);
    const head = ll.slice(0, want.length), tail = ll.slice(want.length);
    const ok = got && got.device === device && got.status === "shown" && got.onMap &&
        head.length === want.length && head.every(([lat, lon], i) => same({ lat, lon }, want[i])) &&
        tail.length >= 1 && same({ lat: tail.at(-1)[0], lon: tail.at(-1)[1] }, lastLive) &&
        tail.slice(0, -1).every(([lat, lon]) => live.some((p) => same({ lat, lon }, p)));
    check(ok, `${what}: ${JSON.stringify(ll)}`);
}

function markerOf(page, device) {
    return page.evaluate((d) => window.gpsrelay.marker(d), device);
}

function livePos(page, device) {
    return page.evaluate((d) => {
        const u = window.gpsrelay.units.get(d);
        return u && u.pos ? { ...u.pos } : null;
    }, device);
}

async function waitLive(page, device, lat) {
    await page.waitForFunction(([d, want]) => {
        const u = window.gpsrelay.units.get(d);
        return u && u.pos && Math.abs(u.pos.lat - want) < 1e-5;
    }, [device, lat], { timeout: WAIT_MS });
    return livePos(page, device);
}

// ---- with an archive ----------------------------------------------------------------------

async function withArchive(pg) {
    await pg.applyArchive();
    await archiveRows(pg);
    const daemon = await Daemon.create(binary, MAPPING,
        `auth jwt\nauth_secret_file secret\nstatic_dir ${path.resolve(webDist)}\n` +
        `stale_after ${STALE_MS / 1000}\nmax_speed 100000\n` + // the test moves units far, fast
        `archive_postgres "${pg.conninfo}"\n`,
        { secret: SECRET });
    const token = execFileSync(ctlBinary, ["token", "--secret-file",
        path.join(daemon.dir, "secret"), "--agency", "agency-1", "--ttl", "600",
        "--sub", "history-test"], { encoding: "utf8" }).trim();
    let browser = null;
    try {
        await daemon.start();
        browser = await launch();
        // Far from UTC: the interval inputs are local time.
        const context = await browser.newContext({ viewport: { width: 1280, height: 760 },
            timezoneId: "America/New_York" });
        const page = await context.newPage();
        const consoleErrors = [];
        page.on("pageerror", (e) => fail(`page error: ${e.message}`));
        page.on("console", (m) => {
            if (m.type() === "error") consoleErrors.push({ text: m.text(), url: m.location().url });
        });
        // The archive requests: their URLs, Authorization, and how many run at once.
        const api = [];
        let inFlight = 0, maxInFlight = 0;
        page.on("request", (r) => {
            if (!r.url().includes("/api/")) return;
            api.push({ url: r.url(), auth: r.headers().authorization || "" });
            if (r.url().includes("/api/history")) maxInFlight = Math.max(maxInFlight, ++inFlight);
        });
        const done = (r) => { if (r.url().includes("/api/history")) inFlight--; };
        page.on("requestfinished", done);
        page.on("requestfailed", done);

        // Live positions first: AMB-1 and AMB-2 get markers to click.
        await daemon.send(rmc("AMB-1", 40.72, -74.02));
        await daemon.send(rmc("AMB-2", 40.76, -73.96));
        await page.goto(`http://127.0.0.1:${daemon.ports.ws}/?agency=agency-1&token=${token}`);
        await page.waitForFunction(() => window.gpsrelay && window.gpsrelay.archive !== undefined &&
            document.querySelector('.gr-marker[data-device="AMB-1"]') &&
            document.querySelector('.gr-marker[data-device="AMB-2"]'), null, { timeout: WAIT_MS });
        check(await page.evaluate(() => window.gpsrelay.archive) === true,
            "the archive is found (GET /api/snapshot answered)");
        check(await page.isVisible("#replay-open"), "the replay control is offered");
        const live1 = await livePos(page, "AMB-1");

        // ---- the trail
        await page.click('.gr-marker[data-device="AMB-1"]');
        await page.waitForFunction(() => window.gpsrelay.trail?.status === "shown", null,
            { timeout: WAIT_MS });
        checkTrail(await page.evaluate(() => window.gpsrelay.trail), "AMB-1", [], live1,
            "AMB-1's trail: the 5 fixes of the last 30 minutes, then its live position");
        check(await page.$$eval("path.gr-trail", (ps) => ps.length === 1 &&
            ps[0].getAttribute("d").length > 10), "the trail is drawn (one SVG path)");
        const h = api.find((a) => a.url.includes("/api/history"));
        const hq = h && new URL(h.url).searchParams;
        check(h && h.auth === `Bearer ${token}` && !hq.has("token") && hq.get("device") === "AMB-1" &&
            Math.abs(Date.parse(hq.get("to")) - Date.parse(hq.get("from")) - 30 * MIN) < 1000,
        "the trail asks for AMB-1's 30 minutes, the token as a Bearer header");
        check(await page.isVisible("#trail") &&
            /AMB-1: 6 fixes/.test(await page.textContent("#trail-text")),
        `the header says whose trail (${await page.textContent("#trail-text")})`);

        // A live position extends it.
        await daemon.send(rmc("AMB-1", 40.73, -74.03));
        const live1b = await waitLive(page, "AMB-1", 40.73);
        await page.waitForFunction(() => window.gpsrelay.trail.latlngs.length === 7, null,
            { timeout: WAIT_MS }).catch(() => {});
        checkTrail(await page.evaluate(() => window.gpsrelay.trail), "AMB-1", [live1], live1b,
            "a live position of AMB-1 extends its trail");

        // Another unit's click replaces it; the close button clears it.
        const live2 = await livePos(page, "AMB-2");
        await page.click('.gr-marker[data-device="AMB-2"]');
        await page.waitForFunction(() => window.gpsrelay.trail?.device === "AMB-2" &&
            window.gpsrelay.trail.status === "shown", null, { timeout: WAIT_MS });
        checkTrail(await page.evaluate(() => window.gpsrelay.trail), "AMB-2", [], live2,
            "AMB-2's click replaces the trail: no fix of its in 30 minutes but its live one");
        await page.click("#trail-close");
        const closed = await page.evaluate(() => window.gpsrelay.trail);
        check(closed.device === null && closed.latlngs.length === 0 && !closed.onMap &&
            await page.$$eval("path.gr-trail", (ps) => ps.length === 0) &&
            !(await page.isVisible("#trail")), "the close button clears the trail");

        // ---- 503 + Retry-After: waited out, then given up
        const tries = [];
        let refuse = 2;
        await page.route("**/api/history?**", (route) => {
            tries.push(Date.now());
            if (refuse-- > 0) {
                route.fulfill({ status: 503, headers: { "Retry-After": "1" },
                    contentType: "text/plain", body: "archive busy\n" });
            } else {
                route.continue();
            }
        });
        await page.click('.gr-marker[data-device="AMB-1"]');
        await page.waitForFunction(() => /retrying in 1 s/.test(
            document.getElementById("trail-text").textContent), null, { timeout: WAIT_MS });
        await page.waitForFunction(() => window.gpsrelay.trail?.status === "shown", null,
            { timeout: WAIT_MS });
        const gaps = tries.slice(1).map((t, i) => t - tries[i]);
        check(tries.length === 3 && gaps.every((g) => g >= 950),
            `two 503s with Retry-After: 1 waited out, the third try answered (gaps ${gaps} ms)`);
        checkTrail(await page.evaluate(() => window.gpsrelay.trail), "AMB-1", [live1], live1b,
            "the trail after the retries");
        tries.length = 0;
        refuse = Infinity;
        const started = Date.now();
        await page.click('.gr-marker[data-device="AMB-2"]');
        await page.waitForFunction(() => window.gpsrelay.trail?.status === "failed", null,
            { timeout: WAIT_MS });
        const said = await page.textContent("#trail-text");
        check(tries.length === 4 && /unavailable/.test(said) && Date.now() - started < 10000,
            `an archive that stays down: ${tries.length} tries, then "${said}"`);
        await page.unroute("**/api/history?**");
        await page.click("#trail-close");

        // ---- replay of one unit (AMB-2, selected by the last click) at x60
        await page.click("#replay-open");
        check(await page.isVisible("#replay"), "the replay panel opens");
        // Parsed in the page: the values are in its time zone.
        const [defFrom, defTo] = await page.evaluate(() => ["replay-from", "replay-to"].map((id) =>
            Date.parse(document.getElementById(id).value)));
        check(defTo - defFrom === 60 * MIN && Math.abs(Date.now() - defTo) < 60000,
            "the interval is the last hour by default");
        check(await page.inputValue("#replay-scope") === "unit" &&
            /AMB-2/.test(await page.$eval('#replay-scope option[value="unit"]', (o) => o.textContent)),
        "the scope is the selected unit, AMB-2");
        check(JSON.stringify(await page.$$eval("#replay-speed option", (os) => os.map((o) => o.value))) ===
            JSON.stringify(["1", "2", "5", "10", "30", "60"]), "speeds x1 to x60");
        await page.fill("#replay-from", await localValue(page, R1.from));
        await page.fill("#replay-to", await localValue(page, R1.to));
        await page.selectOption("#replay-speed", "60");
        await startSampling(page, ["AMB-1", "AMB-2"]);
        await page.click("#replay-play");
        // A live position of AMB-2 during the replay: the row takes it, the marker does not.
        await page.waitForFunction((t) => window.gpsrelay.replay?.shownAt >= t,
            R1.from + 3 * MIN, { timeout: WAIT_MS });
        await daemon.send(rmc("AMB-2", 40.9, -73.9));
        const live2b = await waitLive(page, "AMB-2", 40.9);
        await waitReplayEnd(page, R1.to);
        let samples = await stopSampling(page);
        let st = await page.evaluate(() => window.gpsrelay.replay);
        check(st.scope === "unit" && JSON.stringify(st.devices) === '["AMB-2"]' && st.speed === 60,
            `replay of AMB-2 alone at x60 (${JSON.stringify(st)})`);
        checkSamples(samples, ["AMB-2"], R1.from, R1.to, "replay of AMB-2");
        checkPace(samples, "AMB-2", R1.from, R1.to, 60, "replay of AMB-2");
        check(same(samples[0].markers["AMB-2"], expectedAt("AMB-2", R1.from, R1.to, R1.from)),
            "at `from` AMB-2 is where the snapshot has it");
        check(samples.every((s) => same(s.markers["AMB-1"], live1b) && !s.markers["AMB-1"].replay),
            "AMB-1, not replayed, stays live");
        check(await page.$$eval("path.gr-replay-path", (ps) => ps.length === 1),
            "the replayed track is drawn");
        const replayedMarker = await markerOf(page, "AMB-2");
        check(same(replayedMarker, expectedAt("AMB-2", R1.from, R1.to, R1.to)),
            "at the end AMB-2 stays at its last replayed position, not the live one");
        await page.click("#replay-end");
        let m = await markerOf(page, "AMB-2");
        check(same(m, live2b) && m.visible && !m.replay &&
            !(await page.evaluate(() => document.body.classList.contains("replaying"))),
        "ending the replay puts AMB-2 back at its live position");

        // ---- replay of the whole agency at x60
        await page.selectOption("#replay-scope", "agency");
        await page.fill("#replay-from", await localValue(page, R2.from));
        await page.fill("#replay-to", await localValue(page, R2.to));
        const historiesBefore = api.filter((a) => a.url.includes("/api/history")).length;
        maxInFlight = 0;
        await startSampling(page, [...AGENCY1, "E-9"]);
        await page.click("#replay-play");
        // AMB-3's first live position comes during the replay: a row now, a marker after.
        await page.waitForFunction((t) => window.gpsrelay.replay?.shownAt >= t,
            R2.from + MIN, { timeout: WAIT_MS });
        await daemon.send(rmc("AMB-3", 40.95, -73.85));
        const live3 = await waitLive(page, "AMB-3", 40.95);
        await waitReplayEnd(page, R2.to);
        samples = await stopSampling(page);
        st = await page.evaluate(() => window.gpsrelay.replay);
        check(st.scope === "agency" && JSON.stringify(st.devices) === JSON.stringify(AGENCY1),
            `the agency's replay has its four units, E-9 not (${st.devices})`);
        const asked = api.filter((a) => a.url.includes("/api/history")).slice(historiesBefore)
            .map((a) => new URL(a.url).searchParams.get("device")).sort();
        check(JSON.stringify(asked) === JSON.stringify(AGENCY1) && maxInFlight <= 2,
            `one history request per unit (${asked}), at most 2 at once (${maxInFlight})`);
        const snap = api.filter((a) => a.url.includes("/api/snapshot")).at(-1);
        check(snap && Date.parse(new URL(snap.url).searchParams.get("at")) === R2.from,
            "a snapshot at `from`");
        const first = samples[0];
        check(first.t === R2.from && ["AMB-1", "AMB-2", "AMB-3"].every((d) =>
            same(first.markers[d], expectedAt(d, R2.from, R2.to, R2.from)) && first.markers[d].visible) &&
            (!first.markers["AMB-4"] || !first.markers["AMB-4"].visible) && !first.markers["E-9"],
        `at \`from\` the units are where the snapshot has them, AMB-4 hidden ` +
            `(${JSON.stringify(first.markers)})`);
        checkSamples(samples, AGENCY1, R2.from, R2.to, "replay of agency-1");
        checkPace(samples, "AMB-4", R2.from, R2.to, 60, "replay of agency-1");
        await page.screenshot({ path: path.join(outDir, "browser_history.png") });
        await page.click("#replay-end");
        const after = {};
        for (const d of AGENCY1) after[d] = await markerOf(page, d);
        check(AGENCY1.slice(0, 3).every((d, i) => same(after[d], [live1b, live2b, live3][i]) &&
            after[d].visible && !after[d].replay) && !after["AMB-4"],
        "after the replay: markers at their live positions (AMB-3's first, from during " +
            `the replay), AMB-4's (no live position) gone (${JSON.stringify(after)})`);

        // PostgreSQL stopped: the daemon's own 503s are waited out, then given up with a
        // short message; once it is back, the trail is drawn again.
        await pg.stop();
        let before = api.length;
        await page.click('#units li[data-device="AMB-1"]');
        await page.waitForFunction(() => window.gpsrelay.trail?.status === "failed", null,
            { timeout: WAIT_MS });
        const down = api.slice(before).filter((a) => a.url.includes("/api/history")).length;
        const saidDown = await page.textContent("#trail-text");
        check(down === 4 && /unavailable/.test(saidDown),
            `archive down: ${down} tries, then "${saidDown}"`);
        await pg.start();
        before = api.length;
        await page.click('#units li[data-device="AMB-1"]');
        await page.waitForFunction(() => window.gpsrelay.trail?.status === "shown", null,
            { timeout: WAIT_MS });
        checkTrail(await page.evaluate(() => window.gpsrelay.trail), "AMB-1", [live1], live1b,
            `archive back: the trail again (${api.length - before} tries)`);

        // No console errors but the 503s this test made.
        const others = consoleErrors.filter((e) => !(e.url.includes("/api/history") &&
            /status of 503/.test(e.text)));
        check(others.length === 0, `no console errors (${JSON.stringify(others)})`);
    } finally {
        if (browser) await browser.close();
        if (daemon.child && daemon.child.exitCode === null)
            check(await daemon.stop() === 0, "gpsrelayd (archive) exit status 0");
        daemon.cleanup();
    }
}

// ---- without an archive -------------------------------------------------------------------

async function withoutArchive() {
    const daemon = await Daemon.create(binary, MAPPING,
        `auth none\nstatic_dir ${path.resolve(webDist)}\n`);
    let browser = null;
    try {
        await daemon.start();
        await daemon.send(rmc("AMB-1", 40.72, -74.02));
        browser = await launch();
        const page = await browser.newPage();
        const consoleErrors = [];
        page.on("pageerror", (e) => fail(`page error (no archive): ${e.message}`));
        page.on("console", (m) => {
            if (m.type() === "error" || m.type() === "warning")
                consoleErrors.push({ text: m.text(), url: m.location().url });
        });
        await page.goto(`http://127.0.0.1:${daemon.ports.ws}/?agency=agency-1`);
        await page.waitForFunction(() => window.gpsrelay && window.gpsrelay.archive !== undefined &&
            document.querySelector('.gr-marker[data-device="AMB-1"]'), null, { timeout: WAIT_MS });
        check(await page.evaluate(() => window.gpsrelay.archive) === false,
            "no archive: the daemon answers 404");
        check(!(await page.isVisible("#replay-open")) && !(await page.isVisible("#replay")),
            "no archive: no replay control");
        await page.click('.gr-marker[data-device="AMB-1"]');
        check(await page.evaluate(() => window.gpsrelay.trail) === null &&
            !(await page.isVisible("#trail")) && await page.$$eval("path.gr-trail", (p) => p.length === 0),
        "no archive: a click draws no trail");
        // The one 404 the probe got is Chromium's own network line; nothing else.
        const others = consoleErrors.filter((e) => !(e.url.includes("/api/snapshot") &&
            /status of 404/.test(e.text)));
        check(others.length === 0 && consoleErrors.length <= 1,
            `no archive: no console errors but the probe's 404 (${JSON.stringify(consoleErrors)})`);
    } finally {
        if (browser) await browser.close();
        if (daemon.child && daemon.child.exitCode === null)
            check(await daemon.stop() === 0, "gpsrelayd (no archive) exit status 0");
        daemon.cleanup();
    }
}

async function main() {
    if (!fs.existsSync(path.join(webDist, "index.html")))
        throw new Error(`${webDist}/index.html is missing: build the console first ` +
            "(npm ci --prefix web && npm run --prefix web build; tools/check does)");
    fs.mkdirSync(outDir, { recursive: true });
    const pg = await Pg.create();
    try {
        await withArchive(pg);
    } finally {
        await pg.destroy();
    }
    await withoutArchive();
}

main().then(report, (e) => {
    fail(e.stack || String(e));
    report();
});
