// replay_ui.js - the replay panel: an interval (the last hour unless changed), the selected
// unit or the whole agency, play/pause, a time slider and a speed. Play loads what the
// interval needs (a snapshot at `from`, then each unit's history, two at a time), then moves
// the markers by replay time until `to`. The markers go back to their live positions when
// the replay ends (the end button, a new interval, the panel closed).
import L from "leaflet";
import { mapLimit } from "./history.js";
import { Clock, SPEEDS, fromLocalInput, localInput, positionAt, tracks } from "./replay.js";

const $ = (id) => document.getElementById(id);
const HOUR_MS = 3600 * 1000;
const CONCURRENCY = 2; // history requests at once: the daemon serves 4 queries at a time

// view (main.js): begin(devices), show(device, p or null), end(), map.
// selected(): the device last clicked, or null.
export function createReplay({ agency, client, view, selected }) {
    const panel = $("replay"), play = $("replay-play"), slider = $("replay-slider");
    const speedSel = $("replay-speed"), scopeSel = $("replay-scope");
    let session = null; // the loaded replay (below)
    let loading = null; // an AbortController while loading
    let message = "";

    for (const s of SPEEDS) speedSel.add(new Option(`x${s}`, String(s)));
    speedSel.value = "10";

    const open = $("replay-open");
    open.hidden = false;
    open.addEventListener("click", () => (panel.hidden ? show() : hide()));
    $("replay-end").addEventListener("click", () => stop(""));
    play.addEventListener("click", toggle);
    slider.addEventListener("input", () => {
        if (!session) return;
        const now = performance.now();
        session.clock.seek(session.clock.from + Number(slider.value), now);
        render(session.clock.time(now));
    });
    speedSel.addEventListener("change", () => {
        if (session) session.clock.setSpeed(Number(speedSel.value), performance.now());
    });
    // Another interval or scope is another replay: the current one ends.
    for (const id of ["replay-from", "replay-to", "replay-scope"])
        $(id).addEventListener("change", () => stop(""));

    function say(text) {
        message = text;
        $("replay-msg").textContent = text;
    }

    function show() {
        panel.hidden = false;
        open.setAttribute("aria-pressed", "true");
        if (!session && !loading) {
            const to = Math.floor(Date.now() / 1000) * 1000;
            $("replay-from").value = localInput(to - HOUR_MS);
            $("replay-to").value = localInput(to);
            scopeSel.value = selected() ? "unit" : "agency";
        }
        selectionChanged(selected());
    }

    function hide() {
        stop("");
        panel.hidden = true;
        open.setAttribute("aria-pressed", "false");
    }

    function selectionChanged(device) {
        const opt = scopeSel.querySelector('option[value="unit"]');
        opt.textContent = device ? `unit ${device}` : "selected unit (click one)";
        if (!session && !loading && scopeSel.value === "unit" && !device) scopeSel.value = "agency";
    }

    function params() {
        const scope = scopeSel.value;
        const device = scope === "unit" ? selected() : null;
        const from = fromLocalInput($("replay-from").value);
        const to = fromLocalInput($("replay-to").value);
        return { scope, device, from, to, key: `${scope}|${device}|${from}|${to}` };
    }

    function drawButtons() {
        const playing = !!(session && session.clock.playing);
        play.textContent = playing ? "❚❚" : "▶";
        play.title = playing ? "pause" : "play";
        play.dataset.state = loading ? "loading" : playing ? "playing" : session ? "paused" : "idle";
        play.disabled = !!loading;
        slider.disabled = !session;
        $("replay-end").disabled = !session && !loading;
    }

    // Ends the replay (or its loading): markers back to live.
    function stop(text) {
        if (loading) loading.abort();
        loading = null;
        if (session) {
            if (session.raf) cancelAnimationFrame(session.raf);
            if (session.path) session.path.remove();
            view.end();
            session = null;
        }
        slider.value = "0";
        $("replay-time").textContent = "";
        say(text);
        drawButtons();
    }

    async function load(p) {
        stop("");
        if (!Number.isFinite(p.from) || !Number.isFinite(p.to) || p.from >= p.to)
            return say("the interval must end after it starts"), null;
        if (p.scope === "unit" && !p.device)
            return say("click a unit first, or replay the whole agency"), null;
        const ctl = (loading = new AbortController());
        const o = { signal: ctl.signal,
            onWait: (ms) => say(`archive busy, retrying in ${Math.ceil(ms / 1000)} s…`) };
        drawButtons();
        say("loading…");
        try {
            const snap = await client.snapshot(agency, p.from, o);
            const snapshot = p.scope === "unit"
                ? { positions: snap.positions.filter((x) => x.device === p.device), missing: [] }
                : snap;
            const devices = p.scope === "unit" ? [p.device]
                : [...new Set([...snap.positions.map((x) => x.device), ...snap.missing])].sort();
            let done = 0;
            const cut = [];
            const hs = await mapLimit(devices, CONCURRENCY, async (d) => {
                const h = await client.history(d, p.from, p.to, o);
                if (h.truncated) cut.push(d);
                say(`loading… ${++done}/${devices.length} units`);
                return h.positions;
            });
            if (loading !== ctl) return null;
            loading = null;
            const tr = tracks(snapshot, Object.fromEntries(devices.map((d, i) => [d, hs[i]])));
            begin(p, tr);
            const fixes = [...tr.values()].reduce((n, x) => n + x.length, 0);
            say(`${tr.size} unit${tr.size === 1 ? "" : "s"}, ${fixes} fixes` +
                (cut.length ? ` (cut short: ${cut.join(", ")})` : ""));
            return session;
        } catch (e) {
            if (loading !== ctl) return null;
            loading = null;
            drawButtons();
            say(`replay failed: ${e.message}`);
            return null;
        }
    }

    function begin(p, tr) {
        const clock = new Clock(p.from, p.to, Number(speedSel.value));
        session = { key: p.key, scope: p.scope, tracks: tr, clock, shown: new Map(), raf: 0,
            shownAt: null, path: null };
        view.begin([...tr.keys()]);
        const all = [...tr.values()].flat().map((x) => [x.p.lat, x.p.lon]);
        if (p.scope === "unit" && all.length > 1) {
            session.path = L.polyline(all, { className: "gr-replay-path", color: "#7b61c9",
                weight: 2, dashArray: "4 4", interactive: false }).addTo(view.map);
        }
        // The panel covers the bottom of the map: keep the units above it.
        if (all.length) {
            view.map.fitBounds(L.latLngBounds(all), { paddingTopLeft: [40, 40],
                paddingBottomRight: [40, panel.offsetHeight + 40], maxZoom: 15 });
        }
        slider.min = "0";
        slider.max = String(p.to - p.from);
        render(p.from);
        drawButtons();
    }

    // Markers at replay time t: each unit at its last position at or before t.
    function render(t) {
        for (const [d, tr] of session.tracks) {
            const p = positionAt(tr, t);
            if (session.shown.has(d) && session.shown.get(d) === p) continue;
            session.shown.set(d, p);
            view.show(d, p);
        }
        session.shownAt = t;
        slider.value = String(t - session.clock.from);
        $("replay-time").textContent = new Date(t).toLocaleString([],
            { dateStyle: "short", timeStyle: "medium" });
    }

    function frame() {
        session.raf = 0;
        const now = performance.now();
        const t = session.clock.time(now);
        render(t);
        if (session.clock.playing && t >= session.clock.to) session.clock.pause(now);
        if (session.clock.playing) session.raf = requestAnimationFrame(frame);
        drawButtons();
    }

    async function toggle() {
        if (session && session.clock.playing) {
            session.clock.pause(performance.now());
            return drawButtons();
        }
        const p = params();
        if ((!session || session.key !== p.key) && !(await load(p))) return;
        session.clock.setSpeed(Number(speedSel.value), performance.now());
        session.clock.play(performance.now());
        if (!session.raf) session.raf = requestAnimationFrame(frame);
        drawButtons();
    }

    // For people and the browser test: what the replay is doing.
    function state() {
        const s = session;
        return { open: !panel.hidden, loading: !!loading, loaded: !!s, message,
            scope: s ? s.scope : scopeSel.value, devices: s ? [...s.tracks.keys()] : [],
            playing: !!(s && s.clock.playing), speed: s ? s.clock.speed : Number(speedSel.value),
            from: s ? s.clock.from : null, to: s ? s.clock.to : null,
            shownAt: s ? s.shownAt : null, slider: Number(slider.value) };
    }

    drawButtons();
    return { selectionChanged, state, stop };
}
