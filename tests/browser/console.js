// console.js - the demo dispatch console (web/) in headless Debian chromium, driven by
// playwright-core, against the real gpsrelayd serving it from static_dir and the real
// simulator (tools/gpsrelay-sim) feeding it:
//   - every unit of the agency gets a list row and a marker, and no other agency's unit;
//   - a row and a marker show the unit's label (the device id on hover); a unit of the join
//     reply's `units` that never reported is listed as "no fix yet", without a marker;
//   - the units move (rows and markers change);
//   - a unit that stops reporting is greyed as stale, with the time since its last fix;
//   - a mapping change (SIGHUP) removes a unit's row and marker and adds a new unit's row,
//     and a label change renames a unit's row and marker;
//   - a dropped connection reconnects and resumes with `since` (recovered: true);
//   - a daemon restart on the same port is ridden out: reconnect, rejoin with the old
//     epoch, resync (recovered: false), positions flow again;
//   - the login form asks for an agency when the URL names none;
//   - with auth jwt, a token from gpsrelayctl in the URL admits the page, no token or a
//     token for another agency does not, and the indicator says so;
// and leaves a screenshot in the output folder for people.
//
// usage: node console.js GPSRELAYD GPSRELAY_SIM GPSRELAYCTL WEB_DIST OUT_DIR
"use strict";

const { spawn, execFileSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");
const { chromium } = require("playwright-core");
const { Daemon, rmc, check, report } = require("../js/daemon");

const [binary, simBinary, ctlBinary, webDist, outDir] = process.argv.slice(2);
const CHROMIUM = process.env.GR_CHROMIUM || "/usr/bin/chromium";
const UNITS = 12;        // simulated units, over two agencies
const STALE_AFTER = 2;   // seconds: short, so the test sees a unit go stale
const WAIT_MS = 20000;   // bound on every wait for the page (a cold chromium start included)
const GHOST = "GHOST-1"; // a unit of agency-1 the test reports for once, then never again
const IDLE = "IDLE-1";   // a unit of agency-1 that never reports

function fail(why) {
    check(false, why);
}

// The rows the page shows: device -> {text of its fields, classes}.
function rows(page) {
    return page.$$eval("#units li[data-device]", (lis) => Object.fromEntries(lis.map((li) => [
        li.dataset.device,
        { where: li.querySelector(".where").textContent, age: li.querySelector(".age").textContent,
          stale: li.classList.contains("stale"), color: getComputedStyle(li).color,
          name: li.querySelector(".name").textContent, title: li.querySelector(".name").title },
    ])));
}

// Markers on the map: device -> their CSS transform (Leaflet positions them with it).
function markers(page) {
    return page.$$eval(".gr-marker[data-device]", (els) => Object.fromEntries(els.map((el) => [
        el.dataset.device, { transform: el.style.transform, stale: el.classList.contains("stale"),
            label: el.querySelector(".gr-label").textContent, title: el.title },
    ])));
}

// Joins the page made so far (window.gpsrelay.joins): epoch, recovered, since, ...
function joins(page) {
    return page.evaluate(() => window.gpsrelay.joins.map((j) => ({ ...j })));
}

async function waitJoins(page, n) {
    await page.waitForFunction((k) => window.gpsrelay && window.gpsrelay.joins.length >= k, n,
        { timeout: WAIT_MS });
    return joins(page);
}

async function main() {
    if (!fs.existsSync(path.join(webDist, "index.html")))
        throw new Error(`${webDist}/index.html is missing: build the console first ` +
            "(npm ci --prefix web && npm run --prefix web build; tools/check does)");
    fs.mkdirSync(outDir, { recursive: true });

    // The simulator's own mapping (agency-1, agency-2), plus the ghost unit in agency-1.
    const mapFile = path.join(fs.mkdtempSync(path.join(require("node:os").tmpdir(), "gr-map-")),
        "devices.csv");
    execFileSync(simBinary, ["--units", String(UNITS), "--agencies", "2", "--mapping-out", mapFile,
        "--mapping-only", "--quiet"]);
    const csv = fs.readFileSync(mapFile, "utf8");
    fs.rmSync(path.dirname(mapFile), { recursive: true, force: true });
    const mapped = csv.trim().split("\n").slice(1).map((l) => l.split(","));
    const agency1 = mapped.filter((f) => f[1] === "agency-1").map((f) => f[0]);
    const agency2 = mapped.filter((f) => f[1] === "agency-2").map((f) => f[0]);
    check(agency1.length === UNITS / 2 && agency2.length === UNITS / 2,
        `sim mapping splits ${UNITS} units over two agencies (got ${agency1.length}+${agency2.length})`);

    const base = `${csv.trimEnd()}\n${GHOST},agency-1,Ghost,\n${IDLE},agency-1,Idle \u00e9 <b>1</b>,\n`;
    const daemon = await Daemon.create(binary, base,
        `auth none\nstatic_dir ${path.resolve(webDist)}\nstale_after ${STALE_AFTER}\n` +
        "ingest_rate_limit 1000\n"); // the sim sends from one address: no drops by rate
    let sim = null, browser = null;
    try {
        await daemon.start();
        sim = spawn(simBinary, ["--target", `127.0.0.1:${daemon.ports.udp}`, "--proto", "udp",
            "--format", "nmea", "--units", String(UNITS), "--agencies", "2", "--rate", "2",
            "--seed", "7", "--quiet"], { stdio: ["ignore", "ignore", "inherit"] });

        // Root in CI: no sandbox. No network but loopback: nothing in the background.
        browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox",
            "--disable-dev-shm-usage", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"] });
        const page = await browser.newPage({ viewport: { width: 1280, height: 760 } });
        page.on("pageerror", (e) => fail(`page error: ${e.message}`));
        // The join payloads the page sends, to see `since` on the wire.
        const joinsSent = [];
        page.on("websocket", (ws) => ws.on("framesent", ({ payload }) => {
            try {
                const [, , topic, event, body] = JSON.parse(payload);
                if (event === "phx_join") joinsSent.push({ topic, body });
            } catch (_) { /* not ours to judge here */ }
        }));

        await page.goto(`http://127.0.0.1:${daemon.ports.ws}/?agency=agency-1`);
        const [first] = await waitJoins(page, 1);
        check(first.since === null && joinsSent[0] && joinsSent[0].topic === "agency:agency-1" &&
            !("since" in joinsSent[0].body), "first join: agency-1, no since");

        // The unit that never reported is listed from the join reply's units at once, under
        // its label (as text, not markup), the device id on hover, no fix yet, no marker.
        await page.waitForSelector(`#units li[data-device="${IDLE}"]`, { timeout: WAIT_MS });
        let r = await rows(page), m = await markers(page);
        check(r[IDLE] && r[IDLE].name === "Idle \u00e9 <b>1</b>" && r[IDLE].title === IDLE &&
            r[IDLE].age === "no fix yet" && r[IDLE].where === "" && !m[IDLE],
        `${IDLE}: listed by label, no fix yet, no marker (${JSON.stringify(r[IDLE])})`);
        check(first.units === agency1.length + 2, `join reply: ${first.units} units`);

        // Every agency-1 unit appears, with a marker; no agency-2 unit does.
        await daemon.send(rmc(GHOST, 40.7, -74.0));
        await page.waitForFunction((ids) => ids.every((id) =>
            document.querySelector(`#units li[data-device="${id}"] .where`)?.textContent &&
            document.querySelector(`.gr-marker[data-device="${id}"]`)), [...agency1, GHOST],
        { timeout: WAIT_MS });
        r = await rows(page);
        m = await markers(page);
        check(agency1.every((id) => r[id] && m[id]), "a row and a marker for every agency-1 unit");
        check(agency2.every((id) => !r[id] && !m[id]), "no row or marker for agency-2's units");
        check(Object.keys(r).length === agency1.length + 2, `${agency1.length + 2} rows in all`);
        check(r[GHOST].name === "Ghost" && r[GHOST].title === GHOST && m[GHOST].label === "Ghost" &&
            m[GHOST].title === GHOST, `${GHOST}: row and marker by label, id on hover ` +
            `(${JSON.stringify([r[GHOST].name, r[GHOST].title, m[GHOST].label, m[GHOST].title])})`);

        // They move: positions in the rows and marker transforms change within a few fixes.
        const before = { r, m };
        await page.waitForTimeout(3000); // three seconds of 2 Hz fixes: the thing under test is motion
        r = await rows(page);
        m = await markers(page);
        const movedRows = agency1.filter((id) => r[id].where !== before.r[id].where);
        const movedMarkers = agency1.filter((id) => m[id].transform !== before.m[id].transform);
        check(movedRows.length >= agency1.length / 2,
            `rows move (${movedRows.length} of ${agency1.length})`);
        check(movedMarkers.length >= agency1.length / 2,
            `markers move (${movedMarkers.length} of ${agency1.length})`);
        check(agency1.every((id) => !r[id].stale), "reporting units are not stale");

        // The ghost stops reporting: after stale_after it is greyed, with its time since.
        await page.waitForFunction((id) =>
            document.querySelector(`#units li[data-device="${id}"]`)?.classList.contains("stale"),
        GHOST, { timeout: WAIT_MS });
        r = await rows(page);
        m = await markers(page);
        check(r[GHOST].stale && /^stale · last fix \d+ s ago$/.test(r[GHOST].age),
            `stale row says how long since its last fix ("${r[GHOST].age}")`);
        check(r[GHOST].color !== r[agency1[0]].color, `stale row greyed (${r[GHOST].color})`);
        check(m[GHOST].stale, "stale marker greyed");

        // The mapping changes: one simulated unit leaves agency-1, a new unit joins it, the
        // ghost gets a new label.
        const gone = agency1.pop();
        const remapped = `${base.replace(`${GHOST},agency-1,Ghost,`, `${GHOST},agency-1,Ghost Two,`)}` +
            "NEW-1,agency-1,New,\n";
        const remappedCsv = remapped.split("\n").filter((line) => !line.startsWith(`${gone},`)).join("\n");
        daemon.write("devices.csv", remappedCsv);
        daemon.child.kill("SIGHUP");
        await page.waitForFunction(([g, n]) =>
            !document.querySelector(`#units li[data-device="${g}"]`) &&
            document.querySelector(`#units li[data-device="${n}"]`), [gone, "NEW-1"],
        { timeout: WAIT_MS });
        r = await rows(page);
        m = await markers(page);
        check(!r[gone] && !m[gone], `unit_removed: ${gone}'s row and marker are gone`);
        check(r["NEW-1"] && r["NEW-1"].age === "no fix yet" && r["NEW-1"].name === "New" && !m["NEW-1"],
            "unit_added: NEW-1 listed by label, no fix yet, no marker");
        await page.waitForFunction((g) =>
            document.querySelector(`#units li[data-device="${g}"] .name`).textContent === "Ghost Two",
        GHOST, { timeout: WAIT_MS }).catch(() => {});
        r = await rows(page);
        m = await markers(page);
        check(r[GHOST].name === "Ghost Two" && r[GHOST].title === GHOST && m[GHOST].label === "Ghost Two",
            `label change: ${GHOST}'s row and marker renamed (${r[GHOST].name}, ${m[GHOST].label})`);
        check(r[GHOST].stale && m[GHOST].stale, "the renamed unit stays stale");

        // A dropped connection: the page reconnects and resumes with since, same epoch.
        await page.evaluate(() => window.gpsrelay.socket.conn.close());
        let j = await waitJoins(page, 2);
        check(j[1].recovered === true && j[1].epoch === first.epoch,
            "after a dropped connection: resumed in the same epoch (recovered)");
        const resumeSent = joinsSent[1] && joinsSent[1].body.since;
        check(resumeSent && resumeSent.epoch === first.epoch && resumeSent.seq >= first.seq,
            `rejoin sent since ${JSON.stringify(resumeSent)}`);
        await page.waitForFunction(() => document.getElementById("conn").dataset.state === "live",
            null, { timeout: WAIT_MS });
        check(await page.$eval("#conn", (e) => e.dataset.reconnects) === "1",
            "indicator counts the reconnect");

        // The daemon restarts on the same port: the page rides it out.
        const whereBefore = await rows(page);
        const stopped = await daemon.stop();
        check(stopped === 0, `gpsrelayd exit status 0 (got ${stopped})`);
        await page.waitForFunction(() => document.getElementById("conn").dataset.state !== "live",
            null, { timeout: WAIT_MS });
        check(await page.$eval("#conn", (e) => e.dataset.state) === "reconnecting",
            "indicator shows the lost connection");
        await daemon.start();
        j = await waitJoins(page, 3);
        check(j[2].epoch !== first.epoch && j[2].recovered === false,
            "after the restart: a new epoch, resynced (recovered false)");
        const restartSent = joinsSent[joinsSent.length - 1].body.since;
        check(restartSent && restartSent.epoch === first.epoch,
            "rejoin after the restart sent since with the old epoch");
        await page.waitForFunction(([ids, old]) => ids.every((id) =>
            document.querySelector(`#units li[data-device="${id}"] .where`).textContent !== old[id]),
        [agency1, Object.fromEntries(agency1.map((id) => [id, whereBefore[id].where]))],
        { timeout: WAIT_MS }).catch(() => {});
        r = await rows(page);
        const movedAfter = agency1.filter((id) => r[id].where !== whereBefore[id].where);
        check(movedAfter.length >= agency1.length / 2,
            `positions flow after the restart (${movedAfter.length} of ${agency1.length} moved)`);
        check(await page.$eval("#conn", (e) => e.dataset.state + "/" + e.dataset.reconnects) ===
            "live/2", "indicator: live again, two reconnects");

        const shot = path.join(outDir, "browser_console.png");
        await page.screenshot({ path: shot });
        console.log(`screenshot: ${shot}`);

        // No agency in the URL: the form asks; agency-2's units show, agency-1's do not.
        const asked = await browser.newPage();
        asked.on("pageerror", (e) => fail(`page error: ${e.message}`));
        await asked.goto(`http://127.0.0.1:${daemon.ports.ws}/`);
        check(await asked.isVisible("#login"), "login form shown without ?agency=");
        await asked.fill("#login-agency", "agency-2");
        await asked.click("#login button[type=submit]");
        await asked.waitForFunction((ids) => ids.every((id) =>
            document.querySelector(`#units li[data-device="${id}"] .where`)?.textContent),
        agency2, { timeout: WAIT_MS });
        r = await rows(asked);
        check(Object.keys(r).sort().join() === [...agency2].sort().join(),
            "agency-2 from the form: its units and no other");
        check(new URL(asked.url()).searchParams.get("agency") === "agency-2",
            "the agency goes into the address bar");
        await asked.close();
    } finally {
        if (browser) await browser.close();
        if (sim) {
            sim.kill("SIGINT");
            await new Promise((resolve) => sim.exitCode !== null ? resolve() : sim.on("exit", resolve));
        }
        if (daemon.child && daemon.child.exitCode === null) {
            const status = await daemon.stop();
            check(status === 0, `gpsrelayd exit status 0 at the end (got ${status})`);
        }
        daemon.cleanup();
    }
}

// auth jwt: the token in the URL is what admits the page (docs/protocol.md).
async function withTokens() {
    const secret = "0123456789abcdef0123456789abcdef-browser-test";
    const daemon = await Daemon.create(binary, "device_id,agency_id,label,source_addr\n" +
        "AMB-1,agency-1,Medic 1,\nE-2,agency-2,Engine 2,\n",
    `auth jwt\nauth_secret_file secret\nstatic_dir ${path.resolve(webDist)}\n`, { secret });
    const token = (agency) => execFileSync(ctlBinary, ["token", "--secret-file",
        path.join(daemon.dir, "secret"), "--agency", agency, "--ttl", "600",
        "--sub", "browser-test"], { encoding: "utf8" }).trim();
    let browser = null;
    try {
        await daemon.start();
        await daemon.send(rmc("AMB-1", 40.71, -74.0));
        browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox",
            "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"] });
        const base = `http://127.0.0.1:${daemon.ports.ws}/?agency=agency-1`;
        const state = async (url, want) => {
            const page = await browser.newPage();
            await page.goto(url);
            await page.waitForFunction((w) => document.getElementById("conn").dataset.state === w,
                want, { timeout: WAIT_MS }).catch(() => {});
            const got = await page.$eval("#conn", (e) => `${e.dataset.state}: ${e.textContent}`);
            const row = await page.$('#units li[data-device="AMB-1"]');
            await page.close();
            return { got, row: row !== null };
        };
        let s = await state(`${base}&token=${token("agency-1")}`, "live");
        check(s.got.startsWith("live") && s.row, `auth jwt, token for agency-1: ${s.got}`);
        s = await state(base, "down");
        check(s.got.startsWith("down") && !s.row, `auth jwt, no token: ${s.got}`);
        s = await state(`${base}&token=${token("agency-2")}`, "refused");
        check(s.got.startsWith("refused") && !s.row, `auth jwt, token for agency-2: ${s.got}`);
    } finally {
        if (browser) await browser.close();
        if (daemon.child && daemon.child.exitCode === null)
            check(await daemon.stop() === 0, "gpsrelayd (auth jwt) exit status 0");
        daemon.cleanup();
    }
}

main().then(withTokens).then(report, (e) => {
    fail(e.stack || String(e));
    report();
});
