// main.js - the demo dispatch console: one agency's units on a map and in a list, live.
//
// How it talks to gpsrelayd (docs/protocol.md), with the official phoenix client:
//  - Socket("/socket") on the page's own host; the token, when there is one, goes as the
//    `token` query parameter.
//  - channel "agency:<id>" joined with params given as a function, which phoenix calls
//    again on every rejoin: after a reconnect the console sends {since: {epoch, seq}} and
//    gets back only what changed (recovered: true), or, when the daemon restarted (a new
//    epoch), everything it has (recovered: false).
//  - the join reply's "units" lists every unit of the agency with its label, reported or
//    not: each is listed under its label (the device id on hover), "no fix yet" until its
//    first position; units the console had that are no longer there go.
//  - pushes: "positions", "unit_stale", "unit_added" (a new unit, or a new label for one
//    already there; with its position when it has one), "unit_removed".
// With an archive (docs/console.md "Trail and replay"): a clicked unit's trail of the last 30
// minutes (trail.js) and a replay of an interval (replay_ui.js), over /api/history and
// /api/snapshot (history.js); without one (404) neither is offered.
import { Socket } from "phoenix";
import L from "leaflet";
import "leaflet/dist/leaflet.css";
import "./style.css";
import { archive } from "./history.js";
import { createTrail } from "./trail.js";
import { createReplay } from "./replay_ui.js";

const config = Object.assign(
    { tiles: "", tilesAttribution: "", center: [40.7128, -74.006], zoom: 11 },
    window.GPSRELAY_CONFIG || {},
);
const query = new URLSearchParams(location.search);
const tiles = query.has("tiles") ? query.get("tiles") : config.tiles;

const $ = (id) => document.getElementById(id);

// ---- the map ----------------------------------------------------------------------------

const map = L.map("map", { zoomControl: true, preferCanvas: false })
    .setView(config.center, config.zoom);
L.control.scale({ imperial: false }).addTo(map);
if (tiles) {
    L.tileLayer(tiles, { maxZoom: 19, attribution: config.tilesAttribution }).addTo(map);
} else {
    document.body.classList.add("no-tiles");
    graticule(map);
}

// Latitude/longitude lines every "round" step, about 4 to 10 across the view: something
// to read distances and directions from when there are no tiles (offline, or none set).
function graticule(m) {
    const steps = [10, 5, 2, 1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005];
    const layer = L.layerGroup().addTo(m);
    const draw = () => {
        layer.clearLayers();
        const b = m.getBounds();
        const span = Math.max(b.getEast() - b.getWest(), b.getNorth() - b.getSouth());
        const step = steps.find((s) => span / s >= 4) || steps[steps.length - 1];
        const style = { color: "#9aa5b1", weight: 1, opacity: 0.6, interactive: false };
        const digits = Math.max(0, -Math.floor(Math.log10(step)));
        for (let lat = Math.ceil(b.getSouth() / step) * step; lat <= b.getNorth(); lat += step) {
            layer.addLayer(L.polyline([[lat, b.getWest()], [lat, b.getEast()]], style));
            layer.addLayer(L.marker([lat, b.getWest()], {
                interactive: false,
                icon: L.divIcon({ className: "gr-grid-label", html: lat.toFixed(digits) + "°",
                    iconSize: null }),
            }));
        }
        for (let lon = Math.ceil(b.getWest() / step) * step; lon <= b.getEast(); lon += step) {
            layer.addLayer(L.polyline([[b.getSouth(), lon], [b.getNorth(), lon]], style));
            layer.addLayer(L.marker([b.getSouth(), lon], {
                interactive: false,
                icon: L.divIcon({ className: "gr-grid-label", html: lon.toFixed(digits) + "°",
                    iconSize: [60, 14], iconAnchor: [-2, 28] }),
            }));
        }
    };
    m.on("moveend zoomend resize", draw);
    draw();
}

// ---- units --------------------------------------------------------------------------------

// device id -> {device, label, pos (the last position P), stale, lastTime, marker, row}
const units = new Map();
let fitted = false;
// The trail and the replay, once the archive is known to be there.
let trail = null, replay = null;
// The unit last clicked (marker or row): the one a trail shows and a replay may be of.
let selected = null;

function unit(device) {
    let u = units.get(device);
    if (u) return u;
    u = { device, label: "", pos: null, stale: false, lastTime: null, marker: null, row: null };
    u.row = document.createElement("li");
    u.row.dataset.device = device;
    u.row.className = "unit nofix";
    u.row.innerHTML = '<span class="name"></span><span class="age"></span>' +
        '<span class="motion"></span><span class="where"></span>';
    const name = u.row.querySelector(".name");
    name.textContent = device;
    name.title = device;
    u.row.addEventListener("click", () => {
        if (u.pos) map.setView([u.pos.lat, u.pos.lon], Math.max(map.getZoom(), 14));
        select(u.device);
    });
    units.set(device, u);
    placeRow(u);
    return u;
}

// A unit is shown under its label from the mapping, or its device id when it has none; the
// device id is always on hover (title).
function displayName(u) {
    return u.label || u.device;
}

function setLabel(u, label) {
    if (typeof label !== "string" || label === u.label) return;
    u.label = label;
    u.row.querySelector(".name").textContent = displayName(u);
    const el = u.marker && u.marker.getElement();
    if (el) el.querySelector(".gr-label").textContent = displayName(u);
}

// Rows stay sorted by device id.
function placeRow(u) {
    const list = $("units");
    const next = [...list.children].find((li) => li.dataset.device > u.device);
    list.insertBefore(u.row, next || null);
}

function removeUnit(device) {
    const u = units.get(device);
    if (!u) return;
    u.row.remove();
    if (u.marker) u.marker.remove();
    units.delete(device);
    if (selected === device) select(null);
}

function select(device) {
    selected = device;
    for (const li of $("units").children) li.classList.toggle("selected", li.dataset.device === device);
    if (trail) {
        if (device) trail.show(device, units.get(device)?.pos || null);
        else trail.close();
    }
    if (replay) replay.selectionChanged(device);
}

const COMPASS = ["N", "NE", "E", "SE", "S", "SW", "W", "NW"];

function markerIcon(name) {
    const el = document.createElement("div");
    el.className = "gr-unit";
    // An arrow pointing along the course (a dot while the course is unknown).
    el.innerHTML = '<svg class="gr-arrow" viewBox="-12 -12 24 24" width="24" height="24">' +
        '<circle class="gr-dot" r="6"/><path class="gr-pointer" d="M0,-11 L7,8 L0,3 L-7,8 Z"/>' +
        '</svg><span class="gr-label"></span>';
    el.querySelector(".gr-label").textContent = name;
    return L.divIcon({ className: "gr-marker", html: el, iconSize: [24, 24], iconAnchor: [12, 12] });
}

function makeMarker(device, p) {
    const u = units.get(device);
    const m = L.marker([p.lat, p.lon], { icon: markerIcon(u ? displayName(u) : device),
        title: device, keyboard: false }).addTo(map);
    m.getElement().dataset.device = device;
    m.on("click", () => select(device));
    return m;
}

// A marker at position p: where, which way (an arrow along the course, else a dot), greyed
// when stale.
function placeMarker(m, p, stale) {
    m.setLatLng([p.lat, p.lon]);
    const el = m.getElement();
    if (!el) return;
    el.classList.toggle("stale", stale);
    const arrow = el.querySelector(".gr-arrow");
    const hasCourse = typeof p.course === "number";
    arrow.classList.toggle("still", !hasCourse);
    arrow.style.transform = hasCourse ? `rotate(${p.course}deg)` : "";
}

// During a replay its units' markers show the replay; live positions still update the
// units (rows, trail, resume cursor) and their markers take them back when it ends.
const replayed = new Set();

function applyPosition(p) {
    const u = unit(p.device);
    if (u.pos && u.pos.seq > p.seq) return; // a resent older one: keep the newer
    u.pos = p;
    u.lastTime = p.time;
    u.stale = false;
    if (!u.marker && !replayed.has(u.device)) u.marker = makeMarker(u.device, p);
    drawUnit(u);
    if (trail) trail.append(p);
}

function drawUnit(u) {
    if (u.marker && u.pos && !replayed.has(u.device)) placeMarker(u.marker, u.pos, u.stale);
    u.row.classList.toggle("stale", u.stale);
    u.row.classList.toggle("nofix", !u.pos);
    const p = u.pos;
    const motion = [];
    if (p && typeof p.speed === "number") motion.push(`${(p.speed * 3.6).toFixed(0)} km/h`);
    if (p && typeof p.course === "number")
        motion.push(`${p.course.toFixed(0)}° ${COMPASS[Math.round(p.course / 45) % 8]}`);
    u.row.querySelector(".motion").textContent = motion.join(" · ");
    u.row.querySelector(".where").textContent = p ? `${p.lat.toFixed(5)}, ${p.lon.toFixed(5)}` : "";
    drawAge(u, Date.now());
}

function ago(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function drawAge(u, now) {
    const age = u.row.querySelector(".age");
    if (!u.lastTime) {
        age.textContent = "no fix yet";
        return;
    }
    const since = ago(now - Date.parse(u.lastTime));
    age.textContent = u.stale ? `stale · last fix ${since} ago` : `${since} ago`;
}

function drawSummary() {
    let stale = 0;
    for (const u of units.values()) if (u.stale) stale++;
    $("summary").textContent = units.size === 0 ? "no units yet"
        : `${units.size} units · ${stale} stale`;
}

setInterval(() => {
    const now = Date.now();
    for (const u of units.values()) drawAge(u, now);
    drawSummary();
}, 1000);

function fitAll() {
    const pts = [...units.values()].filter((u) => u.pos).map((u) => [u.pos.lat, u.pos.lon]);
    if (pts.length === 0) return false;
    map.fitBounds(L.latLngBounds(pts), { padding: [40, 40], maxZoom: 15 });
    return true;
}
$("fit").addEventListener("click", fitAll);

// ---- the connection -------------------------------------------------------------------------

// What the console resumes from: the epoch and the highest sequence number it has seen.
let cursor = null;
// Joins so far, for people (and the browser test) to see what resuming did.
const joins = [];
window.gpsrelay = { units, joins, get cursor() { return cursor; }, archive: undefined,
    get trail() { return trail && trail.state(); },
    get replay() { return replay && replay.state(); } };

// What a replay draws with (replay_ui.js): markers of the units it replays, taken from the
// live view while it runs and given back after. Units it knows that the page does not (no
// live position, no longer mapped) get markers of their own.
const replayMarkers = new Map(); // device -> marker for units not in `units`
const replayView = {
    map,
    begin(devices) {
        for (const d of devices) replayed.add(d);
        document.body.classList.add("replaying");
    },
    // p null: the unit has no position yet at this replay time, its marker is hidden.
    show(device, p) {
        const u = units.get(device);
        let m = u ? u.marker : replayMarkers.get(device);
        if (!p) {
            if (m) m.setOpacity(0);
            return;
        }
        if (!m) {
            m = makeMarker(device, p);
            if (u) u.marker = m;
            else replayMarkers.set(device, m);
        }
        m.setOpacity(1);
        m.getElement().classList.add("replay");
        placeMarker(m, p, false);
    },
    marker(device) {
        const u = units.get(device);
        return (u && u.marker) || replayMarkers.get(device) || null;
    },
    end() {
        document.body.classList.remove("replaying");
        for (const m of replayMarkers.values()) m.remove();
        replayMarkers.clear();
        for (const d of replayed) {
            const u = units.get(d);
            if (!u || !u.marker) continue;
            if (!u.pos) {
                u.marker.remove();
                u.marker = null;
                continue;
            }
            u.marker.getElement().classList.remove("replay");
            u.marker.setOpacity(1);
        }
        const back = [...replayed];
        replayed.clear();
        for (const d of back) {
            const u = units.get(d);
            if (!u) continue;
            // Its first live position may have come during the replay.
            if (u.pos && !u.marker) u.marker = makeMarker(d, u.pos);
            drawUnit(u);
        }
    },
};

// Where a unit's marker is and how it looks, for the browser test (and people debugging).
window.gpsrelay.marker = (device) => {
    const m = replayView.marker(device);
    if (!m) return null;
    const ll = m.getLatLng(), el = m.getElement();
    return { lat: ll.lat, lon: ll.lng, visible: m.options.opacity !== 0,
        replay: !!el && el.classList.contains("replay"), stale: !!el && el.classList.contains("stale") };
};

// Trail and replay are offered when the daemon has an archive: asked once, after the join.
async function offerArchive(agency, token) {
    const client = archive({ token });
    const has = await client.probe(agency);
    window.gpsrelay.archive = has;
    if (has === false) return; // 404: no archive, nothing to offer
    trail = createTrail({ map, client });
    replay = createReplay({ agency, client, view: replayView, selected: () => selected });
    if (selected) select(selected);
}

function setConn(state, text) {
    const el = $("conn");
    el.dataset.state = state;
    el.textContent = text;
}

function drawCursor() {
    $("cursor").textContent = cursor ? `epoch ${cursor.epoch} · seq ${cursor.seq}` : "";
}

function advance(seq) {
    if (cursor && seq > cursor.seq) cursor.seq = seq;
}

function connect(agency, token) {
    $("agency").textContent = `agency:${agency}`;
    document.title = `${agency} · gpsrelay console`;
    let opens = 0, reconnects = 0;

    const socket = new Socket("/socket", {
        params: () => (token ? { token } : {}),
        // Back off quickly at first: a daemon restart takes about a second.
        reconnectAfterMs: (tries) => [200, 500, 1000, 2000][tries - 1] || 5000,
        rejoinAfterMs: (tries) => [200, 1000, 2000][tries - 1] || 5000,
    });
    socket.onOpen(() => {
        if (opens++ > 0) reconnects++;
        $("conn").dataset.reconnects = String(reconnects);
        setConn("joining", reconnects ? `joining (reconnect ${reconnects})` : "joining");
    });
    socket.onClose(() => {
        if (opens === 0) setConn("down", "cannot connect (daemon down, or token refused)");
        else setConn("reconnecting", "connection lost, reconnecting…");
    });

    const channel = socket.channel(`agency:${agency}`,
        () => (cursor ? { since: { epoch: cursor.epoch, seq: cursor.seq } } : {}));

    channel.on("positions", ({ positions }) => {
        for (const p of positions) {
            applyPosition(p);
            advance(p.seq);
        }
        if (!fitted) fitted = fitAll();
        drawCursor();
        drawSummary();
    });
    channel.on("unit_stale", ({ device, last_time: lastTime }) => {
        const u = unit(device);
        u.stale = true;
        if (lastTime) u.lastTime = lastTime;
        drawUnit(u);
        drawSummary();
    });
    // A unit new to the agency, or a new label for one already there. Its position, when
    // it has one the console has not, is shown at once but does not move the cursor: it is
    // not part of the channel's stream, whose cursor says what the console has taken from
    // it. A relabeled unit's position is the one the console has: it stays as it is (stale
    // included).
    channel.on("unit_added", ({ device, label, position }) => {
        const u = unit(device);
        setLabel(u, label);
        if (position && (!u.pos || position.seq > u.pos.seq)) applyPosition(position);
        else drawUnit(u);
        if (!fitted) fitted = fitAll();
        drawSummary();
    });
    channel.on("unit_removed", ({ device }) => {
        removeUnit(device);
        drawSummary();
    });

    let offered = false;
    channel.join()
        .receive("ok", (reply) => {
            if (!offered) {
                offered = true;
                offerArchive(agency, token);
            }
            // Called again on every rejoin (phoenix keeps the join's hooks).
            const resumed = cursor !== null;
            joins.push({ epoch: reply.epoch, seq: reply.seq, recovered: reply.recovered,
                positions: reply.positions.length, stale: reply.stale.length,
                units: Array.isArray(reply.units) ? reply.units.length : null,
                since: resumed ? { ...cursor } : null });
            const stale = new Set(reply.stale);
            // Every unit of the agency, reported or not; one the console still has but the
            // daemon no longer maps (removed while the console was away) goes.
            if (Array.isArray(reply.units)) {
                const mapped = new Set(reply.units.map((x) => x.device));
                for (const d of [...units.keys()]) if (!mapped.has(d)) removeUnit(d);
                for (const { device, label } of reply.units) setLabel(unit(device), label);
            }
            for (const p of reply.positions) applyPosition(p);
            for (const u of units.values()) {
                // The daemon's word on staleness; units it has no position for after a
                // restart keep what they had, their age keeps growing.
                if (stale.has(u.device)) u.stale = true;
                else if (reply.positions.some((p) => p.device === u.device)) u.stale = false;
                drawUnit(u);
            }
            for (const d of stale) drawUnit(unit(d));
            cursor = { epoch: reply.epoch, seq: reply.seq };
            for (const p of reply.positions) advance(p.seq);
            const how = !resumed ? "live"
                : reply.recovered ? "live · resumed, nothing missed"
                    : "live · daemon restarted, resynced";
            setConn("live", reconnects ? `${how} (reconnected ${reconnects}×)` : how);
            if (!fitted) fitted = fitAll();
            drawCursor();
            drawSummary();
        })
        .receive("error", (e) => setConn("refused", `join refused: ${(e && e.reason) || "?"}`));

    socket.connect();
    window.gpsrelay.socket = socket;
    window.gpsrelay.channel = channel;
}

// ---- start: agency (and token) from the URL, else ask -----------------------------------

function start() {
    const agency = query.get("agency");
    if (agency) {
        connect(agency, query.get("token") || "");
        return;
    }
    const form = $("login");
    form.hidden = false;
    $("login-agency").value = localStorage.getItem("gpsrelay.agency") || "";
    form.addEventListener("submit", (ev) => {
        ev.preventDefault();
        const a = $("login-agency").value.trim();
        if (!a) return;
        localStorage.setItem("gpsrelay.agency", a);
        form.hidden = true;
        // The agency goes into the address bar (bookmarkable), the token does not.
        const q = new URLSearchParams(location.search);
        q.set("agency", a);
        history.replaceState(null, "", `?${q}`);
        connect(a, $("login-token").value.trim());
    });
}

start();
